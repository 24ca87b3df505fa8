//! Attention with candle ops over the paged pool: the path of GPUs (until their kernels land),
//! of head sizes the fused CPU kernel lacks, and the reference it is tested against.
//!
//! Queries are laid out `[kv_heads, rows, head_dim]` with the query heads that share a key
//! head stacked as extra rows, so keys are never copied per query head. Attention over
//! several key segments (a prefix several sequences of the step share, then a sequence's own
//! keys) is computed per segment as a `Partial` (unnormalised output, row maximum and row sum
//! of exponentials) and merged by log-sum-exp: the result equals one softmax over all keys.
//! A shared segment is one matrix product for the queries of every sequence that reads it
//! (Hydragen / cascade attention); the scheduler says which (`SharedSegment`).

use super::{QuerySpan, SharedSegment};
use crate::error::Result as EngineResult;
use crate::kv_pool::{KvPool, BLOCK_SIZE};
use candle_core::{Device, Result, Tensor, D};

/// Head counts of a layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Attention of `q` (`[total, n_heads, head_dim]`, pre-scaled) for every span over one layer
/// of the pool; `[total, n_heads * head_dim]`. Shared segments are used unless a window
/// limits what rows see (then each span attends to its own keys alone).
pub fn attend(q: &Tensor, spans: &[QuerySpan<'_>], segments: &[SharedSegment], pool: &KvPool, layer: usize, window: Option<usize>, heads: Heads) -> EngineResult<Tensor> {
    let Heads { n_heads: nh, n_kv_heads: nkv, head_dim: hd } = heads;
    let group = nh / nkv;
    let device = q.device().clone();
    // Per span: its queries as [kv, group * rows, hd], and the block its own keys start at.
    let queries: Vec<Tensor> =
        spans.iter().map(|s| q.narrow(0, s.offset, s.rows)?.reshape((s.rows, nkv, group, hd))?.permute((1, 2, 0, 3))?.reshape((nkv, group * s.rows, hd))?.contiguous()).collect::<Result<_>>()?;
    let segments: &[SharedSegment] = if window.is_some() { &[] } else { segments };
    let mut own_from = vec![0usize; spans.len()];
    let mut parts: Vec<Vec<Partial>> = (0..spans.len()).map(|_| Vec::new()).collect();
    for seg in segments {
        let first = &spans[seg.members[0]];
        let (k, v) = pool.gather(layer, first.table, seg.first_block * BLOCK_SIZE..(seg.first_block + seg.blocks) * BLOCK_SIZE, &device)?;
        let stacked: Vec<Tensor> = seg.members.iter().map(|&m| queries[m].clone()).collect();
        let stacked = if stacked.len() == 1 { stacked[0].clone() } else { Tensor::cat(&stacked, 1)? };
        let shared = Partial::new(&stacked, &k, &v, None, group)?;
        let mut row = 0;
        for &m in &seg.members {
            let rows = group * spans[m].rows;
            parts[m].push(shared.rows(row, rows)?);
            row += rows;
            own_from[m] = own_from[m].max(seg.first_block + seg.blocks);
        }
    }
    let mut outs = Vec::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        let from = own_from[i] * BLOCK_SIZE;
        let keys = s.start + s.rows;
        let (k, v) = pool.gather(layer, s.table, from..keys, &device)?;
        let mask = span_mask(s.start, s.rows, from, keys, window, &device)?;
        let out = if parts[i].is_empty() {
            full(&queries[i], &k, &v, mask.as_ref(), group)?
        } else {
            parts[i].push(Partial::new(&queries[i], &k, &v, mask.as_ref(), group)?);
            Partial::merge(&parts[i])?
        };
        outs.push(out.reshape((nkv, group, s.rows, hd))?.permute((2, 0, 1, 3))?.reshape((s.rows, nh * hd))?);
    }
    Ok(if outs.len() == 1 { outs.pop().expect("one span") } else { Tensor::cat(&outs, 0)? })
}

/// Additive mask `[rows, keys - from]` of a span whose rows are at positions `start..start +
/// rows`, over key positions `from..keys`: causal, and within `window` of the row when set.
/// `None` when every row sees every key.
fn span_mask(start: usize, rows: usize, from: usize, keys: usize, window: Option<usize>, device: &Device) -> Result<Option<Tensor>> {
    let visible = |i: usize, j: usize| j <= start + i && window.is_none_or(|w| start + i - j < w);
    if (0..rows).all(|i| (from..keys).all(|j| visible(i, j))) {
        return Ok(None);
    }
    let mask: Vec<f32> = (0..rows).flat_map(|i| (from..keys).map(move |j| if visible(i, j) { 0.0 } else { f32::NEG_INFINITY })).collect();
    Ok(Some(Tensor::from_vec(mask, (rows, keys - from), device)?))
}

/// Softmax attention of pre-scaled queries `q` over keys `k` and values `v`
/// (`[kv_heads, keys, head_dim]`), with an optional additive mask `[t, keys]` for `q` laid out
/// as `group` stacks of `t` rows.
pub fn full(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, group: usize) -> Result<Tensor> {
    let scores = masked_scores(q, k, mask, group)?;
    candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
}

/// Attention over one key segment, kept unnormalised so that segments can be merged.
pub struct Partial {
    /// `sum_j exp(s_ij - max_i) v_j`, `[kv_heads, rows, head_dim]`.
    out: Tensor,
    /// `max_j s_ij`, `[kv_heads, rows, 1]`.
    max: Tensor,
    /// `sum_j exp(s_ij - max_i)`, `[kv_heads, rows, 1]`.
    sum: Tensor,
}

impl Partial {
    pub fn new(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, group: usize) -> Result<Self> {
        let scores = masked_scores(q, k, mask, group)?;
        let max = scores.max_keepdim(D::Minus1)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        Ok(Self { sum: e.sum_keepdim(D::Minus1)?, out: e.matmul(v)?, max })
    }

    /// Rows `start..start + len` of this partial.
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self { out: self.out.narrow(1, start, len)?, max: self.max.narrow(1, start, len)?, sum: self.sum.narrow(1, start, len)? })
    }

    /// The normalised attention output over the union of the segments of `parts`.
    pub fn merge(parts: &[Partial]) -> Result<Tensor> {
        let max = parts[1..].iter().try_fold(parts[0].max.clone(), |m, p| m.broadcast_maximum(&p.max))?;
        let mut num: Option<Tensor> = None;
        let mut den: Option<Tensor> = None;
        for p in parts {
            let w = p.max.broadcast_sub(&max)?.exp()?;
            let o = p.out.broadcast_mul(&w)?;
            let s = (&p.sum * &w)?;
            num = Some(match num {
                Some(n) => (n + o)?,
                None => o,
            });
            den = Some(match den {
                Some(d) => (d + s)?,
                None => s,
            });
        }
        num.expect("at least one part").broadcast_div(&den.expect("at least one part"))
    }
}

fn masked_scores(q: &Tensor, k: &Tensor, mask: Option<&Tensor>, group: usize) -> Result<Tensor> {
    let scores = q.matmul(&k.t()?)?;
    match mask {
        Some(m) => {
            let (kv, rows, keys) = scores.dims3()?;
            scores.reshape((kv, group, rows / group, keys))?.broadcast_add(m)?.reshape((kv, rows, keys))
        }
        None => Ok(scores),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn merged_segments_equal_one_softmax_over_all_keys() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 6, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (2, 10, 8), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (2, 10, 8), &dev)?;
        let want = full(&q, &k, &v, None, 1)?;
        let parts = [Partial::new(&q, &k.narrow(1, 0, 7)?, &v.narrow(1, 0, 7)?, None, 1)?, Partial::new(&q, &k.narrow(1, 7, 3)?, &v.narrow(1, 7, 3)?, None, 1)?];
        let got = Partial::merge(&parts)?;
        let err = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "{err}");
        Ok(())
    }
}
