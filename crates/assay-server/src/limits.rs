//! The bounds every request is checked against before anything is allocated or queued for it:
//! one validated set, from flags (`--limit-*`), published in `/openapi.json` so that clients and
//! fuzzers generate within them. A request over a bound is refused with 400 naming the bound and
//! its flag (413 for bytes); memory beyond them is bounded by each engine's KV pool.

use crate::error::ApiError;
use assay_core::{JudgeMode, JudgeOptions};
use assay_pipeline::optimise::{OptimiseOptions, MAX_BUDGET, MAX_POPULATION};
use serde::Deserialize;

/// See the module notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// New tokens per choice (`max_tokens`), and per generation of optimise runs.
    pub max_tokens: usize,
    /// Choices per generation request (`n`).
    pub n: usize,
    /// Rationales sampled per check (`samples`).
    pub samples: usize,
    /// Tokens of one rationale (`rationale_tokens`).
    pub rationale_tokens: usize,
    /// Items (or pairs, or embedding inputs) per request.
    pub items: usize,
    /// Checks per judge request.
    pub checks: usize,
    /// Candidates per generation of an optimise run (`population`).
    pub population: usize,
    /// Candidate evaluations per item of an optimise run (`budget`).
    pub budget: usize,
    /// Bytes of text per request to tokenize (messages, prompts, items, embedding inputs).
    pub prompt_bytes: usize,
    /// Streamed responses open at once.
    pub streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// The defaults of the `--limit-*` flags.
    pub const DEFAULT: Self =
        Self { max_tokens: 4096, n: 16, samples: 32, rationale_tokens: 512, items: 4096, checks: 256, population: MAX_POPULATION, budget: MAX_BUDGET, prompt_bytes: 4 << 20, streams: 256 };
}

/// `mode`, `samples`, `temperature`, `rationale_tokens` and `seed` as a request gives them (see
/// `Limits::judge`).
#[derive(Debug, Default, Deserialize)]
pub struct JudgeOptionsRequest {
    pub mode: Option<JudgeMode>,
    pub samples: Option<usize>,
    pub temperature: Option<f64>,
    pub rationale_tokens: Option<usize>,
    pub seed: Option<u64>,
}

/// A request's number as the engine's `f32`: a positive value too small for it stays positive
/// (the smallest normal `f32`) rather than becoming 0, which may mean something else (greedy) or
/// be refused (`top_p`).
pub fn narrow(x: f64) -> f32 {
    if x > 0.0 && (x as f32) < f32::MIN_POSITIVE {
        f32::MIN_POSITIVE
    } else {
        x as f32
    }
}

/// The bound's name, its value and its flag, for messages.
fn over(what: &str, got: usize, limit: usize, flag: &str) -> ApiError {
    ApiError::InvalidRequest(format!("{what} is {got}, over this server's limit of {limit} ({flag})"))
}

impl Limits {
    /// Rejects bounds that are zero or past what the engine takes at all.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("max_tokens", self.max_tokens),
            ("n", self.n),
            ("samples", self.samples),
            ("rationale_tokens", self.rationale_tokens),
            ("items", self.items),
            ("checks", self.checks),
            ("population", self.population),
            ("budget", self.budget),
            ("prompt_bytes", self.prompt_bytes),
            ("streams", self.streams),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(format!("--limit-{} must be at least 1", name.replace('_', "-")));
        }
        if self.samples > JudgeOptions::MAX_SAMPLES || self.rationale_tokens > JudgeOptions::MAX_RATIONALE_TOKENS {
            return Err(format!("--limit-samples is at most {} and --limit-rationale-tokens at most {}", JudgeOptions::MAX_SAMPLES, JudgeOptions::MAX_RATIONALE_TOKENS));
        }
        if !(2..=MAX_POPULATION).contains(&self.population) || !(self.population..=MAX_BUDGET).contains(&self.budget) {
            return Err(format!("--limit-population must be 2 to {MAX_POPULATION} and --limit-budget from it to {MAX_BUDGET}"));
        }
        Ok(())
    }

    pub fn max_tokens(&self, got: usize) -> Result<(), ApiError> {
        (got <= self.max_tokens).then_some(()).ok_or_else(|| over("max_tokens", got, self.max_tokens, "--limit-max-tokens"))
    }

    pub fn n(&self, got: usize) -> Result<(), ApiError> {
        (1..=self.n).contains(&got).then_some(()).ok_or_else(|| if got == 0 { ApiError::InvalidRequest("n must be at least 1".into()) } else { over("n", got, self.n, "--limit-n") })
    }

    /// The judge options a request asks for: what it leaves out takes the default, lowered to
    /// this server's limits; what it gives is checked against them.
    pub fn judge(&self, asked: &JudgeOptionsRequest) -> Result<JudgeOptions, ApiError> {
        let defaults = JudgeOptions::default();
        let options = JudgeOptions {
            mode: asked.mode.unwrap_or(defaults.mode),
            samples: asked.samples.unwrap_or(defaults.samples),
            temperature: asked.temperature.map_or(defaults.temperature, narrow),
            rationale_tokens: asked.rationale_tokens.unwrap_or(defaults.rationale_tokens.min(self.rationale_tokens)),
            seed: asked.seed.unwrap_or(defaults.seed),
            examples: Vec::new(),
        };
        self.judge_options(&options)?;
        Ok(options)
    }

    /// Checks options as stored (a run's) or resolved against the limits.
    pub fn judge_options(&self, options: &JudgeOptions) -> Result<(), ApiError> {
        if options.samples > self.samples {
            return Err(over("samples", options.samples, self.samples, "--limit-samples"));
        }
        if options.rationale_tokens > self.rationale_tokens {
            return Err(over("rationale_tokens", options.rationale_tokens, self.rationale_tokens, "--limit-rationale-tokens"));
        }
        Ok(options.validate()?)
    }

    pub fn items(&self, got: usize) -> Result<(), ApiError> {
        (got <= self.items).then_some(()).ok_or_else(|| over("the number of items", got, self.items, "--limit-items"))
    }

    pub fn checks(&self, got: usize) -> Result<(), ApiError> {
        (got <= self.checks).then_some(()).ok_or_else(|| over("the number of checks", got, self.checks, "--limit-checks"))
    }

    /// An optimise run's search: population, budget and tokens per generation.
    pub fn optimise(&self, search: &OptimiseOptions) -> Result<(), ApiError> {
        if search.population > self.population {
            return Err(over("population", search.population, self.population, "--limit-population"));
        }
        if search.budget > self.budget {
            return Err(over("budget", search.budget, self.budget, "--limit-budget"));
        }
        self.max_tokens(search.max_tokens)?;
        Ok(search.validate()?)
    }

    /// Text to tokenize: 413 past the bound, before any tokenizing.
    pub fn prompt_bytes(&self, got: usize) -> Result<(), ApiError> {
        (got <= self.prompt_bytes).then_some(()).ok_or(ApiError::PromptTooLarge { bytes: got, limit: self.prompt_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_named_with_their_flags() {
        let l = Limits::default();
        assert!(l.validate().is_ok());
        assert!(Limits { streams: 0, ..l }.validate().unwrap_err().contains("--limit-streams"));
        assert!(Limits { samples: 10_000, ..l }.validate().is_err());
        let err = l.max_tokens(1_000_000_000).unwrap_err().to_string();
        assert!(err.contains("1000000000") && err.contains("4096") && err.contains("--limit-max-tokens"), "{err}");
        let huge = JudgeOptionsRequest { samples: Some(1_000_000_000_000), temperature: Some(0.7), ..Default::default() };
        assert!(l.judge(&huge).unwrap_err().to_string().contains("--limit-samples"));
        // Defaults are lowered to the limits; what a request gives is not.
        let low = Limits { rationale_tokens: 8, ..l };
        assert_eq!(low.judge(&JudgeOptionsRequest::default()).unwrap().rationale_tokens, 8);
        assert!(low.judge(&JudgeOptionsRequest { rationale_tokens: Some(48), ..Default::default() }).is_err());
        assert_eq!(l.prompt_bytes(8 << 20).unwrap_err().status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(l.n(0).is_err() && l.n(17).is_err() && l.n(16).is_ok());
        assert_eq!((narrow(5e-324), narrow(0.0), narrow(0.5)), (f32::MIN_POSITIVE, 0.0, 0.5));
    }
}
