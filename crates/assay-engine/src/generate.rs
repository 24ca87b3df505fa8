//! Text generation for one sequence: chunked prefill, then decode with sampling, stop strings,
//! end-of-sequence tokens, a token budget, log-probabilities and a streaming callback.
//! Sequences are decoded by `batch::BatchGenerator`; `generate` is a batch of one.

use crate::batch::{BatchConfig, BatchGenerator, SequenceEvent};
use crate::error::{EngineError, Result};
use crate::language_model::LanguageModel;
use crate::llama::{LogitsAt, SequenceChunk};
use assay_core::{Generation, SamplingParams};
use candle_core::Tensor;

/// Prompt tokens per prefill pass: bounds the attention score matrix (`heads x chunk x context`)
/// for long prompts while keeping matmuls large.
pub const PREFILL_CHUNK: usize = 512;

/// Prefills `prompt` into a fresh cache in chunks and returns the cache and the last logits.
pub fn prefill(lm: &LanguageModel, prompt: &[u32], capacity: usize) -> Result<(crate::KvCache, Tensor)> {
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let mut cache = lm.model.new_cache(capacity)?;
    let mut last = None;
    for (i, piece) in prompt.chunks(PREFILL_CHUNK).enumerate() {
        let is_last = (i + 1) * PREFILL_CHUNK >= prompt.len();
        let logits = if is_last { LogitsAt::Last } else { LogitsAt::None };
        let mut chunk = [SequenceChunk { cache: &mut cache, tokens: piece, logits }];
        last = lm.model.forward(&mut chunk)?.pop().flatten();
    }
    Ok((cache, last.expect("the last chunk asks for logits")))
}

/// Generates from `prompt` (token ids): a batch of one sequence (`batch.rs` holds the sampling,
/// stop-string and log-probability logic). `on_text` receives each new piece of text as soon
/// as it is certain not to be part of a stop string; it returns `false` to cancel, which ends
/// the generation with what was produced so far.
pub fn generate(lm: &LanguageModel, prompt: &[u32], params: &SamplingParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
    let mut batch = BatchGenerator::new(lm, BatchConfig::single_sequence());
    let id = batch.add(prompt.to_vec(), params.clone())?;
    loop {
        for (_, event) in batch.step()? {
            match event {
                SequenceEvent::Text { text, .. } => {
                    if !on_text(&text) {
                        return Ok(batch.cancel(id).expect("the sequence is still running"));
                    }
                }
                SequenceEvent::Finished(generation) => return Ok(generation),
            }
        }
    }
}
