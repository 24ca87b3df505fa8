//! Gemma 3 (text): q/k norms, norms before and after both attention and the MLP, GELU (tanh),
//! embeddings scaled by sqrt(hidden), and five sliding-window layers (RoPE base 10,000) for
//! every global one (base 1,000,000). Hugging Face checkpoints store norm weights as `w - 1`;
//! llama.cpp's converter adds the 1 back, so GGUF norms are used as they are.

use super::{Activation, Architecture, GgufKeys, HfBase, LayerWeight, ModelConfig};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use std::path::Path;

pub struct Gemma3;

/// Layers per global one when a file does not say (every released Gemma 3).
const GLOBAL_EVERY: usize = 6;
/// RoPE base of the windowed layers when a file does not say.
const LOCAL_ROPE_THETA: f32 = 10_000.0;

impl Architecture for Gemma3 {
    fn names(&self) -> &'static [&'static str] {
        &["gemma3", "gemma3_text"]
    }

    fn config_from_gguf(&self, file: &GgufFile) -> Result<ModelConfig> {
        let keys = GgufKeys { file, arch: "gemma3" };
        let mut c = keys.base_config()?;
        c.rope_theta = keys.f32("rope.freq_base").unwrap_or(1_000_000.0);
        c.sliding_window = Some(keys.u32("attention.sliding_window")?);
        c.global_layer_every = Some(keys.u32("attention.sliding_window_pattern").unwrap_or(GLOBAL_EVERY));
        c.rope_local_theta = Some(keys.f32("rope.local_freq_base").unwrap_or(LOCAL_ROPE_THETA));
        let hidden = c.hidden_size as f32;
        Ok(options(c, hidden.sqrt()))
    }

    fn config_from_hf(&self, config: &serde_json::Value, path: &Path) -> Result<ModelConfig> {
        let base = HfBase::parse(config, path)?;
        let mut c = base.config();
        let invalid = |reason: String| EngineError::InvalidModel { path: path.to_path_buf(), reason };
        c.sliding_window = Some(base.sliding_window.ok_or_else(|| invalid("sliding_window is missing".into()))?);
        c.global_layer_every = Some(match (config["sliding_window_pattern"].as_u64(), config["layer_types"].as_array()) {
            (Some(n), _) => n as usize,
            (None, Some(types)) => global_every(types).ok_or_else(|| invalid("layer_types is not five sliding layers per full one (or any fixed period)".into()))?,
            (None, None) => GLOBAL_EVERY,
        });
        c.rope_local_theta = Some(config["rope_local_base_freq"].as_f64().map_or(LOCAL_ROPE_THETA, |x| x as f32));
        if let Some(s) = config["query_pre_attn_scalar"].as_f64() {
            c.attention_scale = 1.0 / (s as f32).sqrt();
        }
        c.final_logit_softcap = config["final_logit_softcapping"].as_f64().map(|x| x as f32);
        if !config["rope_scaling"].is_null() {
            return Err(invalid("rope_scaling is not supported for gemma3 yet".into()));
        }
        c.norm_weight_offset = 1.0;
        let hidden = c.hidden_size as f32;
        Ok(options(c, hidden.sqrt()))
    }

    fn hf_layer_name(&self, w: LayerWeight) -> &'static str {
        match w {
            LayerWeight::PostAttnNorm => "post_attention_layernorm.weight",
            LayerWeight::FfnNorm => "pre_feedforward_layernorm.weight",
            LayerWeight::PostFfnNorm => "post_feedforward_layernorm.weight",
            other => other.hf_llama(),
        }
    }
}

/// What every Gemma 3 uses, whatever the file.
fn options(mut c: ModelConfig, embed_scale: f32) -> ModelConfig {
    c.qk_norm = true;
    c.sandwich_norms = true;
    c.activation = Activation::GeluTanh;
    c.embed_scale = Some(embed_scale);
    c
}

/// The period of global layers in `layer_types` (`sliding_attention` / `full_attention`), if
/// every `n`-th layer is full and the others sliding.
fn global_every(types: &[serde_json::Value]) -> Option<usize> {
    let full: Vec<bool> = types.iter().map(|t| t.as_str() == Some("full_attention")).collect();
    let n = full.iter().position(|&f| f)? + 1;
    full.iter().enumerate().all(|(i, &f)| f == ((i + 1) % n == 0)).then_some(n)
}
