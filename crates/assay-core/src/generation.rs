//! Sampling parameters and generation results, shared by the engine, the CLI and the server.

use serde::{Deserialize, Serialize};

/// How the next token is chosen. The defaults are greedy decoding with no limits but
/// `max_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Maximum number of tokens to generate.
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability sums to `top_p`.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables the cut.
    pub top_k: usize,
    /// Seed of the sampler's random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Penalty > 1 discourages tokens already present in the prompt or output (CTRL-style).
    pub repetition_penalty: f32,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Number of most likely alternatives to report per generated token (0 = only the chosen one).
    pub top_logprobs: usize,
    /// Report the log-probability of every generated token.
    pub logprobs: bool,
    /// Keep generating past end-of-sequence tokens until `max_tokens` (benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 0.0, top_p: 1.0, top_k: 0, seed: None, repetition_penalty: 1.0, stop: Vec::new(), top_logprobs: 0, logprobs: false, ignore_eos: false }
    }
}

/// A sampling parameter outside its valid range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingParamsError {
    #[error("temperature must be a finite number >= 0, got {0}")]
    Temperature(f32),
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
    #[error("repetition_penalty must be a finite number > 0, got {0}")]
    RepetitionPenalty(f32),
    #[error("top_logprobs must be at most {max}, got {got}")]
    TopLogprobs { got: usize, max: usize },
    #[error("stop strings must not be empty")]
    EmptyStop,
}

impl SamplingParams {
    /// Most alternatives a caller may ask for per token (OpenAI's limit).
    pub const MAX_TOP_LOGPROBS: usize = 20;

    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self { max_tokens, ..Self::default() }
    }

    /// Checks every field's range; the engine calls this before queueing work.
    pub fn validate(&self) -> Result<(), SamplingParamsError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingParamsError::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingParamsError::TopP(self.top_p));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return Err(SamplingParamsError::RepetitionPenalty(self.repetition_penalty));
        }
        if self.top_logprobs > Self::MAX_TOP_LOGPROBS {
            return Err(SamplingParamsError::TopLogprobs { got: self.top_logprobs, max: Self::MAX_TOP_LOGPROBS });
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(SamplingParamsError::EmptyStop);
        }
        Ok(())
    }

    /// True when decoding is deterministic argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Why generation ended, with OpenAI's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

/// One alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token_id: u32,
    pub token: String,
    pub logprob: f32,
}

/// A generated token with its log-probability under the model (before temperature and
/// truncation) and, on request, the most likely alternatives at that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token_id: u32,
    pub token: String,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text, cut before any stop string.
    pub text: String,
    /// Generated token ids, including a final end-of-sequence token if one was sampled.
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// Present when `SamplingParams::logprobs` was set.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_greedy() {
        let p = SamplingParams::default();
        assert!(p.validate().is_ok());
        assert!(p.is_greedy());
    }

    #[test]
    fn out_of_range_fields_are_rejected() {
        let bad = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert_eq!(bad(|p| p.temperature = -1.0), SamplingParamsError::Temperature(-1.0));
        assert_eq!(bad(|p| p.top_p = 0.0), SamplingParamsError::TopP(0.0));
        assert_eq!(bad(|p| p.repetition_penalty = f32::NAN).to_string(), "repetition_penalty must be a finite number > 0, got NaN");
        assert_eq!(bad(|p| p.top_logprobs = 21), SamplingParamsError::TopLogprobs { got: 21, max: 20 });
        assert_eq!(bad(|p| p.stop = vec![String::new()]), SamplingParamsError::EmptyStop);
    }

    #[test]
    fn json_rejects_unknown_fields_and_fills_defaults() {
        let p: SamplingParams = serde_json::from_str(r#"{"max_tokens": 8, "seed": 3}"#).unwrap();
        assert_eq!(p.max_tokens, 8);
        assert_eq!(p.seed, Some(3));
        assert_eq!(p.top_p, 1.0);
        assert!(serde_json::from_str::<SamplingParams>(r#"{"max_tokns": 8}"#).is_err());
    }
}
