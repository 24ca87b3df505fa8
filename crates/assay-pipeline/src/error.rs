//! The pipeline's one error type: what failed, and where it came from.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] assay_store::StoreError),
    #[error(transparent)]
    Engine(#[from] assay_engine::EngineError),
    #[error(transparent)]
    Input(#[from] assay_core::InputError),
    #[error(transparent)]
    Plot(#[from] crate::plots::PlotError),
    /// An OpenAI-compatible server refused or failed a request.
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
    /// The project's configuration cannot be used.
    #[error("project configuration: {0}")]
    Config(String),
    /// The request cannot be carried out on this project's data (empty dataset, no checks, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// Another process is working on the run.
    #[error("{0}")]
    Busy(String),
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
