//! Llama 2 and 3.x (with Llama 3's `rope_scaling`), SmolLM and Mistral (sliding window): the
//! plain decoder. GGUF files of this family store q and k permuted for rotation of
//! interleaved pairs, as llama.cpp converts them.

use super::{Architecture, GgufKeys, HfBase, Llama3RopeScaling, ModelConfig};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use std::path::Path;

pub struct Llama;

impl Architecture for Llama {
    fn names(&self) -> &'static [&'static str] {
        &["llama", "mistral"]
    }

    fn config_from_gguf(&self, file: &GgufFile) -> Result<ModelConfig> {
        let arch = file.string("general.architecture")?;
        let keys = GgufKeys { file, arch };
        let mut c = keys.base_config()?;
        c.rope_interleaved = true;
        c.sliding_window = keys.u32("attention.sliding_window").ok();
        Ok(c)
    }

    fn config_from_hf(&self, config: &serde_json::Value, path: &Path) -> Result<ModelConfig> {
        let base = HfBase::parse(config, path)?;
        let mut c = base.config();
        c.sliding_window = base.sliding_window.filter(|&w| w < c.context_length);
        c.rope_scaling = llama3_rope_scaling(config, path)?;
        Ok(c)
    }
}

/// `rope_scaling` of type `llama3`; any other type is refused rather than ignored.
pub(crate) fn llama3_rope_scaling(config: &serde_json::Value, path: &Path) -> Result<Option<Llama3RopeScaling>> {
    let scaling = &config["rope_scaling"];
    if scaling.is_null() {
        return Ok(None);
    }
    let kind = scaling["rope_type"].as_str().or_else(|| scaling["type"].as_str()).unwrap_or("");
    let invalid = |reason: String| EngineError::InvalidModel { path: path.to_path_buf(), reason };
    match kind {
        "llama3" => serde_json::from_value(scaling.clone()).map(Some).map_err(|e| invalid(format!("rope_scaling: {e}"))),
        "default" => Ok(None),
        other => Err(invalid(format!("rope_scaling of type '{other}' is not supported (llama3 is)"))),
    }
}
