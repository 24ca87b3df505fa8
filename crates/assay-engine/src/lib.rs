//! assay-engine: the candle runtime that runs local models for every other assay crate.
//!
//! It owns devices, model files (GGUF, safetensors folders, the manifest of default models,
//! the offline Hugging Face cache), tokenizers, chat templates, our own llama-family model
//! with per-sequence KV caches and a flat-batch forward pass, the CPU matmul paths, sampling,
//! generation (continuous batching of many sequences) and sentence embeddings. It must not know about evaluation (checks, datasets,
//! storage) or HTTP: callers hand it token ids and sampling parameters.

pub mod attention;
pub mod batch;
pub mod chat;
pub mod cpu_attention;
pub mod device;
pub mod embed;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod judge;
pub mod kv_cache;
pub mod language_model;
pub mod llama;
pub mod packed_gemm;
pub mod prefix_cache;
pub mod projection;
pub mod registry;
pub mod sampling;
pub mod tokenizer;

pub use batch::{BatchConfig, BatchGenerator, SeqId, SequenceEvent};
pub use chat::{ChatMessage, ChatTemplate};
pub use device::DeviceSpec;
pub use embed::Embedder;
pub use error::{EngineError, Result};
pub use generate::generate;
pub use kv_cache::KvCache;
pub use language_model::LanguageModel;
pub use llama::{LlamaConfig, LlamaModel, LogitsAt, SequenceChunk};
pub use prefix_cache::{PrefixCache, PrefixCacheStats};
pub use projection::{MatmulPath, MatmulPolicy};
pub use registry::{Manifest, ModelFiles, ModelResolver};
pub use tokenizer::TextTokenizer;
