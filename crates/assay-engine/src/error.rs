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
    UnsupportedArchitecture { path: PathBuf, arch: String, supported: String },
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
    #[error("{tokens} tokens (prompt and the most it may generate) do not fit the KV cache of {capacity} tokens; ask for fewer max_tokens or start with a larger --kv-cache-mb")]
    ExceedsKvCache { tokens: usize, capacity: usize },
    #[error("the KV cache budget of {budget_bytes} bytes holds no block of {block_bytes} bytes; raise --kv-cache-mb")]
    KvBudget { budget_bytes: usize, block_bytes: usize },
    #[error("model {model} is busy: {limit} requests are waiting or running; retry later")]
    Overloaded { model: String, limit: usize },
    #[error("the request did not finish within {seconds} s")]
    Timeout { seconds: u64 },
    #[error("model {model} does not {what}")]
    Unsupported { model: String, what: &'static str },
    #[error("the engine of {0} has stopped")]
    EngineStopped(String),
    #[error("internal error: {0}")]
    Internal(String),
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
