//! Text generation for one sequence: chunked prefill, then decode with sampling, stop strings,
//! end-of-sequence tokens, a token budget, log-probabilities and a streaming callback.

use crate::error::{EngineError, Result};
use crate::language_model::LanguageModel;
use crate::llama::{LogitsAt, SequenceChunk};
use crate::sampling::{token_logprob, Sampler};
use crate::tokenizer::IncrementalDecoder;
use assay_core::{FinishReason, Generation, SamplingParams};
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

/// Generates from `prompt` (token ids). `on_text` receives each new piece of text as soon as
/// it is certain not to be part of a stop string; it returns `false` to cancel, which ends the
/// generation with what was produced so far.
pub fn generate(lm: &LanguageModel, prompt: &[u32], params: &SamplingParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
    params.validate()?;
    let limit = lm.context_length();
    if prompt.len() >= limit {
        return Err(EngineError::ContextOverflow { tokens: prompt.len(), reserved: 1, limit });
    }
    let max_new = params.max_tokens.min(limit - prompt.len());
    let (mut cache, mut logits) = prefill(lm, prompt, prompt.len() + max_new)?;
    let mut sampler = Sampler::new(params);
    let mut history = prompt.to_vec();
    let mut decoder = IncrementalDecoder::new();
    let hold_back = params.stop.iter().map(String::len).max().unwrap_or(0).saturating_sub(1);
    let mut sent = 0usize;
    let mut logprobs = params.logprobs.then(Vec::new);
    let mut finish = FinishReason::Length;
    let mut cut_at = None;
    for step in 0..max_new {
        let row: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
        let id = sampler.next(&row, &history);
        history.push(id);
        if let Some(lps) = logprobs.as_mut() {
            lps.push(token_logprob(&row, id, params.top_logprobs, |t| lm.tokenizer.token_text(t)));
        }
        if lm.tokenizer.is_stop(id) {
            finish = FinishReason::Stop;
            break;
        }
        let text = decoder.push(&lm.tokenizer, id)?;
        // A stop string may straddle tokens: search the tail that could contain a new match.
        let from = floor_char_boundary(text, sent.saturating_sub(hold_back));
        if let Some(pos) = params.stop.iter().filter_map(|s| text[from..].find(s.as_str()).map(|p| from + p)).min() {
            cut_at = Some(pos);
            finish = FinishReason::Stop;
            break;
        }
        let safe = floor_char_boundary(text, text.len().saturating_sub(hold_back));
        if safe > sent {
            let keep_going = on_text(&text[sent..safe]);
            sent = safe;
            if !keep_going {
                finish = FinishReason::Stop;
                break;
            }
        }
        if step + 1 == max_new {
            break;
        }
        let mut chunk = [SequenceChunk { cache: &mut cache, tokens: &[id], logits: LogitsAt::Last }];
        logits = lm.model.forward(&mut chunk)?.pop().flatten().expect("asked for the last row");
    }
    let mut text = decoder.text().to_string();
    if let Some(pos) = cut_at {
        text.truncate(pos);
    }
    if text.len() > sent {
        on_text(&text[sent..]);
    }
    Ok(Generation {
        text,
        token_ids: history[prompt.len()..].to_vec(),
        prompt_tokens: prompt.len(),
        finish_reason: finish,
        logprobs,
    })
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
