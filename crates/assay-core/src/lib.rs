//! assay-core: the domain types every other assay crate speaks.
//!
//! It owns the plain data that crosses crate boundaries (sampling parameters, generation
//! results, token log-probabilities, model roles) and their serde forms, which are also the
//! JSON file and wire formats. It must not depend on any ML runtime, storage or network crate:
//! everything here is cheap to construct in tests and in clients.

pub mod generation;
pub mod model;

pub use generation::{FinishReason, Generation, SamplingParams, SamplingParamsError, TokenLogprob, TopLogprob};
pub use model::ModelRole;
