//! Per-sequence key/value caches: preallocated per layer and grown by doubling, so appending a
//! token writes in place instead of concatenating the whole history each step. A cache may
//! continue a frozen parent (a shared prefix): its positions start after the parent's, and
//! attention reads the parent's keys without copying them, so many sequences can branch from
//! one prefix.

use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;

/// Shape of the cache a model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

/// Keys and values of one sequence for every layer, each `[n_kv_heads, capacity, head_dim]`;
/// positions `0..len` are filled.
#[derive(Debug, Clone)]
pub struct KvCache {
    layout: KvLayout,
    device: Device,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
    /// Frozen prefix this cache continues.
    parent: Option<Arc<KvCache>>,
}

impl KvCache {
    /// Smallest capacity step, so short prompts do not reallocate on every token.
    const MIN_CAPACITY: usize = 64;

    /// An empty cache with room for `capacity` positions before it has to grow.
    pub fn new(layout: KvLayout, device: &Device, capacity: usize) -> Result<Self> {
        let mut cache = Self { layout, device: device.clone(), k: Vec::new(), v: Vec::new(), len: 0, capacity: 0, parent: None };
        cache.reserve(capacity)?;
        Ok(cache)
    }

    /// An empty cache continuing `parent`, with room for `capacity` positions of its own.
    pub fn branch(parent: &Arc<KvCache>, capacity: usize) -> Result<Self> {
        let mut cache = Self::new(parent.layout, &parent.device, capacity)?;
        cache.parent = Some(parent.clone());
        Ok(cache)
    }

    /// Positions filled in this cache (not counting the parent's).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Positions of the parent chain, where this cache's positions start.
    pub fn parent_len(&self) -> usize {
        self.parent.as_ref().map_or(0, |p| p.total_len())
    }

    /// Positions of the whole sequence: the parent chain's and this cache's.
    pub fn total_len(&self) -> usize {
        self.parent_len() + self.len
    }

    pub fn parent(&self) -> Option<&Arc<KvCache>> {
        self.parent.as_ref()
    }

    /// The non-empty caches this one continues, root first.
    pub fn ancestors(&self) -> Vec<&KvCache> {
        let mut chain = Vec::new();
        let mut at = self.parent.as_deref();
        while let Some(c) = at {
            if c.len > 0 {
                chain.push(c);
            }
            at = c.parent.as_deref();
        }
        chain.reverse();
        chain
    }

    /// Filled keys and values of `layer` in every ancestor, root first.
    pub fn ancestor_segments(&self, layer: usize) -> Result<Vec<(Tensor, Tensor)>> {
        self.ancestors().into_iter().map(|c| Ok((c.k[layer].narrow(1, 0, c.len)?, c.v[layer].narrow(1, 0, c.len)?))).collect()
    }

    /// The whole key and value buffers of `layer`, `[n_kv_heads, capacity, head_dim]`.
    pub fn layer_buffers(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.k[layer], &self.v[layer])
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by this cache's own buffers (not the parent's).
    pub fn bytes(&self) -> usize {
        let l = &self.layout;
        2 * l.n_layers * l.n_kv_heads * self.capacity * l.head_dim * l.dtype.size_in_bytes()
    }

    /// Makes room for `total` positions, doubling the capacity as needed and copying the
    /// filled part once.
    pub fn reserve(&mut self, total: usize) -> Result<()> {
        if total <= self.capacity {
            return Ok(());
        }
        let capacity = total.max(2 * self.capacity).max(Self::MIN_CAPACITY);
        let KvLayout { n_layers, n_kv_heads, head_dim, dtype } = self.layout;
        let grow = |old: Option<&Tensor>| -> Result<Tensor> {
            let fresh = Tensor::zeros((n_kv_heads, capacity, head_dim), dtype, &self.device)?;
            if let (Some(old), true) = (old, self.len > 0) {
                fresh.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            Ok(fresh)
        };
        self.k = (0..n_layers).map(|l| grow(self.k.get(l))).collect::<Result<_>>()?;
        self.v = (0..n_layers).map(|l| grow(self.v.get(l))).collect::<Result<_>>()?;
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`, `v` (`[n_kv_heads, t, head_dim]`) of `layer` at positions `len..len + t`
    /// and returns the layer's keys and values for positions `0..len + t`. The caller must
    /// have reserved the room and calls `advance(t)` once every layer is written.
    pub fn append(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(1)?;
        self.k[layer].slice_set(&k.contiguous()?, 1, self.len)?;
        self.v[layer].slice_set(&v.contiguous()?, 1, self.len)?;
        Ok((self.k[layer].narrow(1, 0, self.len + t)?, self.v[layer].narrow(1, 0, self.len + t)?))
    }

    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Forgets positions from `len` on (keeps the buffers).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_in_place_and_keeps_history_across_growth() -> Result<()> {
        let layout = KvLayout { n_layers: 2, n_kv_heads: 3, head_dim: 4, dtype: DType::F32 };
        let dev = Device::Cpu;
        let mut cache = KvCache::new(layout, &dev, 1)?;
        assert_eq!(cache.capacity(), 64);
        let mut all = Vec::new();
        for step in 0..70usize {
            let k = Tensor::full(step as f32, (3, 1, 4), &dev)?;
            cache.reserve(cache.len() + 1)?;
            for layer in 0..2 {
                let (ks, vs) = cache.append(layer, &k, &(&k * 2.0)?)?;
                assert_eq!(ks.dims(), &[3, step + 1, 4]);
                assert_eq!(vs.dims(), &[3, step + 1, 4]);
            }
            cache.advance(1);
            all.push(step as f32);
        }
        assert_eq!(cache.capacity(), 128);
        let (ks, _) = cache.append(1, &Tensor::zeros((3, 0, 4), DType::F32, &dev)?, &Tensor::zeros((3, 0, 4), DType::F32, &dev)?)?;
        let got: Vec<f32> = ks.get(2)?.get_on_dim(1, 0)?.to_vec1()?;
        assert_eq!(got, all);
        Ok(())
    }
}
