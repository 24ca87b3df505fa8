//! Attention pieces for grouped-query heads. Queries are laid out `[kv_heads, rows, head_dim]`
//! with the query heads that share a key head stacked as extra rows, so keys are never copied
//! per query head.
//!
//! Attention over several key segments (a shared prefix, then a sequence's own keys) is
//! computed per segment as a `Partial` (unnormalised output, row maximum and row sum of
//! exponentials) and merged by log-sum-exp: the result equals one softmax over all keys. This
//! is what lets many sequences read one cached prefix with a single matrix product for all
//! their queries (Hydragen / cascade attention).

use candle_core::{Result, Tensor, D};

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
