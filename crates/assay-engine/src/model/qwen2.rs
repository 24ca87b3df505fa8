//! Qwen2 and Qwen2.5: the llama decoder with biases on q, k and v, rotating halves.

use super::{Architecture, GgufKeys, HfBase, ModelConfig};
use crate::error::Result;
use crate::gguf::GgufFile;
use std::path::Path;

pub struct Qwen2;

impl Architecture for Qwen2 {
    fn names(&self) -> &'static [&'static str] {
        &["qwen2"]
    }

    fn config_from_gguf(&self, file: &GgufFile) -> Result<ModelConfig> {
        let mut c = GgufKeys { file, arch: "qwen2" }.base_config()?;
        c.qkv_bias = true;
        Ok(c)
    }

    fn config_from_hf(&self, config: &serde_json::Value, path: &Path) -> Result<ModelConfig> {
        let mut c = HfBase::parse(config, path)?.config();
        c.qkv_bias = true;
        refuse_sliding_window(config, path)?;
        Ok(c)
    }
}

/// Qwen checkpoints state a window but switch it off; one that switches it on (for some
/// layers only) is refused rather than run wrong.
pub(crate) fn refuse_sliding_window(config: &serde_json::Value, path: &Path) -> Result<()> {
    if config["use_sliding_window"].as_bool() == Some(true) {
        return Err(crate::error::EngineError::InvalidModel { path: path.to_path_buf(), reason: "use_sliding_window = true is not supported for this architecture".into() });
    }
    Ok(())
}
