//! assay-engine: the runtime that runs local models for every other assay crate.
//!
//! Callers never drive a model: they start an `Engine` per loaded model (one thread, fed by a
//! channel) and send it requests (`generate`, `judge`, `embed`). Inside, one scheduler
//! (`scheduler.rs`) runs every request's sequences in shared steps over a paged KV pool
//! (`kv_pool.rs`) whose computed prefixes are found again by token ids in a radix tree
//! (`radix_tree.rs`); judging is scheduling (`judge.rs`). Models are decoder-only
//! architectures behind one trait (`model/`), run over a flat batch with block tables
//! (`batch.rs`) with attention over the pool (`attention/`). Around them: devices, model files
//! (GGUF, safetensors folders, the manifest of default models, the offline Hugging Face cache,
//! random weights), tokenizers, chat templates, sampling and sentence embeddings.
//!
//! It must not know about evaluation records (datasets, storage, reports) or HTTP: callers
//! hand it token ids, checks and items, and sampling parameters.

pub mod attention;
pub mod batch;
pub mod chat;
pub mod device;
pub mod embed;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod judge;
pub mod kv_pool;
pub mod language_model;
pub mod model;
pub mod projection;
pub mod radix_tree;
pub mod registry;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use device::DeviceSpec;
pub use embed::Embedder;
pub use engine::{Admission, Embeddings, Engine, EngineConfig, EngineModel, EngineStats, GenEvent, JudgeEvent, Priority, RequestOptions};
pub use error::{EngineError, Result};
pub use language_model::LanguageModel;
pub use model::ModelConfig;
pub use projection::{MatmulPolicy, WeightCopy};
pub use registry::{Manifest, ModelFiles, ModelResolver};
pub use tokenizer::TextTokenizer;
