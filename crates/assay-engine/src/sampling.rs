//! Choosing the next token from logits: greedy, or sampled with temperature, top-k, top-p and
//! a repetition penalty, from a seeded generator; and the log-probabilities reported with it.

use assay_core::{SamplingParams, TokenLogprob, TopLogprob};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Tokens whose logit is this far below the best have probability < e^-30 relative to it;
/// dropping them before sorting changes no sampled distribution by more than 1e-8 in total.
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
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, &l)| l >= max - NEGLIGIBLE_LOGIT_GAP * self.params.temperature.max(1.0))
            .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp()))
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if self.params.top_k > 0 {
            candidates.truncate(self.params.top_k);
        }
        if self.params.top_p < 1.0 {
            let total: f32 = candidates.iter().map(|c| c.1).sum();
            let mut acc = 0.0;
            let keep = candidates
                .iter()
                .position(|c| {
                    acc += c.1 / total;
                    acc >= self.params.top_p
                })
                .map_or(candidates.len(), |i| i + 1);
            candidates.truncate(keep);
        }
        match WeightedIndex::new(candidates.iter().map(|c| c.1)) {
            Ok(dist) => candidates[dist.sample(&mut self.rng)].0,
            Err(_) => candidates[0].0,
        }
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

pub fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| if l > best.1 { (i, l) } else { best })
        .0 as u32
}

/// `ln(sum(exp(row)))`, computed stably: the normaliser of a log-softmax.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&l| (l - max).exp()).sum::<f32>().ln()
}

/// Log-probability of `chosen` under the model's distribution (raw logits, before temperature
/// and truncation) and the `top` most likely alternatives.
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
}
