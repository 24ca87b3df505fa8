//! The engine's typed errors. Each variant names the file, model or limit involved so that
//! the CLI and the server can show it as is.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file not found: {0}")]
    FileNotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid GGUF file: {reason}")]
    CorruptGguf { path: PathBuf, reason: String },
    #[error("{path}: unsupported architecture '{arch}' (supported: {supported})")]
    UnsupportedArchitecture { path: PathBuf, arch: String, supported: &'static str },
    #[error("{path}: missing metadata key '{key}'")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("{path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("no tokenizer for {model}: {reason}")]
    Tokenizer { model: String, reason: String },
    #[error("chat template of {model}: {reason}")]
    ChatTemplate { model: String, reason: String },
    #[error("unknown model '{name}'; looked for: {looked}")]
    UnknownModel { name: String, looked: String },
    #[error("invalid device '{0}': expected cpu, cuda or cuda:N")]
    InvalidDevice(String),
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    #[error("prompt of {tokens} tokens does not fit the context of {limit} tokens (with {reserved} reserved for the output)")]
    ContextOverflow { tokens: usize, reserved: usize, limit: usize },
    #[error("item '{item}' needs {tokens} tokens with its longest check, more than the context of {limit}")]
    ItemTooLong { item: String, tokens: usize, limit: usize },
    #[error("empty prompt: nothing to condition the model on")]
    EmptyPrompt,
    #[error(transparent)]
    InvalidParams(#[from] assay_core::SamplingParamsError),
    #[error(transparent)]
    InvalidInput(#[from] assay_core::InputError),
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
