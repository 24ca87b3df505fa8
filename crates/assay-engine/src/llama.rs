//! Our decoder-only transformer (llama family: SmolLM2, Llama 2/3, Mistral; Qwen2 adds q/k/v
//! biases and rotates halves). One forward pass takes a flat batch: the new tokens of every
//! sequence side by side in one `[T, hidden]` matrix, each token with its own position, so the
//! projections and MLPs run as single matmuls over all sequences while attention runs per
//! sequence against that sequence's `KvCache`. Logits are computed only for the rows a caller
//! asks for.

use crate::attention::{self, Partial};
use crate::cpu_attention::{CpuAttention, KvSegment, QueryChunk};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::kv_cache::{KvCache, KvLayout};
use crate::projection::{LoadedWeight, MatmulPath, MatmulPolicy, Projection};
use candle_core::{DType, Device, Module, Tensor, D};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Architecture names we implement, for error messages.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, mistral, qwen2";

/// Hyper-parameters of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    /// GGUF llama weights are permuted for rotation of interleaved pairs (2i, 2i+1);
    /// Hugging Face weights, and every Qwen2, rotate halves (i, i + d/2).
    pub rope_interleaved: bool,
    pub context_length: usize,
}

/// Which rows of a chunk need logits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogitsAt {
    None,
    Last,
    All,
    /// Offsets within the chunk's new tokens.
    Rows(Vec<usize>),
}

impl LogitsAt {
    fn rows(&self, t: usize) -> Vec<usize> {
        match self {
            Self::None => vec![],
            Self::Last => vec![t - 1],
            Self::All => (0..t).collect(),
            Self::Rows(r) => r.clone(),
        }
    }
}

/// New tokens of one sequence for a forward pass; they are appended to `cache`.
pub struct SequenceChunk<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub logits: LogitsAt,
}

struct Layer {
    attn_norm: Tensor,
    /// q, k and v stacked: one matmul.
    qkv: Projection,
    out: Projection,
    ffn_norm: Tensor,
    /// gate and up stacked: one matmul.
    gate_up: Projection,
    down: Projection,
}

/// A loaded llama-family model.
pub struct LlamaModel {
    config: LlamaConfig,
    device: Device,
    /// `[vocab, hidden]` f32, for the input lookup.
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Projection,
    /// `[context_length, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    /// The fused attention kernel, where this CPU runs it.
    cpu_attention: Option<CpuAttention>,
}

/// Weights by role, whatever the file's naming.
trait WeightSource {
    fn load(&mut self, name: &WeightName) -> Result<LoadedWeight>;
    fn get(&mut self, name: &WeightName) -> Result<Tensor> {
        Ok(self.load(name)?.dense)
    }
    fn has(&self, name: &WeightName) -> bool;
}

#[derive(Debug, Clone, Copy)]
enum WeightName {
    Embed,
    Norm,
    LmHead,
    Rope,
    Layer(usize, LayerWeight),
}

#[derive(Debug, Clone, Copy)]
enum LayerWeight {
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    Out,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl WeightName {
    fn gguf(&self) -> String {
        use LayerWeight::*;
        match self {
            Self::Embed => "token_embd.weight".into(),
            Self::Norm => "output_norm.weight".into(),
            Self::LmHead => "output.weight".into(),
            Self::Rope => "rope_freqs.weight".into(),
            Self::Layer(i, w) => format!(
                "blk.{i}.{}",
                match w {
                    AttnNorm => "attn_norm.weight",
                    Q => "attn_q.weight",
                    K => "attn_k.weight",
                    V => "attn_v.weight",
                    QBias => "attn_q.bias",
                    KBias => "attn_k.bias",
                    VBias => "attn_v.bias",
                    Out => "attn_output.weight",
                    FfnNorm => "ffn_norm.weight",
                    Gate => "ffn_gate.weight",
                    Up => "ffn_up.weight",
                    Down => "ffn_down.weight",
                }
            ),
        }
    }

    fn hugging_face(&self) -> String {
        use LayerWeight::*;
        match self {
            Self::Embed => "model.embed_tokens.weight".into(),
            Self::Norm => "model.norm.weight".into(),
            Self::LmHead => "lm_head.weight".into(),
            Self::Rope => "rope_freqs.weight".into(),
            Self::Layer(i, w) => format!(
                "model.layers.{i}.{}",
                match w {
                    AttnNorm => "input_layernorm.weight",
                    Q => "self_attn.q_proj.weight",
                    K => "self_attn.k_proj.weight",
                    V => "self_attn.v_proj.weight",
                    QBias => "self_attn.q_proj.bias",
                    KBias => "self_attn.k_proj.bias",
                    VBias => "self_attn.v_proj.bias",
                    Out => "self_attn.o_proj.weight",
                    FfnNorm => "post_attention_layernorm.weight",
                    Gate => "mlp.gate_proj.weight",
                    Up => "mlp.up_proj.weight",
                    Down => "mlp.down_proj.weight",
                }
            ),
        }
    }
}

struct GgufWeights<'a> {
    file: &'a mut GgufFile,
    device: Device,
}

impl WeightSource for GgufWeights<'_> {
    fn load(&mut self, name: &WeightName) -> Result<LoadedWeight> {
        let q = self.file.tensor(&name.gguf(), &self.device)?;
        Ok(LoadedWeight { dense: q.dequantize(&self.device)?, source: Some(std::sync::Arc::new(q)) })
    }
    fn has(&self, name: &WeightName) -> bool {
        self.file.has_tensor(&name.gguf())
    }
}

struct SafetensorsWeights {
    tensors: HashMap<String, Tensor>,
    dir: std::path::PathBuf,
}

impl WeightSource for SafetensorsWeights {
    fn load(&mut self, name: &WeightName) -> Result<LoadedWeight> {
        let key = name.hugging_face();
        let t = self.tensors.remove(&key).ok_or_else(|| EngineError::InvalidModel {
            path: self.dir.clone(),
            reason: format!("missing tensor {key}"),
        })?;
        Ok(LoadedWeight { dense: t.to_dtype(DType::F32)?, source: None })
    }
    fn has(&self, name: &WeightName) -> bool {
        self.tensors.contains_key(&name.hugging_face())
    }
}

/// `config.json` of a Hugging Face llama / mistral / qwen2 checkpoint (the fields we use).
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    intermediate_size: usize,
    vocab_size: usize,
    rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    max_position_embeddings: usize,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

impl LlamaConfig {
    /// Reads the hyper-parameters from GGUF metadata (`{arch}.*` keys).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.string("general.architecture")?.to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(EngineError::UnsupportedArchitecture {
                path: file.path().to_path_buf(),
                arch,
                supported: SUPPORTED_ARCHITECTURES,
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden_size = file.u32(&key("embedding_length"))? as usize;
        let n_heads = file.u32(&key("attention.head_count"))? as usize;
        let n_kv_heads = file.u32(&key("attention.head_count_kv")).map(|x| x as usize).unwrap_or(n_heads);
        let head_dim = file.u32(&key("rope.dimension_count")).map(|x| x as usize).unwrap_or(hidden_size / n_heads);
        let vocab_size = match file.u32(&key("vocab_size")) {
            Ok(v) => v as usize,
            Err(_) => file.array("tokenizer.ggml.tokens")?.len(),
        };
        let config = Self {
            hidden_size,
            n_layers: file.u32(&key("block_count"))? as usize,
            n_heads,
            n_kv_heads,
            head_dim,
            intermediate_size: file.u32(&key("feed_forward_length"))? as usize,
            vocab_size,
            rms_norm_eps: file.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_theta: file.f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_interleaved: arch != "qwen2",
            context_length: file.u32(&key("context_length"))? as usize,
            architecture: arch,
        };
        config.validate(file.path())?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(EngineError::InvalidModel { path: path.to_path_buf(), reason });
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!("{} heads cannot share {} key/value heads", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim % 2 != 0 || self.n_layers == 0 || self.context_length == 0 {
            return bad(format!("invalid shape: head_dim {}, {} layers, context {}", self.head_dim, self.n_layers, self.context_length));
        }
        Ok(())
    }

    pub fn kv_layout(&self) -> KvLayout {
        KvLayout { n_layers: self.n_layers, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim, dtype: DType::F32 }
    }
}

impl LlamaModel {
    /// Loads a GGUF model. Quantized tensors are dequantized once, and each projection keeps
    /// the copies `policy` asks for.
    pub fn from_gguf(file: &mut GgufFile, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let config = LlamaConfig::from_gguf(file)?;
        Self::load(config, &mut GgufWeights { file, device: device.clone() }, device, policy)
    }

    /// Loads a Hugging Face checkpoint folder: `config.json` and `*.safetensors`.
    pub fn from_safetensors_dir(dir: &Path, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let read = |p: &Path| std::fs::read(p).map_err(|source| EngineError::Io { path: p.to_path_buf(), source });
        let cfg_path = dir.join("config.json");
        let hf: HfConfig = serde_json::from_slice(&read(&cfg_path)?)
            .map_err(|e| EngineError::InvalidModel { path: cfg_path.clone(), reason: e.to_string() })?;
        if !matches!(hf.model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(EngineError::UnsupportedArchitecture { path: cfg_path, arch: hf.model_type, supported: SUPPORTED_ARCHITECTURES });
        }
        let n_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        let config = LlamaConfig {
            architecture: hf.model_type.clone(),
            hidden_size: hf.hidden_size,
            n_layers: hf.num_hidden_layers,
            n_heads: hf.num_attention_heads,
            n_kv_heads,
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads),
            intermediate_size: hf.intermediate_size,
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_interleaved: false,
            context_length: hf.max_position_embeddings,
        };
        config.validate(&cfg_path)?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|source| EngineError::Io { path: dir.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(EngineError::InvalidModel { path: dir.to_path_buf(), reason: "no *.safetensors file".into() });
        }
        let mut tensors = HashMap::new();
        for f in &files {
            let part = candle_core::safetensors::load(f, device)
                .map_err(|e| EngineError::InvalidModel { path: f.clone(), reason: e.to_string() })?;
            tensors.extend(part);
        }
        Self::load(config, &mut SafetensorsWeights { tensors, dir: dir.to_path_buf() }, device, policy)
    }

    fn load(config: LlamaConfig, src: &mut dyn WeightSource, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        use LayerWeight::*;
        let embed = src.load(&WeightName::Embed)?;
        let lm_head_weight = if src.has(&WeightName::LmHead) { src.load(&WeightName::LmHead)? } else { embed.clone() };
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let mut w = |lw| src.load(&WeightName::Layer(i, lw));
            let (q, k, v) = (w(Q)?, w(K)?, w(V)?);
            let attn_norm = w(AttnNorm)?.dense;
            let ffn_norm = w(FfnNorm)?.dense;
            let out = w(Out)?;
            let (gate, up, down) = (w(Gate)?, w(Up)?, w(Down)?);
            let bias = if src.has(&WeightName::Layer(i, QBias)) {
                let mut b = |lw| src.get(&WeightName::Layer(i, lw));
                Some(Tensor::cat(&[b(QBias)?, b(KBias)?, b(VBias)?], 0)?)
            } else {
                None
            };
            layers.push(Layer {
                attn_norm,
                qkv: Projection::new(vec![q, k, v], bias, policy)?,
                out: Projection::new(vec![out], None, policy)?,
                ffn_norm,
                gate_up: Projection::new(vec![gate, up], None, policy)?,
                down: Projection::new(vec![down], None, policy)?,
            });
        }
        let rope_factors = if src.has(&WeightName::Rope) { Some(src.get(&WeightName::Rope)?) } else { None };
        let (cos, sin) = rope_tables(&config, rope_factors.as_ref(), device)?;
        Ok(Self {
            norm: src.get(&WeightName::Norm)?,
            lm_head: Projection::new(vec![lm_head_weight], None, policy)?,
            embed: embed.dense,
            layers,
            cos,
            sin,
            cpu_attention: if device.is_cpu() && policy.fused_attention { CpuAttention::new(config.n_heads, config.n_kv_heads, config.head_dim) } else { None },
            device: device.clone(),
            config,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A new, empty cache for one sequence with room for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        Ok(KvCache::new(self.config.kv_layout(), &self.device, capacity.min(self.config.context_length))?)
    }

    /// Runs the new tokens of every chunk through the model, appends their keys and values to
    /// each chunk's cache, and returns per chunk the logits `[rows, vocab]` of the rows it
    /// asked for (`None` when it asked for none). Each matmul takes the path its row count
    /// calls for.
    pub fn forward(&self, chunks: &mut [SequenceChunk<'_>]) -> Result<Vec<Option<Tensor>>> {
        self.forward_on(chunks, MatmulPath::ByRows)
    }

    /// `forward` with every matmul on `path`. `MatmulPath::Dense` makes each row's result
    /// independent of how many rows share the call (judging needs that: a verdict must not
    /// depend on what else was batched with it).
    pub fn forward_on(&self, chunks: &mut [SequenceChunk<'_>], path: MatmulPath) -> Result<Vec<Option<Tensor>>> {
        let project = |p: &Projection, x: &Tensor| -> candle_core::Result<Tensor> {
            match path {
                MatmulPath::Dense => p.forward_on(x, true),
                MatmulPath::ByRows => p.forward(x),
            }
        };
        let cfg = &self.config;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(chunks.len());
        for chunk in chunks.iter_mut() {
            if chunk.tokens.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            let (own, first) = (chunk.cache.len(), chunk.cache.total_len());
            let end = first + chunk.tokens.len();
            if end > cfg.context_length {
                return Err(EngineError::ContextOverflow { tokens: end, reserved: 0, limit: cfg.context_length });
            }
            if let Some(&bad) = chunk.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(EngineError::Tokenizer { model: cfg.architecture.clone(), reason: format!("token id {bad} is outside the vocabulary of {}", cfg.vocab_size) });
            }
            chunk.cache.reserve(own + chunk.tokens.len())?;
            spans.push((ids.len(), chunk.tokens.len(), own));
            ids.extend_from_slice(chunk.tokens);
            positions.extend((first..end).map(|p| p as u32));
        }
        let total = ids.len();
        let ids = Tensor::new(ids.as_slice(), &self.device)?;
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        let cos = self.cos.index_select(&positions, 0)?;
        let sin = self.sin.index_select(&positions, 0)?;
        let unfused = match self.cpu_attention {
            Some(_) => None,
            None => Some(UnfusedPlan::new(chunks, &spans, &self.device)?),
        };
        let mut x = self.embed.index_select(&ids, 0)?;
        let (nh, nkv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_norm_eps as f32)?;
            let qkv = project(&layer.qkv, &h)?;
            let heads = |offset: usize, n: usize| -> Result<Tensor> {
                Ok(qkv.narrow(1, offset * hd, n * hd)?.reshape((total, n, hd))?.transpose(0, 1)?.contiguous()?)
            };
            let q = (self.rope(&heads(0, nh)?, &cos, &sin)? * scale)?;
            let k = self.rope(&heads(nh, nkv)?, &cos, &sin)?;
            let v = heads(nh + nkv, nkv)?;
            let attn = match &self.cpu_attention {
                Some(fused) => {
                    for (chunk, &(offset, t, _)) in chunks.iter().zip(&spans) {
                        chunk.cache.append(li, &k.narrow(1, offset, t)?, &v.narrow(1, offset, t)?)?;
                    }
                    self.attend_fused(fused, li, chunks, &spans, &q, total)?
                }
                None => unfused.as_ref().expect("planned without the fused kernel").attend(li, chunks, &spans, &q, &k, &v, &self.config)?,
            };
            x = (x + project(&layer.out, &attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_norm_eps as f32)?;
            let gu = project(&layer.gate_up, &h)?;
            let i = cfg.intermediate_size;
            let act = (candle_nn::ops::silu(&gu.narrow(1, 0, i)?)? * gu.narrow(1, i, i)?)?;
            x = (x + project(&layer.down, &act)?)?;
        }
        for (chunk, &(_, t, _)) in chunks.iter_mut().zip(&spans) {
            chunk.cache.advance(t);
        }

        // The LM head (the largest matmul for small models) runs only on requested rows. Its
        // path is chosen per chunk, by the rows that chunk asked for, so a sequence's logits do
        // not depend on what else shares the batch.
        let mut wanted = Vec::with_capacity(chunks.len());
        for (chunk, &(offset, t, _)) in chunks.iter().zip(&spans) {
            let r = chunk.logits.rows(t);
            if let Some(&bad) = r.iter().find(|&&r| r >= t) {
                return Err(EngineError::InvalidModel { path: "forward".into(), reason: format!("logits requested for row {bad} of a {t}-token chunk") });
            }
            let dense = path == MatmulPath::Dense || self.lm_head.uses_dense(r.len());
            wanted.push((dense, r.into_iter().map(|r| (offset + r) as u32).collect::<Vec<_>>()));
        }
        let mut out: Vec<Option<Tensor>> = vec![None; chunks.len()];
        for dense in [true, false] {
            let members: Vec<usize> = (0..wanted.len()).filter(|&i| !wanted[i].1.is_empty() && wanted[i].0 == dense).collect();
            let rows: Vec<u32> = members.iter().flat_map(|&i| wanted[i].1.iter().copied()).collect();
            if rows.is_empty() {
                continue;
            }
            let selected = x.index_select(&Tensor::new(rows.as_slice(), &self.device)?, 0)?;
            let h = candle_nn::ops::rms_norm(&selected, &self.norm, cfg.rms_norm_eps as f32)?;
            let logits = self.lm_head.forward_on(&h, dense)?;
            let mut at = 0;
            for i in members {
                out[i] = Some(logits.narrow(0, at, wanted[i].1.len())?);
                at += wanted[i].1.len();
            }
        }
        Ok(out)
    }

    /// Attention through the fused CPU kernel, reading keys and values straight from the caches
    /// (the new ones already appended). Every distinct ancestor is one segment, shared by all
    /// chunks that continue it.
    fn attend_fused(&self, fused: &CpuAttention, li: usize, chunks: &[SequenceChunk<'_>], spans: &[(usize, usize, usize)], q: &Tensor, total: usize) -> Result<Tensor> {
        let mut caches: Vec<(&KvCache, usize)> = Vec::new();
        let mut plans = Vec::with_capacity(chunks.len());
        for (chunk, &(offset, t, before)) in chunks.iter().zip(spans) {
            let mut ancestors = Vec::new();
            for a in chunk.cache.ancestors() {
                let at = caches.iter().position(|(c, _)| std::ptr::eq(*c, a)).unwrap_or_else(|| {
                    caches.push((a, a.len()));
                    caches.len() - 1
                });
                ancestors.push(at);
            }
            caches.push((&*chunk.cache, before + t));
            plans.push(QueryChunk { offset, rows: t, ancestors, own: caches.len() - 1, before });
        }
        let guards: Vec<_> = caches
            .iter()
            .map(|(c, _)| {
                let (k, v) = c.layer_buffers(li);
                (k.storage_and_layout(), v.storage_and_layout())
            })
            .collect();
        let segments = guards
            .iter()
            .zip(&caches)
            .map(|((k, v), (c, len))| Ok(KvSegment { k: cpu_f32(&k.0, k.1)?, v: cpu_f32(&v.0, v.1)?, head_stride: c.capacity(), len: *len }))
            .collect::<Result<Vec<_>>>()?;
        let q = q.contiguous()?;
        let q_guard = q.storage_and_layout();
        let out = fused.attend(cpu_f32(&q_guard.0, q_guard.1)?, total, &segments, &plans);
        let cfg = &self.config;
        Ok(Tensor::from_vec(out, (total, cfg.n_heads * cfg.head_dim), &self.device)?)
    }

    /// Rotates `x` (`[heads, T, head_dim]`) by each token's position.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.unsqueeze(0)?;
        let y = if self.config.rope_interleaved {
            candle_nn::rotary_emb::rope_i(&x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, cos, sin)?
        };
        Ok(y.squeeze(0)?)
    }

    /// Logits of the last token after feeding `tokens` to a fresh cache (a convenience for
    /// tests and single prompts).
    pub fn logits_of(&self, tokens: &[u32]) -> Result<Tensor> {
        let mut cache = self.new_cache(tokens.len())?;
        let mut chunk = [SequenceChunk { cache: &mut cache, tokens, logits: LogitsAt::Last }];
        let out = self.forward(&mut chunk)?.pop().flatten().expect("asked for the last row");
        Ok(out.squeeze(0)?)
    }
}

/// `[t, start + t]` additive mask for `t` new tokens at positions `start..start + t`: token i
/// sees every cached position and new tokens up to itself. `None` for a single token.
fn causal_mask(t: usize, start: usize, device: &Device) -> Result<Option<Tensor>> {
    if t == 1 {
        return Ok(None);
    }
    let kv = start + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..kv).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Some(Tensor::from_vec(mask, (t, kv), device)?))
}

/// Cosine and sine tables `[context_length, head_dim / 2]` for rotary embeddings, with Llama 3's
/// per-frequency factors when the file has them.
fn rope_tables(cfg: &LlamaConfig, factors: Option<&Tensor>, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let factors: Vec<f32> = match factors {
        Some(f) => f.to_dtype(DType::F32)?.to_vec1()?,
        None => vec![1.0; half],
    };
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32) * factors.get(i).copied().unwrap_or(1.0)))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let pos = Tensor::arange(0u32, cfg.context_length as u32, device)?.to_dtype(DType::F32)?.reshape((cfg.context_length, 1))?;
    let angles = pos.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// What attention with candle ops needs beyond the chunks: causal masks and which chunks
/// continue the same parent.
struct UnfusedPlan {
    masks: Vec<Option<Tensor>>,
    /// Chunks that continue the same parent read its keys together: one matmul per segment.
    prefix_groups: Vec<(usize, Vec<usize>)>,
}

impl UnfusedPlan {
    fn new(chunks: &[SequenceChunk<'_>], spans: &[(usize, usize, usize)], device: &Device) -> Result<Self> {
        let masks = spans.iter().map(|&(_, t, own)| causal_mask(t, own, device)).collect::<Result<Vec<_>>>()?;
        // Chunks that continue the same parent read its keys together: one matmul per segment.
        let mut prefix_groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if let Some(parent) = chunk.cache.parent().filter(|p| p.total_len() > 0) {
                let key = std::sync::Arc::as_ptr(parent) as usize;
                match prefix_groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(i),
                    None => prefix_groups.push((key, vec![i])),
                }
            }
        }
        Ok(Self { masks, prefix_groups })
    }

    /// Attention with candle ops (GPUs, CPUs without AVX-512): each chunk's own keys under the
    /// causal mask, and each shared prefix as one product for all the chunks that continue it,
    /// merged by log-sum-exp. Appends the new keys and values to the caches.
    #[allow(clippy::too_many_arguments)]
    fn attend(&self, li: usize, chunks: &[SequenceChunk<'_>], spans: &[(usize, usize, usize)], q: &Tensor, k: &Tensor, v: &Tensor, cfg: &LlamaConfig) -> Result<Tensor> {
        let (nh, nkv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        let group = nh / nkv;
            let mut queries = Vec::with_capacity(chunks.len());
            let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(chunks.len());
            let mut own_parts: Vec<Option<Partial>> = Vec::with_capacity(chunks.len());
            for (chunk, (&(offset, t, _), mask)) in chunks.iter().zip(spans.iter().zip(&self.masks)) {
                let (ks, vs) = chunk.cache.append(li, &k.narrow(1, offset, t)?, &v.narrow(1, offset, t)?)?;
                let q = q.narrow(1, offset, t)?.contiguous()?.reshape((nkv, group * t, hd))?;
                if chunk.cache.parent_len() == 0 {
                    outs.push(Some(attention::full(&q, &ks, &vs, mask.as_ref(), group)?));
                    own_parts.push(None);
                } else {
                    outs.push(None);
                    own_parts.push(Some(Partial::new(&q, &ks, &vs, mask.as_ref(), group)?));
                }
                queries.push(q);
            }
            for (_, members) in &self.prefix_groups {
                let stacked: Vec<Tensor> = members.iter().map(|&i| queries[i].clone()).collect();
                let stacked = if stacked.len() == 1 { stacked[0].clone() } else { Tensor::cat(&stacked, 1)? };
                let segments = chunks[members[0]].cache.ancestor_segments(li)?;
                let shared: Vec<Partial> = segments.iter().map(|(ks, vs)| Partial::new(&stacked, ks, vs, None, group)).collect::<candle_core::Result<_>>()?;
                let mut row = 0;
                for &i in members {
                    let rows = queries[i].dim(1)?;
                    let mut parts: Vec<Partial> = shared.iter().map(|p| p.rows(row, rows)).collect::<candle_core::Result<_>>()?;
                    parts.push(own_parts[i].take().expect("a chunk with a parent has an own part"));
                    outs[i] = Some(Partial::merge(&parts)?);
                    row += rows;
                }
            }
            let outs: Vec<Tensor> = outs
                .into_iter()
                .zip(spans)
                .map(|(o, &(_, t, _))| o.expect("every chunk attended").reshape((nh, t, hd))?.transpose(0, 1)?.reshape((t, nh * hd)))
                .collect::<candle_core::Result<_>>()?;
            Ok(if outs.len() == 1 { outs[0].clone() } else { Tensor::cat(&outs, 0)? })
    }
}

/// The f32 data of a CPU tensor from its first element (its layout must be contiguous).
fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) if layout.is_contiguous() => Ok(&data[layout.start_offset()..]),
        _ => Err(EngineError::InvalidModel { path: "attention".into(), reason: "the fused CPU kernel needs contiguous f32 tensors on the CPU".into() }),
    }
}

/// Log-softmax over the last dimension.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(logits, D::Minus1)?)
}
