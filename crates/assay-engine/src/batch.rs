//! Continuous batching: many sequences decoded together over one `LanguageModel`.
//!
//! Sequences join and leave between steps. Each `step` runs one forward pass over every active
//! sequence: the next prompt chunk of sequences still being prefilled (under a budget of prompt
//! tokens per step, so running sequences keep decoding while long prompts arrive) and one
//! decode token of every running sequence. Each sequence then samples, applies its stop rules
//! and reports new text or its finished `Generation`.
//!
//! Batch invariance: a sequence's output must not depend on what else is in the batch. Rows of
//! the projections are independent on the dense path (every output is one dot product in a
//! fixed order, `packed_gemm.rs`) and on the quantized path (`QMatMul` quantizes and multiplies
//! row by row), but `MatmulPath::ByRows` *chooses* the path by the row count of the call, so a
//! sequence decoded alone (one row, quantized) and in a batch of 32 (dense) would differ.
//! Batches of several sequences therefore run on `MatmulPath::Dense`; `ByRows` is only
//! invariant for one sequence at a time (the fast single-stream choice of `generate`). Prompt
//! chunk boundaries are fixed per sequence (multiples of `PREFILL_CHUNK`), never cut by the
//! step budget, because attention over a different split of keys rounds differently.
//! (Without AVX-512 the dense copy goes through gemm, and on GPUs through cuBLAS, whose
//! blocking may depend on the row count; invariance is only guaranteed on the packed kernel.)

use crate::error::{EngineError, Result};
use crate::generate::PREFILL_CHUNK;
use crate::kv_cache::KvCache;
use crate::language_model::LanguageModel;
use crate::llama::{LogitsAt, SequenceChunk};
use crate::projection::MatmulPath;
use crate::sampling::{token_logprob, Sampler};
use crate::tokenizer::IncrementalDecoder;
use assay_core::{FinishReason, Generation, SamplingParams};

/// Identifies a sequence within one `BatchGenerator`.
pub type SeqId = u64;

/// How a `BatchGenerator` schedules its forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most prompt tokens prefilled per step, over all new sequences (at least one chunk is
    /// always taken, so a budget below `PREFILL_CHUNK` still makes progress).
    pub prefill_budget: usize,
    /// Matmul path of every forward pass (see the module notes on invariance).
    pub path: MatmulPath,
}

impl BatchConfig {
    /// Many sequences whose outputs must not depend on each other: the server.
    pub fn batched() -> Self {
        Self { prefill_budget: PREFILL_CHUNK, path: MatmulPath::Dense }
    }

    /// One sequence at a time: the quantized path for its single decode row is fastest.
    pub fn single_sequence() -> Self {
        Self { prefill_budget: PREFILL_CHUNK, path: MatmulPath::ByRows }
    }
}

/// What happened to one sequence in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum SequenceEvent {
    /// New text, certain not to be part of a stop string, and the log-probabilities of the
    /// tokens sampled since the sequence's previous event (empty unless asked for). Text is
    /// held back around stop strings, so a token's log-probability can come one piece before
    /// its text; over all events each token's comes exactly once.
    Text { text: String, logprobs: Vec<assay_core::TokenLogprob> },
    /// The sequence ended and left the batch; no more events follow for it.
    Finished(Generation),
}

/// Checks a request before it is queued: valid parameters and a prompt that leaves room for
/// at least one generated token in the model's context.
pub fn check_request(lm: &LanguageModel, prompt: &[u32], params: &SamplingParams) -> Result<()> {
    params.validate()?;
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let limit = lm.context_length();
    if prompt.len() >= limit {
        return Err(EngineError::ContextOverflow { tokens: prompt.len(), reserved: 1, limit });
    }
    Ok(())
}

/// The decoding state of one sequence: sampler, text so far, stop strings and log-probs.
struct Sequence {
    id: SeqId,
    params: SamplingParams,
    cache: KvCache,
    /// Prompt then generated ids; the last id is the next decode step's input.
    history: Vec<u32>,
    prompt_len: usize,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    max_new: usize,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    /// Bytes of text held back because they could start a stop string.
    hold_back: usize,
    /// Bytes of text already reported.
    sent: usize,
    logprobs: Option<Vec<assay_core::TokenLogprob>>,
    /// Log-probabilities already reported.
    logprobs_sent: usize,
}

impl Sequence {
    fn new(lm: &LanguageModel, id: SeqId, prompt: Vec<u32>, params: SamplingParams) -> Result<Self> {
        check_request(lm, &prompt, &params)?;
        let max_new = params.max_tokens.min(lm.context_length() - prompt.len());
        Ok(Self {
            id,
            cache: lm.model.new_cache(prompt.len() + max_new)?,
            prompt_len: prompt.len(),
            history: prompt,
            prefilled: 0,
            max_new,
            sampler: Sampler::new(&params),
            decoder: IncrementalDecoder::new(),
            hold_back: params.stop.iter().map(String::len).max().unwrap_or(0).saturating_sub(1),
            sent: 0,
            logprobs: params.logprobs.then(Vec::new),
            logprobs_sent: 0,
            params,
        })
    }

    fn generated(&self) -> usize {
        self.history.len() - self.prompt_len
    }

    /// Tokens of this sequence's next forward pass: its next prompt chunk (ending on a
    /// multiple of `PREFILL_CHUNK`) or its last sampled token.
    fn next_input(&self) -> (std::ops::Range<usize>, LogitsAt) {
        if self.prefilled < self.prompt_len {
            let end = ((self.prefilled / PREFILL_CHUNK + 1) * PREFILL_CHUNK).min(self.prompt_len);
            let logits = if end == self.prompt_len { LogitsAt::Last } else { LogitsAt::None };
            (self.prefilled..end, logits)
        } else {
            (self.history.len() - 1..self.history.len(), LogitsAt::Last)
        }
    }

    /// Samples from the logits of the last position; returns the new text and, when the
    /// sequence is done, why.
    fn accept(&mut self, lm: &LanguageModel, logits: &[f32]) -> Result<(Option<String>, Option<FinishReason>)> {
        let id = self.sampler.next(logits, &self.history);
        self.history.push(id);
        if let Some(lps) = self.logprobs.as_mut() {
            lps.push(token_logprob(logits, id, self.params.top_logprobs, |t| lm.tokenizer.token_text(t)));
        }
        if lm.tokenizer.is_stop(id) {
            return Ok((None, Some(FinishReason::Stop)));
        }
        let text = self.decoder.push(&lm.tokenizer, id)?;
        // A stop string may straddle tokens: search the tail that could contain a new match.
        let from = floor_char_boundary(text, self.sent.saturating_sub(self.hold_back));
        if self.params.stop.iter().any(|s| text[from..].contains(s.as_str())) {
            return Ok((None, Some(FinishReason::Stop)));
        }
        let safe = floor_char_boundary(text, text.len().saturating_sub(self.hold_back));
        let piece = (safe > self.sent).then(|| text[self.sent..safe].to_string());
        self.sent = self.sent.max(safe);
        let finish = (self.generated() == self.max_new).then_some(FinishReason::Length);
        Ok((piece, finish))
    }

    /// Log-probabilities not yet reported.
    fn unsent_logprobs(&mut self) -> Vec<assay_core::TokenLogprob> {
        let Some(all) = &self.logprobs else { return Vec::new() };
        let new = all[self.logprobs_sent..].to_vec();
        self.logprobs_sent = all.len();
        new
    }

    /// Ends the sequence: the text up to the first stop string, and the last event of what
    /// was not yet reported (text or log-probabilities), if any.
    fn finish(mut self, reason: FinishReason) -> (Option<SequenceEvent>, Generation) {
        let mut text = self.decoder.text().to_string();
        if let Some(pos) = self.params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(pos);
        }
        let rest = text.get(self.sent..).unwrap_or_default().to_string();
        let logprobs = self.unsent_logprobs();
        let last = (!rest.is_empty() || !logprobs.is_empty()).then_some(SequenceEvent::Text { text: rest, logprobs });
        let generation = Generation { text, token_ids: self.history[self.prompt_len..].to_vec(), prompt_tokens: self.prompt_len, finish_reason: reason, logprobs: self.logprobs };
        (last, generation)
    }
}

/// Sequences decoded together over one model; see the module notes.
pub struct BatchGenerator<'m> {
    lm: &'m LanguageModel,
    config: BatchConfig,
    /// In arrival order: prefill is first come, first served.
    sequences: Vec<Sequence>,
    next_id: SeqId,
}

impl<'m> BatchGenerator<'m> {
    pub fn new(lm: &'m LanguageModel, config: BatchConfig) -> Self {
        Self { lm, config, sequences: Vec::new(), next_id: 0 }
    }

    /// Adds a sequence; it joins the next step. Fails on invalid parameters or a prompt that
    /// does not fit the context (`check_request`).
    pub fn add(&mut self, prompt: Vec<u32>, params: SamplingParams) -> Result<SeqId> {
        let id = self.next_id;
        self.sequences.push(Sequence::new(self.lm, id, prompt, params)?);
        self.next_id += 1;
        Ok(id)
    }

    /// Removes a sequence and returns what it generated so far (finish reason `Stop`), or
    /// `None` for an unknown or finished id.
    pub fn cancel(&mut self, id: SeqId) -> Option<Generation> {
        let at = self.sequences.iter().position(|s| s.id == id)?;
        Some(self.sequences.remove(at).finish(FinishReason::Stop).1)
    }

    /// Number of sequences in the batch.
    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// Ids of the sequences in the batch.
    pub fn ids(&self) -> Vec<SeqId> {
        self.sequences.iter().map(|s| s.id).collect()
    }

    /// One forward pass over the batch: prompt chunks of new sequences within the budget, one
    /// decode token of every running sequence. Returns the events of this step, in batch
    /// order. On an error the batch is left as it was before the pass, except that caches
    /// may hold the failed pass's positions: callers should cancel the sequences involved.
    pub fn step(&mut self) -> Result<Vec<(SeqId, SequenceEvent)>> {
        let mut finished = Vec::new();
        let mut wants = Vec::with_capacity(self.sequences.len());
        for (i, seq) in self.sequences.iter().enumerate() {
            if seq.max_new == 0 {
                // No output asked for: done without a pass.
                finished.push((i, FinishReason::Length));
                wants.push(None);
            } else {
                wants.push(Some((seq.next_input(), seq.prefilled < seq.prompt_len)));
            }
        }
        let admitted = admit(wants.iter().map(|w| w.as_ref().map(|((range, _), prefilling)| (range.len(), *prefilling))), self.config.prefill_budget);
        let inputs: Vec<_> = wants.into_iter().zip(admitted).map(|(w, ok)| w.filter(|_| ok).map(|(input, _)| input)).collect();
        let mut chunks: Vec<SequenceChunk<'_>> = self
            .sequences
            .iter_mut()
            .zip(&inputs)
            .filter_map(|(seq, input)| input.as_ref().map(|(range, logits)| SequenceChunk { cache: &mut seq.cache, tokens: &seq.history[range.clone()], logits: logits.clone() }))
            .collect();
        let logits = if chunks.is_empty() { Vec::new() } else { self.lm.model.forward_on(&mut chunks, self.config.path)? };
        drop(chunks);

        let mut events = Vec::new();
        let mut logits = logits.into_iter();
        for (i, (seq, input)) in self.sequences.iter_mut().zip(&inputs).enumerate() {
            let Some((range, _)) = input else { continue };
            let row = logits.next().expect("one result per chunk");
            if seq.prefilled < seq.prompt_len {
                seq.prefilled = range.end;
            }
            let Some(row) = row else { continue };
            let row: Vec<f32> = row.squeeze(0)?.to_vec1()?;
            let (piece, finish) = seq.accept(self.lm, &row)?;
            if let Some(text) = piece {
                let logprobs = seq.unsent_logprobs();
                events.push((seq.id, SequenceEvent::Text { text, logprobs }));
            }
            if let Some(reason) = finish {
                finished.push((i, reason));
            }
        }
        finished.sort_unstable_by_key(|&(i, _)| i);
        for &(i, reason) in finished.iter().rev() {
            let seq = self.sequences.remove(i);
            let id = seq.id;
            let (last, generation) = seq.finish(reason);
            // Events of removed sequences go at the end, each sequence's in order.
            if let Some(last) = last {
                events.push((id, last));
            }
            events.push((id, SequenceEvent::Finished(generation)));
        }
        Ok(events)
    }
}

/// Which sequences take part in a step, given per sequence `None` (nothing to run) or its
/// input length and whether it is a prompt chunk: every decode row, and prompt chunks in
/// arrival order while they fit `budget` (the first always, so long prompts progress). A chunk
/// that does not fit stops later chunks too: prefill is first come, first served.
fn admit(wants: impl Iterator<Item = Option<(usize, bool)>>, budget: usize) -> Vec<bool> {
    let mut left = budget;
    let mut any_prefill = false;
    let mut blocked = false;
    wants
        .map(|want| match want {
            None => false,
            Some((_, false)) => true,
            Some((len, true)) => {
                let ok = !blocked && (len <= left || !any_prefill);
                if ok {
                    left = left.saturating_sub(len);
                    any_prefill = true;
                } else {
                    blocked = true;
                }
                ok
            }
        })
        .collect()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decode_row_runs_and_prompt_chunks_share_the_budget_in_order() {
        let wants = [Some((1, false)), Some((300, true)), Some((1, false)), Some((200, true)), Some((100, true)), None, Some((1, false))];
        assert_eq!(admit(wants.into_iter(), 512), vec![true, true, true, true, false, false, true]);
    }

    #[test]
    fn the_first_chunk_runs_even_over_budget_and_blocks_later_ones() {
        let wants = [Some((512, true)), Some((1, true)), Some((1, false))];
        assert_eq!(admit(wants.into_iter(), 64), vec![true, false, true]);
        assert_eq!(admit([Some((100, true)), Some((600, true)), Some((10, true))].into_iter(), 512), vec![true, false, false]);
    }

    #[test]
    fn char_boundaries_round_down() {
        let s = "aé";
        assert_eq!(floor_char_boundary(s, 2), 1);
        assert_eq!(floor_char_boundary(s, 9), 3);
    }
}
