//! Model architectures behind one trait. Every supported architecture is a decoder-only
//! transformer that the shared `Decoder` (`decoder.rs`) runs over a flat batch with block
//! tables; what differs between them (how a file states the hyper-parameters, what its tensors
//! are called, which of the decoder's options it uses: biases, q/k norms, sandwich norms,
//! sliding windows, GELU, logit soft-capping) is an `Architecture`, one module each, listed in
//! `ARCHITECTURES`. A new architecture is one module plus one line there.

pub mod decoder;
pub mod gemma3;
pub mod llama;
mod mlp;
pub mod qwen2;
pub mod qwen3;
pub mod random;
pub mod weights;

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::kv_pool::KvLayout;
use candle_core::DType;
pub use decoder::Decoder;
use serde::Deserialize;
use std::path::Path;

/// Every architecture we run; the first whose `names` contain a file's architecture loads it.
pub static ARCHITECTURES: &[&dyn Architecture] = &[&llama::Llama, &qwen2::Qwen2, &qwen3::Qwen3, &gemma3::Gemma3];

/// The architecture a file names, or a clear error listing the supported ones.
pub fn architecture(name: &str, path: &Path) -> Result<&'static dyn Architecture> {
    ARCHITECTURES.iter().copied().find(|a| a.names().contains(&name)).ok_or_else(|| EngineError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        arch: name.to_string(),
        supported: ARCHITECTURES.iter().flat_map(|a| a.names().iter().copied()).collect::<Vec<_>>().join(", "),
    })
}

/// One architecture: its names, how its files state the hyper-parameters, its tensor names.
pub trait Architecture: Sync {
    /// `general.architecture` (GGUF) and `model_type` (Hugging Face) values it loads.
    fn names(&self) -> &'static [&'static str];
    /// The configuration from a GGUF file's metadata.
    fn config_from_gguf(&self, file: &GgufFile) -> Result<ModelConfig>;
    /// The configuration from a Hugging Face `config.json`.
    fn config_from_hf(&self, config: &serde_json::Value, path: &Path) -> Result<ModelConfig>;
    /// The Hugging Face name of a layer tensor (GGUF names are the same for every
    /// architecture: `LayerWeight::gguf`).
    fn hf_layer_name(&self, w: LayerWeight) -> &'static str {
        w.hf_llama()
    }
}

/// Activation of the gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Silu,
    /// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// The activation of one value. GELU is candle's f32 arithmetic (`gelu`), bit for bit;
    /// SiLU is candle's formula with an `exp` the compiler vectorises (within 2 ulp of
    /// `f32::exp`): libm's `expf`, one call per value, and its loop were ~9% of a 1.5B prefill.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Self::Silu => v / (1.0 + exp(-v)),
            Self::GeluTanh => 0.5 * v * (1.0 + f32::tanh(0.797_884_6 * v * (1.0 + 0.044715 * v * v))),
        }
    }

    /// `h = act(gate) * up`, one loop per activation so that it vectorises (a `match` per
    /// value kept it scalar).
    pub fn gated(self, gate: &[f32], up: &[f32], h: &mut [f32]) {
        let values = h.iter_mut().zip(gate).zip(up);
        match self {
            Self::Silu => values.for_each(|((h, &g), &u)| *h = Self::Silu.apply(g) * u),
            Self::GeluTanh => values.for_each(|((h, &g), &u)| *h = Self::GeluTanh.apply(g) * u),
        }
    }
}

/// `e^x` within 2 ulp for |x| <= 87 (clamped beyond: `e^88` or `e^-87`, which SiLU turns
/// into `x` or 0 as the exact value does), NaN for NaN; plain arithmetic without branches
/// or calls, so loops over it vectorise. `x = n ln 2 + r` with |r| <= ln 2 / 2, `e^r` by its
/// Taylor series to degree 7 (remainder < 1e-8), `2^n` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // ln 2 in two parts, so `n ln 2` is subtracted without rounding error.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let mut p = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits((n.wrapping_add(127) as u32).wrapping_shl(23))
}

/// Llama 3's per-frequency RoPE scaling (`rope_scaling` of type `llama3`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

impl Llama3RopeScaling {
    /// The factor dividing each frequency `1 / theta^(2i/d)`.
    pub fn factors(&self, theta: f32, head_dim: usize) -> Vec<f32> {
        let (low_wl, high_wl) = (self.original_max_position_embeddings as f32 / self.low_freq_factor, self.original_max_position_embeddings as f32 / self.high_freq_factor);
        (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wl {
                    1.0
                } else if wavelen > low_wl {
                    self.factor
                } else {
                    let smooth = (self.original_max_position_embeddings as f32 / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor);
                    // freq' = (1 - smooth) freq / factor + smooth freq
                    1.0 / ((1.0 - smooth) / self.factor + smooth)
                }
            })
            .collect()
    }
}

/// Everything the decoder needs to know about a model's shape and options. The default is
/// empty (no shape) with every option off: architectures fill in what their files state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    /// GGUF llama weights are permuted for rotation of interleaved pairs (2i, 2i+1); Hugging
    /// Face weights, and every other architecture, rotate halves (i, i + d/2).
    pub rope_interleaved: bool,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Keys older than this many positions are not seen (Mistral, Gemma's local layers).
    pub sliding_window: Option<usize>,
    /// With a window: every `n`-th layer (1-based) is global, the others windowed (Gemma 3:
    /// 6). `None`: every layer is windowed.
    pub global_layer_every: Option<usize>,
    /// RoPE base of windowed layers when it differs (Gemma 3: 10,000 against 1,000,000).
    pub rope_local_theta: Option<f32>,
    pub qkv_bias: bool,
    /// RMS norms of each query and key head before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Norms after attention and after the MLP too (Gemma).
    pub sandwich_norms: bool,
    pub activation: Activation,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embed_scale: Option<f32>,
    /// Added to every norm weight at load (Gemma's Hugging Face weights store `w - 1`).
    pub norm_weight_offset: f32,
    /// Queries are scaled by this (1 / sqrt(head_dim) unless the model says otherwise).
    pub attention_scale: f32,
    /// Logits = c * tanh(logits / c).
    pub final_logit_softcap: Option<f32>,
}

impl ModelConfig {
    /// The window of layer `layer`, if it has one.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        let global = self.global_layer_every.is_some_and(|n| (layer + 1).is_multiple_of(n));
        self.sliding_window.filter(|_| !global)
    }

    /// RoPE base of layer `layer`.
    pub fn layer_rope_theta(&self, layer: usize) -> f32 {
        match (self.layer_window(layer), self.rope_local_theta) {
            (Some(_), Some(local)) => local,
            _ => self.rope_theta,
        }
    }

    pub fn kv_layout(&self, dtype: DType) -> KvLayout {
        KvLayout { n_layers: self.n_layers, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim, dtype }
    }

    /// Rejects shapes the decoder cannot run, naming the file.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(EngineError::InvalidModel { path: path.to_path_buf(), reason });
        if self.n_heads == 0 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!("{} heads cannot share {} key/value heads", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) || self.n_layers == 0 || self.hidden_size == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return bad(format!(
                "invalid shape: head_dim {}, {} layers, hidden {}, vocabulary {}, feed-forward {}",
                self.head_dim, self.n_layers, self.hidden_size, self.vocab_size, self.intermediate_size
            ));
        }
        if self.context_length == 0 || self.context_length > MAX_CONTEXT {
            return bad(format!("context length {} is outside 1..={MAX_CONTEXT}", self.context_length));
        }
        if self.sliding_window == Some(0) || self.global_layer_every == Some(0) {
            return bad("a sliding window and its layer pattern must be at least 1".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0 && self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("invalid rms_norm_eps {} or rope theta {}", self.rms_norm_eps, self.rope_theta));
        }
        Ok(())
    }
}

/// Longest context a model may declare: RoPE tables are built for every position, so a
/// corrupt value must not size them.
pub const MAX_CONTEXT: usize = 1 << 20;

/// Tensors of one decoder layer, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWeight {
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    Out,
    /// Gemma's norm after attention.
    PostAttnNorm,
    /// The norm before the MLP.
    FfnNorm,
    /// Gemma's norm after the MLP.
    PostFfnNorm,
    Gate,
    Up,
    Down,
}

impl LayerWeight {
    /// llama.cpp's name (the same for every architecture).
    pub fn gguf(self) -> &'static str {
        use LayerWeight::*;
        match self {
            AttnNorm => "attn_norm.weight",
            Q => "attn_q.weight",
            K => "attn_k.weight",
            V => "attn_v.weight",
            QBias => "attn_q.bias",
            KBias => "attn_k.bias",
            VBias => "attn_v.bias",
            QNorm => "attn_q_norm.weight",
            KNorm => "attn_k_norm.weight",
            Out => "attn_output.weight",
            PostAttnNorm => "post_attention_norm.weight",
            FfnNorm => "ffn_norm.weight",
            PostFfnNorm => "post_ffw_norm.weight",
            Gate => "ffn_gate.weight",
            Up => "ffn_up.weight",
            Down => "ffn_down.weight",
        }
    }

    /// The Hugging Face llama family's name (Llama, Mistral, Qwen2, Qwen3).
    pub fn hf_llama(self) -> &'static str {
        use LayerWeight::*;
        match self {
            AttnNorm => "input_layernorm.weight",
            Q => "self_attn.q_proj.weight",
            K => "self_attn.k_proj.weight",
            V => "self_attn.v_proj.weight",
            QBias => "self_attn.q_proj.bias",
            KBias => "self_attn.k_proj.bias",
            VBias => "self_attn.v_proj.bias",
            QNorm => "self_attn.q_norm.weight",
            KNorm => "self_attn.k_norm.weight",
            Out => "self_attn.o_proj.weight",
            PostAttnNorm => "post_attention_norm.weight",
            FfnNorm => "post_attention_layernorm.weight",
            PostFfnNorm => "post_feedforward_layernorm.weight",
            Gate => "mlp.gate_proj.weight",
            Up => "mlp.up_proj.weight",
            Down => "mlp.down_proj.weight",
        }
    }
}

/// A tensor of the model, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Embed,
    Norm,
    LmHead,
    /// Llama 3's RoPE frequency factors (GGUF only).
    RopeFreqs,
    Layer(usize, LayerWeight),
}

impl Weight {
    pub fn gguf(self) -> String {
        match self {
            Self::Embed => "token_embd.weight".into(),
            Self::Norm => "output_norm.weight".into(),
            Self::LmHead => "output.weight".into(),
            Self::RopeFreqs => "rope_freqs.weight".into(),
            Self::Layer(i, w) => format!("blk.{i}.{}", w.gguf()),
        }
    }

    pub fn hf(self, arch: &dyn Architecture) -> String {
        match self {
            Self::Embed => "model.embed_tokens.weight".into(),
            Self::Norm => "model.norm.weight".into(),
            Self::LmHead => "lm_head.weight".into(),
            Self::RopeFreqs => "rope_freqs.weight".into(),
            Self::Layer(i, w) => format!("model.layers.{i}.{}", arch.hf_layer_name(w)),
        }
    }

    /// The shape the decoder expects (`[out, in]` for matrices).
    pub fn shape(self, c: &ModelConfig) -> Vec<usize> {
        use LayerWeight::*;
        let (h, q, kv, f) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        match self {
            Self::Embed | Self::LmHead => vec![c.vocab_size, h],
            Self::Norm => vec![h],
            Self::RopeFreqs => vec![c.head_dim / 2],
            Self::Layer(_, w) => match w {
                AttnNorm | PostAttnNorm | FfnNorm | PostFfnNorm => vec![h],
                Q => vec![q, h],
                K | V => vec![kv, h],
                QBias => vec![q],
                KBias | VBias => vec![kv],
                QNorm | KNorm => vec![c.head_dim],
                Out => vec![h, q],
                Gate | Up => vec![f, h],
                Down => vec![h, f],
            },
        }
    }
}

/// Reads `{arch}.*` keys of a GGUF file the way llama.cpp names them; what every architecture
/// shares.
pub(crate) struct GgufKeys<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl GgufKeys<'_> {
    pub fn u32(&self, key: &str) -> Result<usize> {
        Ok(self.file.u32(&format!("{}.{key}", self.arch))? as usize)
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        self.file.f32(&format!("{}.{key}", self.arch))
    }

    /// The configuration fields every architecture states the same way; the caller sets the
    /// rest (`rope_interleaved`, options).
    pub fn base_config(&self) -> Result<ModelConfig> {
        let hidden_size = self.u32("embedding_length")?;
        let n_heads = self.u32("attention.head_count")?;
        let n_kv_heads = self.u32("attention.head_count_kv").unwrap_or(n_heads);
        let head_dim = match self.u32("attention.key_length").or_else(|_| self.u32("rope.dimension_count")) {
            Ok(d) => d,
            Err(_) if n_heads > 0 => hidden_size / n_heads,
            Err(e) => return Err(e),
        };
        let vocab_size = match self.u32("vocab_size") {
            Ok(v) => v,
            Err(_) => self.file.array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(ModelConfig {
            architecture: self.arch.to_string(),
            hidden_size,
            n_layers: self.u32("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            intermediate_size: self.u32("feed_forward_length")?,
            vocab_size,
            context_length: self.u32("context_length")?,
            rms_norm_eps: self.f32("attention.layer_norm_rms_epsilon")? as f64,
            rope_theta: self.f32("rope.freq_base").unwrap_or(10_000.0),
            attention_scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
            ..ModelConfig::default()
        })
    }
}

/// The fields of a Hugging Face `config.json` every architecture shares.
#[derive(Debug, Deserialize)]
pub(crate) struct HfBase {
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub sliding_window: Option<usize>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

impl HfBase {
    pub fn parse(config: &serde_json::Value, path: &Path) -> Result<Self> {
        serde_json::from_value(config.clone()).map_err(|e| EngineError::InvalidModel { path: path.to_path_buf(), reason: e.to_string() })
    }

    pub fn config(&self) -> ModelConfig {
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        ModelConfig {
            architecture: self.model_type.clone(),
            hidden_size: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_heads: self.num_attention_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            context_length: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            attention_scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
            ..ModelConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2_ulp_and_silu_keeps_its_limits() {
        for i in -87_000..=87_000 {
            let x = i as f32 / 1000.0;
            let (got, want) = (exp(x), (x as f64).exp());
            let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
        }
        assert!(exp(f32::NAN).is_nan() && Activation::Silu.apply(f32::NAN).is_nan());
        let silu = |v: f32| Activation::Silu.apply(v);
        assert_eq!((silu(200.0), silu(f32::INFINITY)), (200.0, f32::INFINITY));
        assert!(silu(-200.0).abs() < 1e-30, "{}", silu(-200.0));
    }

    #[test]
    fn unknown_architectures_list_the_supported_ones() {
        let err = architecture("falcon", Path::new("m.gguf")).err().unwrap().to_string();
        assert!(err.contains("'falcon'") && err.contains("llama") && err.contains("gemma3") && err.contains("qwen3"), "{err}");
        assert_eq!(architecture("mistral", Path::new("x")).unwrap().names()[0], "llama");
    }

    #[test]
    fn gemma_layer_pattern_and_llama3_factors() {
        let mut c = HfBase {
            model_type: "t".into(),
            hidden_size: 8,
            num_hidden_layers: 12,
            num_attention_heads: 2,
            num_key_value_heads: None,
            head_dim: None,
            intermediate_size: 8,
            vocab_size: 8,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            max_position_embeddings: 64,
            sliding_window: None,
        }
        .config();
        c.sliding_window = Some(4);
        c.global_layer_every = Some(6);
        c.rope_local_theta = Some(1e4);
        let windowed: Vec<bool> = (0..12).map(|l| c.layer_window(l).is_some()).collect();
        assert_eq!(windowed, [true, true, true, true, true, false, true, true, true, true, true, false]);
        assert_eq!((c.layer_rope_theta(0), c.layer_rope_theta(5)), (1e4, 1e6));
        let s = Llama3RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
        let f = s.factors(500_000.0, 128);
        assert_eq!(f[0], 1.0, "high frequencies are kept");
        assert_eq!(f[63], 8.0, "low frequencies are divided by the factor");
        assert!(f.iter().all(|&x| (1.0..=8.0).contains(&x)));
    }
}
