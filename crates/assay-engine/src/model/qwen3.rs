//! Qwen3: the llama decoder with an RMS norm on each query and key head before RoPE, and a
//! head size of its own (not hidden / heads).

use super::{Architecture, GgufKeys, HfBase, ModelConfig};
use crate::error::Result;
use crate::gguf::GgufFile;
use std::path::Path;

pub struct Qwen3;

impl Architecture for Qwen3 {
    fn names(&self) -> &'static [&'static str] {
        &["qwen3"]
    }

    fn config_from_gguf(&self, file: &GgufFile) -> Result<ModelConfig> {
        let mut c = GgufKeys { file, arch: "qwen3" }.base_config()?;
        c.qk_norm = true;
        Ok(c)
    }

    fn config_from_hf(&self, config: &serde_json::Value, path: &Path) -> Result<ModelConfig> {
        let mut c = HfBase::parse(config, path)?.config();
        c.qk_norm = true;
        c.qkv_bias = config["attention_bias"].as_bool().unwrap_or(false);
        super::qwen2::refuse_sliding_window(config, path)?;
        Ok(c)
    }
}
