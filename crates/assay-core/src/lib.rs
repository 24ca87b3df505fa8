//! assay-core: the domain types every other assay crate speaks.
//!
//! It owns the plain data that crosses crate boundaries (binary checks, evaluator sets, items,
//! judgments and scores; sampling parameters, generation results, token log-probabilities,
//! model roles) and their serde forms, which are also the
//! JSON file and wire formats. It must not depend on any ML runtime, storage or network crate:
//! everything here is cheap to construct in tests and in clients.

pub mod check;
pub mod generation;
pub mod metrics;
pub mod model;

pub use check::{parse_items_jsonl, Check, EvaluatorSet, InputError, ItemScore, JudgeItem, JudgeMode, JudgeOptions, JudgeSample, JudgedExample, Judgment, Verdict};
pub use generation::{FinishReason, Generation, SamplingParams, SamplingParamsError, TokenLogprob, TopLogprob};
pub use model::ModelRole;
