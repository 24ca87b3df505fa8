//! The decoder every architecture runs: one forward pass takes a flat batch (`StepBatch`), the
//! new tokens of many sequences side by side in one `[tokens, hidden]` matrix, each token with
//! its own position and pool slot, so that the projections and MLPs run as single matmuls
//! over all sequences while attention reads each sequence's keys through its block table.
//! Logits are computed only for the rows the batch asks for.

use super::mlp::GatedMlp;
use super::weights::WeightSource;
use super::{LayerWeight, ModelConfig, Weight};
use crate::attention::{Attention, Heads};
use crate::batch::StepBatch;
use crate::error::{EngineError, Result};
use crate::kv_pool::{KvLayout, KvPool};
use crate::projection::{LoadedWeight, MatmulPolicy, Projection, WeightCopy};
use assay_kernels::cpu::QuantMatrix;
use candle_core::{DType, Device, Module, Tensor};
use std::sync::Arc;

struct Layer {
    attn_norm: Tensor,
    /// q, k and v stacked: one matmul.
    qkv: Projection,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    out: Projection,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    mlp: GatedMlp,
    post_ffn_norm: Option<Tensor>,
    window: Option<usize>,
    /// Index into `Decoder::ropes`.
    rope: usize,
}

/// Cosine and sine tables `[context_length, head_dim / 2]` for one RoPE base.
struct RopeTable {
    theta: f32,
    cos: Tensor,
    sin: Tensor,
}

/// A loaded decoder-only model; see the module notes.
pub struct Decoder {
    config: ModelConfig,
    device: Device,
    /// `[vocab, hidden]`, for the input lookup.
    embed: EmbeddingTable,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Projection,
    ropes: Vec<RopeTable>,
    attention: Attention,
}

impl Decoder {
    /// Loads every tensor of `config` from `src`; each projection keeps the copies `policy`
    /// asks for.
    pub fn load(config: ModelConfig, src: &mut dyn WeightSource, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        use LayerWeight::*;
        let c = &config;
        let load = |src: &mut dyn WeightSource, w: Weight| src.load(w, &Weight::shape(w, c));
        let norm_of = |src: &mut dyn WeightSource, w: Weight| -> Result<Tensor> {
            let t = src.get(w, &Weight::shape(w, c))?;
            Ok(if c.norm_weight_offset != 0.0 { (t + c.norm_weight_offset as f64)? } else { t })
        };
        let embed = load(src, Weight::Embed)?;
        let lm_head_weight = src.has(Weight::LmHead).then(|| load(src, Weight::LmHead)).transpose()?;
        let proj = |parts: Vec<LoadedWeight>, bias: Option<Tensor>| Projection::new(parts, bias, policy, device);
        let mut layers = Vec::with_capacity(c.n_layers);
        let mut ropes: Vec<RopeTable> = Vec::new();
        let factors = match (src.has(Weight::RopeFreqs), c.rope_scaling) {
            (true, _) => Some(src.get(Weight::RopeFreqs, &Weight::shape(Weight::RopeFreqs, c))?.to_vec1::<f32>()?),
            (false, Some(s)) => Some(s.factors(c.rope_theta, c.head_dim)),
            (false, None) => None,
        };
        for i in 0..c.n_layers {
            let w = |lw| Weight::Layer(i, lw);
            let (q, k, v) = (load(src, w(Q))?, load(src, w(K))?, load(src, w(V))?);
            let bias = if c.qkv_bias {
                let mut b = |lw| src.get(w(lw), &Weight::shape(w(lw), c));
                Some(Tensor::cat(&[b(QBias)?, b(KBias)?, b(VBias)?], 0)?)
            } else {
                None
            };
            let optional_norm = |src: &mut dyn WeightSource, lw, wanted: bool| wanted.then(|| norm_of(src, w(lw))).transpose();
            let theta = c.layer_rope_theta(i);
            let rope = match ropes.iter().position(|r| r.theta == theta) {
                Some(r) => r,
                None => {
                    // Llama 3's factors apply to the model's one (global) base.
                    let (cos, sin) = rope_tables(c, theta, factors.as_deref().filter(|_| theta == c.rope_theta), device)?;
                    ropes.push(RopeTable { theta, cos, sin });
                    ropes.len() - 1
                }
            };
            layers.push(Layer {
                attn_norm: norm_of(src, w(AttnNorm))?,
                qkv: proj(vec![q, k, v], bias)?,
                q_norm: optional_norm(src, QNorm, c.qk_norm)?,
                k_norm: optional_norm(src, KNorm, c.qk_norm)?,
                out: proj(vec![load(src, w(Out))?], None)?,
                post_attn_norm: optional_norm(src, PostAttnNorm, c.sandwich_norms)?,
                ffn_norm: norm_of(src, w(FfnNorm))?,
                mlp: GatedMlp::new(proj(vec![load(src, w(Gate))?, load(src, w(Up))?], None)?, proj(vec![load(src, w(Down))?], None)?, c.activation),
                post_ffn_norm: optional_norm(src, PostFfnNorm, c.sandwich_norms)?,
                window: c.layer_window(i),
                rope,
            });
        }
        let heads = Heads { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim };
        // With int8 kernels the table stays in its blocks, shared with a tied LM head.
        let (embed, lm_head) = match (policy.weights, device.is_cpu()) {
            (WeightCopy::Int8Blocks(kernel), true) if embed.fits_int8_kernels() => {
                let table = Arc::new(embed.quant_matrix()?);
                let head = match lm_head_weight {
                    Some(w) => proj(vec![w], None)?,
                    None => Projection::from_quant_matrices(vec![table.clone()], kernel)?,
                };
                (EmbeddingTable::Blocks(table), head)
            }
            _ => (EmbeddingTable::Dense(embed.dense(device)?), proj(vec![lm_head_weight.unwrap_or(embed)], None)?),
        };
        Ok(Self { norm: norm_of(src, Weight::Norm)?, lm_head, embed, layers, ropes, attention: Attention::for_model(heads, device.is_cpu(), policy.fused_attention), device: device.clone(), config })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the model caches per token, in the dtype its pool uses.
    pub fn kv_layout(&self) -> KvLayout {
        self.config.kv_layout(DType::F32)
    }

    /// Whether the pool must use the fused CPU kernel's block layout.
    pub fn wants_cpu_blocks(&self) -> bool {
        self.attention.wants_cpu_blocks()
    }

    fn heads(&self) -> Heads {
        Heads { n_heads: self.config.n_heads, n_kv_heads: self.config.n_kv_heads, head_dim: self.config.head_dim }
    }

    /// Runs the batch's new tokens through the model, writes their keys and values to their
    /// pool slots, and returns the logits `[logit rows, vocab]` of the rows the batch asks for.
    /// Each row's result is independent of how many rows share the step.
    pub fn forward(&self, batch: &StepBatch, pool: &mut KvPool) -> Result<Tensor> {
        // On a thread of rayon's pool, each matmul's parallel section starts on this thread and
        // the other workers join in (or this thread finishes their share if they are late);
        // called from outside the pool, each one was handed over and waited for: two thread
        // wake-ups per matmul, ~110 per decode step of a 1.5B model.
        rayon::scope(|_| self.forward_on_pool(batch, pool))
    }

    fn forward_on_pool(&self, batch: &StepBatch, pool: &mut KvPool) -> Result<Tensor> {
        let c = &self.config;
        let total = batch.tokens.len();
        if total == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(EngineError::Tokenizer { model: c.architecture.clone(), reason: format!("token id {bad} is outside the vocabulary of {}", c.vocab_size) });
        }
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let eps = c.rms_norm_eps as f32;
        let ids = Tensor::new(batch.tokens.as_slice(), &self.device)?;
        let positions = Tensor::new(batch.positions.as_slice(), &self.device)?;
        // Per token one row of each table, shaped as a batch of single positions: RoPE then
        // runs on the `[tokens, heads, head_dim]` layout the projections give, untransposed.
        let ropes: Vec<(Tensor, Tensor)> =
            self.ropes.iter().map(|r| Ok((r.cos.index_select(&positions, 0)?.reshape((total, 1, hd / 2))?, r.sin.index_select(&positions, 0)?.reshape((total, 1, hd / 2))?))).collect::<Result<_>>()?;
        let spans = batch.query_spans();
        let mut x = self.embed.lookup(&ids, &batch.tokens)?;
        if let Some(s) = c.embed_scale {
            x = (x * s as f64)?;
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let qkv = layer.qkv.forward(&h)?;
            let heads = |first: usize, n: usize| qkv.narrow(1, first * hd, n * hd)?.contiguous()?.reshape((total, n, hd));
            let (mut q, mut k, v) = (heads(0, nh)?, heads(nh, nkv)?, heads(nh + nkv, nkv)?);
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                q = candle_nn::ops::rms_norm(&q, qn, eps)?;
                k = candle_nn::ops::rms_norm(&k, kn, eps)?;
            }
            let (cos, sin) = &ropes[layer.rope];
            let q = (self.rope(&q, cos, sin)? * c.attention_scale as f64)?;
            let k = self.rope(&k, cos, sin)?;
            pool.write(li, &batch.slots, &k, &v)?;
            let attn = self.attention.attend(&q, &spans, &batch.segments, pool, li, layer.window, self.heads())?;
            let mut o = layer.out.forward(&attn)?;
            if let Some(n) = &layer.post_attn_norm {
                o = candle_nn::ops::rms_norm(&o, n, eps)?;
            }
            x = (x + o)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let mut m = layer.mlp.forward(&h)?;
            if let Some(n) = &layer.post_ffn_norm {
                m = candle_nn::ops::rms_norm(&m, n, eps)?;
            }
            x = (x + m)?;
        }
        // The LM head (the largest matmul for small models) runs only on the requested rows.
        let rows = batch.logit_rows.len();
        if rows == 0 {
            return Ok(Tensor::zeros((0, c.vocab_size), DType::F32, &self.device)?);
        }
        let selected = x.index_select(&Tensor::new(batch.logit_rows.as_slice(), &self.device)?, 0)?;
        let h = candle_nn::ops::rms_norm(&selected, &self.norm, eps)?;
        let logits = self.lm_head.forward(&h)?;
        Ok(match c.final_logit_softcap {
            Some(cap) => ((logits / cap as f64)?.tanh()? * cap as f64)?,
            None => logits,
        })
    }

    /// Rotates `x` (`[tokens, heads, head_dim]`) by each token's position.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (t, n, d) = x.dims3()?;
        let x = x.reshape((t, n, 1, d))?;
        let y = if self.config.rope_interleaved { candle_nn::rotary_emb::rope_i(&x, cos, sin)? } else { candle_nn::rotary_emb::rope(&x, cos, sin)? };
        Ok(y.reshape((t, n, d))?)
    }
}

/// The input embeddings: f32 rows, or the file's blocks dequantized row by row as tokens
/// arrive (no f32 copy of a 150k-token table).
enum EmbeddingTable {
    Dense(Tensor),
    Blocks(Arc<QuantMatrix>),
}

impl EmbeddingTable {
    /// The rows of `tokens` (`ids` holds them on the model's device).
    fn lookup(&self, ids: &Tensor, tokens: &[u32]) -> Result<Tensor> {
        Ok(match self {
            Self::Dense(t) => t.index_select(ids, 0)?,
            Self::Blocks(m) => {
                let rows: Vec<f32> = tokens.iter().flat_map(|&t| m.dequantize_row(t as usize)).collect();
                Tensor::from_vec(rows, (tokens.len(), m.k()), ids.device())?
            }
        })
    }
}

/// Cosine and sine tables `[context_length, head_dim / 2]` for base `theta`, each frequency
/// divided by its factor when given (Llama 3's scaling).
fn rope_tables(c: &ModelConfig, theta: f32, factors: Option<&[f32]>, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / (theta.powf(2.0 * i as f32 / c.head_dim as f32) * factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0))).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let pos = Tensor::arange(0u32, c.context_length as u32, device)?.to_dtype(DType::F32)?.reshape((c.context_length, 1))?;
    let angles = pos.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}
