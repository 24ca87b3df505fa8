//! What a step does with its logits, for all rows in one call (`process_rows`): choosing each
//! generating sequence's next token (greedy, or sampled with temperature, top-k, top-p and a
//! repetition penalty from a seeded generator) with the log-probabilities asked for, and
//! scoring label tokens for judge rows. The logits leave the model's device once per step;
//! on the CPU they are read in place.

use crate::error::Result;
use assay_core::{SamplingParams, TokenLogprob, TopLogprob};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Tokens whose logit is this far below the best have probability < e^-30 relative to it;
/// dropping them before sampling changes no sampled distribution by more than 1e-8 in total.
const NEGLIGIBLE_LOGIT_GAP: f32 = 30.0;

/// A per-sequence token chooser.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { params: params.clone(), rng }
    }

    /// The next token given raw `logits` and the ids seen so far (prompt and output).
    pub fn next(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.apply_repetition_penalty(&mut logits, history);
        if self.params.is_greedy() {
            return argmax(&logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, &l)| l >= max - NEGLIGIBLE_LOGIT_GAP * self.params.temperature.max(1.0)).map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())).collect();
        // Only what top-k and top-p need is sorted: a flat distribution keeps most of a
        // 50k-150k vocabulary within the gap, and sorting all of it for every row was the
        // largest cost of a 16-client server step.
        if self.params.top_k > 0 && self.params.top_k < candidates.len() {
            candidates.select_nth_unstable_by(self.params.top_k - 1, heaviest_first);
            candidates.truncate(self.params.top_k);
        }
        if self.params.top_p < 1.0 {
            let keep = nucleus(&mut candidates, self.params.top_p);
            candidates.truncate(keep);
        }
        // One uniform draw over the total weight, walked down the candidates (no cumulative
        // table); rounding at the end falls to the last one.
        let total: f32 = candidates.iter().map(|c| c.1).sum();
        let mut u = self.rng.random::<f32>() * total;
        for &(id, w) in &candidates {
            if u < w {
                return id;
            }
            u -= w;
        }
        candidates.last().map_or_else(|| argmax(&logits), |c| c.0)
    }

    fn apply_repetition_penalty(&self, logits: &mut [f32], history: &[u32]) {
        let p = self.params.repetition_penalty;
        if p == 1.0 {
            return;
        }
        let mut seen = vec![false; logits.len()];
        for &id in history {
            let i = id as usize;
            if i < logits.len() && !seen[i] {
                seen[i] = true;
                logits[i] = if logits[i] > 0.0 { logits[i] / p } else { logits[i] * p };
            }
        }
    }
}

/// Orders `(token, weight)` candidates by descending weight.
fn heaviest_first(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
}

/// How many of `candidates`, heaviest first, reach `top_p` of their total weight; sorts that
/// many to the front. The heaviest are selected and sorted in growing batches, so a peaked
/// distribution sorts a few dozen entries rather than the vocabulary.
fn nucleus(candidates: &mut [(u32, f32)], top_p: f32) -> usize {
    let total: f32 = candidates.iter().map(|c| c.1).sum();
    let mut sorted = 64;
    loop {
        if sorted >= candidates.len() {
            candidates.sort_unstable_by(heaviest_first);
        } else {
            candidates.select_nth_unstable_by(sorted - 1, heaviest_first);
            candidates[..sorted].sort_unstable_by(heaviest_first);
        }
        let mut acc = 0.0;
        if let Some(i) = candidates.iter().take(sorted).position(|c| {
            acc += c.1 / total;
            acc >= top_p
        }) {
            return i + 1;
        }
        if sorted >= candidates.len() {
            return candidates.len();
        }
        sorted *= 4;
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| if l > best.1 { (i, l) } else { best }).0 as u32
}

/// `ln(sum(exp(row)))`, computed stably: the normaliser of a log-softmax.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&l| (l - max).exp()).sum::<f32>().ln()
}

/// Log-probability of `chosen` under the model's distribution (raw logits, before temperature
/// and truncation) and the `top` most likely alternatives; token texts are filled in by
/// `text`.
pub fn token_logprob(logits: &[f32], chosen: u32, top: usize, text: impl Fn(u32) -> String) -> TokenLogprob {
    let lse = log_sum_exp(logits);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let top = top.min(order.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(top);
        order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    } else {
        order.clear();
    }
    TokenLogprob {
        token_id: chosen,
        token: text(chosen),
        logprob: logits[chosen as usize] - lse,
        top: order.into_iter().map(|id| TopLogprob { token_id: id, token: text(id), logprob: logits[id as usize] - lse }).collect(),
    }
}

/// What a step wants from one row of its logits.
pub enum RowWant<'a> {
    /// The next token of a generating sequence (`history`: its ids so far, for the repetition
    /// penalty), with its log-probability and `top` alternatives when `logprobs` is set.
    Sample { sampler: &'a mut Sampler, history: &'a [u32], logprobs: Option<usize> },
    /// Log-probabilities of these token ids (label scoring).
    Score { ids: &'a [u32] },
}

/// What one row gave.
#[derive(Debug, Clone, PartialEq)]
pub enum RowResult {
    /// A sampled token and, when asked for, its log-probability with alternatives (texts
    /// empty: the caller knows the tokenizer).
    Sampled {
        token: u32,
        logprob: Option<TokenLogprob>,
    },
    Scored(Vec<f32>),
}

/// Samples and scores every row of a step's logits (`[rows, vocab]`, one row per want) in
/// one call; see the module notes.
pub fn process_rows(logits: &Tensor, wants: Vec<RowWant<'_>>) -> Result<Vec<RowResult>> {
    let logits = if logits.device().is_cpu() { logits.contiguous()? } else { logits.to_device(&Device::Cpu)? };
    let (rows, vocab) = logits.dims2()?;
    debug_assert_eq!(rows, wants.len(), "one want per logits row");
    let guard = logits.storage_and_layout();
    let data = crate::kv_pool::cpu_f32(&guard.0, guard.1)?;
    // Rows are independent (each sampler has its own generator): one per thread.
    Ok(wants
        .into_par_iter()
        .enumerate()
        .map(|(r, want)| {
            let row = &data[r * vocab..(r + 1) * vocab];
            match want {
                RowWant::Sample { sampler, history, logprobs } => {
                    let token = sampler.next(row, history);
                    RowResult::Sampled { token, logprob: logprobs.map(|top| token_logprob(row, token, top, |_| String::new())) }
                }
                RowWant::Score { ids } => {
                    let lse = log_sum_exp(row);
                    RowResult::Scored(ids.iter().map(|&id| row[id as usize] - lse).collect())
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(&SamplingParams::default());
        assert_eq!(s.next(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn repetition_penalty_pushes_seen_tokens_down() {
        let mut s = Sampler::new(&params(|p| p.repetition_penalty = 2.0));
        assert_eq!(s.next(&[0.1, 3.0, -1.0, 2.0], &[1]), 3);
    }

    #[test]
    fn same_seed_same_samples_and_top_k_limits_choices() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = params(|p| {
            p.temperature = 1.0;
            p.top_k = 3;
            p.seed = Some(7);
        });
        let draw = || {
            let mut s = Sampler::new(&p);
            (0..40).map(|_| s.next(&logits, &[])).collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        let mut allowed: Vec<u32> = (0..50).collect();
        allowed.sort_by(|&x, &y| logits[y as usize].total_cmp(&logits[x as usize]));
        allowed.truncate(3);
        assert!(a.iter().all(|t| allowed.contains(t)), "{a:?} not within {allowed:?}");
    }

    #[test]
    fn logits_without_a_finite_value_still_give_a_token() {
        let mut s = Sampler::new(&params(|p| {
            p.temperature = 0.8;
            p.seed = Some(3);
        }));
        for row in [[f32::NAN; 4], [f32::NEG_INFINITY; 4], [f32::NAN, f32::NEG_INFINITY, f32::NAN, f32::NAN]] {
            assert!(s.next(&row, &[]) < 4);
        }
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let mut s = Sampler::new(&params(|p| {
            p.temperature = 1.5;
            p.top_p = 1e-6;
            p.seed = Some(1);
        }));
        for _ in 0..20 {
            assert_eq!(s.next(&[0.0, 1.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn logprobs_are_normalised_and_sorted() {
        let lp = token_logprob(&[0.0, 1.0, 2.0], 1, 2, |i| i.to_string());
        let z = (1f32 + 1f32.exp() + 2f32.exp()).ln();
        assert!((lp.logprob - (1.0 - z)).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.token_id).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn the_nucleus_is_the_heaviest_prefix_of_a_full_sort() {
        // Peaked (found in the first batch), flat (past several batches) and tiny inputs.
        let peaked: Vec<f32> = (0..5000).map(|i| (-((i * 7919 % 5000) as f32) / 50.0).exp()).collect();
        let flat: Vec<f32> = (0..5000).map(|i| 1.0 + (i * 7919 % 5000) as f32 * 1e-6).collect();
        for weights in [peaked, flat, vec![1.0, 2.0, 3.0]] {
            let n = weights.len();
            let candidates: Vec<(u32, f32)> = weights.iter().enumerate().map(|(i, &w)| (i as u32, w)).collect();
            for top_p in [0.01, 0.5, 0.9, 0.999] {
                let mut reference = candidates.clone();
                reference.sort_unstable_by(heaviest_first);
                let total: f32 = reference.iter().map(|c| c.1).sum();
                let mut acc = 0.0;
                let want = reference.iter().position(|c| {
                    acc += c.1 / total;
                    acc >= top_p
                });
                let mut ours = candidates.clone();
                let keep = nucleus(&mut ours, top_p);
                assert!(want.is_none_or(|w| keep.abs_diff(w + 1) <= 1), "n {n} top_p {top_p}: {keep} vs {want:?}");
                assert_eq!(ours[..keep.min(n)].iter().map(|c| c.1).collect::<Vec<_>>(), reference[..keep.min(n)].iter().map(|c| c.1).collect::<Vec<_>>());
            }
        }
    }
}
