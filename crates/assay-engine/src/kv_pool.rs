//! The paged KV pool: every key and value a model has computed lives in fixed-size blocks of
//! `BLOCK_SIZE` token slots, preallocated once per model up to a byte budget. A sequence owns
//! a block table (its positions `0..len` are slots `table[p / BLOCK_SIZE]`, offset
//! `p % BLOCK_SIZE`); blocks are reference-counted, so many sequences and the radix tree of
//! shared prefixes (`radix_tree.rs`) can hold the same block. A shared block is never written:
//! who needs to append to a partly filled shared block copies its filled slots into a block of
//! its own first (copy-on-write, `copy_slots`).
//!
//! Two storages, one interface: on the CPU with the fused attention kernel the blocks are laid
//! out for that kernel (keys transposed within a block, so a block of keys is `head_dim` rows
//! of 32 lanes); everywhere else (GPUs, head sizes the kernel lacks, the reference path) each layer is
//! a tensor of slots `[n_blocks * BLOCK_SIZE, n_kv_heads, head_dim]` written and gathered with
//! candle ops. Memory is reserved lazily by the OS (zeroed allocation), so a large budget costs
//! only what is used.

use crate::error::{EngineError, Result};
use candle_core::{DType, Device, Tensor};

/// Token slots per block: two 16-lane vectors of scores per query row in the fused kernel.
pub const BLOCK_SIZE: usize = 32;

/// Index of a block in the pool.
pub type BlockId = u32;

/// Shape of what a model caches per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

impl KvLayout {
    /// Bytes of keys and values of one token over all layers.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.head_dim * self.dtype.size_in_bytes()
    }

    pub fn bytes_per_block(&self) -> usize {
        self.bytes_per_token() * BLOCK_SIZE
    }

    /// Floats of one layer's keys (or values) in one block.
    fn block_len(&self) -> usize {
        self.n_kv_heads * self.head_dim * BLOCK_SIZE
    }
}

/// Counters of the pool, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub blocks: usize,
    pub free: usize,
    pub used: usize,
}

enum Storage {
    /// Per layer: keys `[block][kv_head][head_dim][BLOCK_SIZE]`, values
    /// `[block][kv_head][BLOCK_SIZE][head_dim]` (the fused CPU kernel's layout).
    CpuBlocks { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    /// Per layer: slots `[n_blocks * BLOCK_SIZE, n_kv_heads, head_dim]` on any device.
    Tensors { k: Vec<Tensor>, v: Vec<Tensor> },
}

/// Blocks of keys and values for one model; see the module notes.
pub struct KvPool {
    layout: KvLayout,
    refcount: Vec<u32>,
    /// Free blocks, lowest ids last (popped first) so that a fresh pool fills from block 0.
    free: Vec<BlockId>,
    storage: Storage,
}

/// Where the new tokens of a step go: the pool slot of each (`block * BLOCK_SIZE + offset`).
pub type Slot = u32;

impl KvPool {
    /// A pool of as many blocks as `budget_bytes` holds (at least one, or an error naming the
    /// budget). `cpu_blocks` selects the fused CPU kernel's layout (only on the CPU, f32).
    pub fn new(layout: KvLayout, budget_bytes: usize, device: &Device, cpu_blocks: bool) -> Result<Self> {
        let n_blocks = budget_bytes / layout.bytes_per_block().max(1);
        if n_blocks == 0 {
            return Err(EngineError::KvBudget { budget_bytes, block_bytes: layout.bytes_per_block() });
        }
        let storage = if cpu_blocks && device.is_cpu() && layout.dtype == DType::F32 {
            let len = n_blocks * layout.block_len();
            Storage::CpuBlocks { k: (0..layout.n_layers).map(|_| vec![0f32; len]).collect(), v: (0..layout.n_layers).map(|_| vec![0f32; len]).collect() }
        } else {
            let shape = (n_blocks * BLOCK_SIZE, layout.n_kv_heads, layout.head_dim);
            let alloc = || Tensor::zeros(shape, layout.dtype, device);
            Storage::Tensors { k: (0..layout.n_layers).map(|_| alloc()).collect::<candle_core::Result<_>>()?, v: (0..layout.n_layers).map(|_| alloc()).collect::<candle_core::Result<_>>()? }
        };
        Ok(Self { layout, refcount: vec![0; n_blocks], free: (0..n_blocks as BlockId).rev().collect(), storage })
    }

    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    pub fn n_blocks(&self) -> usize {
        self.refcount.len()
    }

    /// Tokens the whole pool holds.
    pub fn capacity_tokens(&self) -> usize {
        self.n_blocks() * BLOCK_SIZE
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats { blocks: self.n_blocks(), free: self.free.len(), used: self.n_blocks() - self.free.len() }
    }

    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// A free block with one reference, or `None` when the pool is full.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let b = self.free.pop()?;
        self.refcount[b as usize] = 1;
        Some(b)
    }

    /// One more holder of `block`.
    pub fn retain(&mut self, block: BlockId) {
        debug_assert!(self.refcount[block as usize] > 0, "retain of free block {block}");
        self.refcount[block as usize] += 1;
    }

    /// One holder fewer; the block is free again when none is left.
    pub fn release(&mut self, block: BlockId) {
        let rc = &mut self.refcount[block as usize];
        debug_assert!(*rc > 0, "release of free block {block}");
        *rc -= 1;
        if *rc == 0 {
            self.free.push(block);
        }
    }

    pub fn refcount(&self, block: BlockId) -> u32 {
        self.refcount[block as usize]
    }

    /// Copies the first `n` slots of `from` into `to`, every layer (copy-on-write of a partly
    /// shared block).
    pub fn copy_slots(&mut self, from: BlockId, to: BlockId, n: usize) -> Result<()> {
        let (nkv, hd) = (self.layout.n_kv_heads, self.layout.head_dim);
        let block_len = self.layout.block_len();
        match &mut self.storage {
            Storage::CpuBlocks { k, v } => {
                let (src, dst) = (from as usize * block_len, to as usize * block_len);
                for layer in k.iter_mut() {
                    // Keys: `n` lanes of every (head, dim) row.
                    for row in 0..nkv * hd {
                        layer.copy_within(src + row * BLOCK_SIZE..src + row * BLOCK_SIZE + n, dst + row * BLOCK_SIZE);
                    }
                }
                for layer in v.iter_mut() {
                    for h in 0..nkv {
                        let (s, d) = (src + h * BLOCK_SIZE * hd, dst + h * BLOCK_SIZE * hd);
                        layer.copy_within(s..s + n * hd, d);
                    }
                }
            }
            Storage::Tensors { k, v } => {
                for t in k.iter().chain(v.iter()) {
                    let part = t.narrow(0, from as usize * BLOCK_SIZE, n)?.copy()?;
                    t.slice_set(&part, 0, to as usize * BLOCK_SIZE)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the keys and values of new tokens (`[tokens, n_kv_heads, head_dim]`, contiguous)
    /// of `layer` into their slots.
    pub fn write(&mut self, layer: usize, slots: &[Slot], k: &Tensor, v: &Tensor) -> Result<()> {
        let (nkv, hd) = (self.layout.n_kv_heads, self.layout.head_dim);
        let block_len = self.layout.block_len();
        match &mut self.storage {
            Storage::CpuBlocks { k: kp, v: vp } => {
                let (kg, vg) = (k.storage_and_layout(), v.storage_and_layout());
                let (ks, vs) = (cpu_f32(&kg.0, kg.1)?, cpu_f32(&vg.0, vg.1)?);
                let (kp, vp) = (&mut kp[layer], &mut vp[layer]);
                for (t, &slot) in slots.iter().enumerate() {
                    let (block, o) = (slot as usize / BLOCK_SIZE, slot as usize % BLOCK_SIZE);
                    let base = block * block_len;
                    for h in 0..nkv {
                        let src = (t * nkv + h) * hd;
                        let kb = base + h * hd * BLOCK_SIZE + o;
                        for d in 0..hd {
                            kp[kb + d * BLOCK_SIZE] = ks[src + d];
                        }
                        let vb = base + (h * BLOCK_SIZE + o) * hd;
                        vp[vb..vb + hd].copy_from_slice(&vs[src..src + hd]);
                    }
                }
            }
            Storage::Tensors { k: kp, v: vp } => {
                // Consecutive slots (one sequence's tokens within a block) in one copy each.
                let mut t = 0;
                while t < slots.len() {
                    let mut end = t + 1;
                    while end < slots.len() && slots[end] == slots[end - 1] + 1 {
                        end += 1;
                    }
                    kp[layer].slice_set(&k.narrow(0, t, end - t)?.contiguous()?, 0, slots[t] as usize)?;
                    vp[layer].slice_set(&v.narrow(0, t, end - t)?.contiguous()?, 0, slots[t] as usize)?;
                    t = end;
                }
            }
        }
        Ok(())
    }

    /// The raw blocks of `layer` for the fused CPU kernel (keys, values), when the pool uses
    /// its layout.
    pub fn cpu_layer(&self, layer: usize) -> Option<(&[f32], &[f32])> {
        match &self.storage {
            Storage::CpuBlocks { k, v } => Some((&k[layer], &v[layer])),
            Storage::Tensors { .. } => None,
        }
    }

    /// Keys and values of positions `range` of a block table, `[n_kv_heads, positions,
    /// head_dim]` each, gathered from the pool (the reference attention path).
    pub fn gather(&self, layer: usize, table: &[BlockId], range: std::ops::Range<usize>, device: &Device) -> Result<(Tensor, Tensor)> {
        let (nkv, hd) = (self.layout.n_kv_heads, self.layout.head_dim);
        let len = range.len();
        match &self.storage {
            Storage::Tensors { k, v } => {
                let slots: Vec<u32> = range.map(|p| slot_of(table, p)).collect();
                let idx = Tensor::new(slots.as_slice(), k[layer].device())?;
                let pick = |t: &Tensor| -> candle_core::Result<Tensor> { t.index_select(&idx, 0)?.transpose(0, 1)?.contiguous() };
                Ok((pick(&k[layer])?, pick(&v[layer])?))
            }
            Storage::CpuBlocks { k, v } => {
                let block_len = self.layout.block_len();
                let (mut ko, mut vo) = (vec![0f32; nkv * len * hd], vec![0f32; nkv * len * hd]);
                for (i, p) in range.enumerate() {
                    let (base, o) = (table[p / BLOCK_SIZE] as usize * block_len, p % BLOCK_SIZE);
                    for h in 0..nkv {
                        for d in 0..hd {
                            ko[(h * len + i) * hd + d] = k[layer][base + (h * hd + d) * BLOCK_SIZE + o];
                        }
                        let vb = base + (h * BLOCK_SIZE + o) * hd;
                        vo[(h * len + i) * hd..(h * len + i + 1) * hd].copy_from_slice(&v[layer][vb..vb + hd]);
                    }
                }
                Ok((Tensor::from_vec(ko, (nkv, len, hd), device)?, Tensor::from_vec(vo, (nkv, len, hd), device)?))
            }
        }
    }
}

/// The f32 data of a contiguous CPU tensor from its first element.
pub(crate) fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) if layout.is_contiguous() => Ok(&data[layout.start_offset()..]),
        _ => Err(EngineError::Internal("the CPU kernels need contiguous f32 tensors on the CPU".into())),
    }
}

/// Slot of position `pos` of a block table.
pub fn slot_of(table: &[BlockId], pos: usize) -> Slot {
    table[pos / BLOCK_SIZE] * BLOCK_SIZE as u32 + (pos % BLOCK_SIZE) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> KvLayout {
        KvLayout { n_layers: 2, n_kv_heads: 2, head_dim: 4, dtype: DType::F32 }
    }

    fn pools() -> Vec<KvPool> {
        let budget = 3 * layout().bytes_per_block();
        vec![KvPool::new(layout(), budget, &Device::Cpu, true).unwrap(), KvPool::new(layout(), budget, &Device::Cpu, false).unwrap()]
    }

    #[test]
    fn blocks_are_counted_and_freed_at_zero_references() {
        let mut pool = KvPool::new(layout(), 2 * layout().bytes_per_block() + 7, &Device::Cpu, true).unwrap();
        assert_eq!(pool.stats(), PoolStats { blocks: 2, free: 2, used: 0 });
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert!(pool.allocate().is_none());
        pool.retain(a);
        pool.release(a);
        assert_eq!(pool.stats().free, 0);
        pool.release(a);
        pool.release(b);
        assert_eq!(pool.stats(), PoolStats { blocks: 2, free: 2, used: 0 });
        assert!(matches!(KvPool::new(layout(), 10, &Device::Cpu, true), Err(EngineError::KvBudget { .. })));
    }

    #[test]
    fn both_storages_write_gather_and_copy_on_write_alike() {
        for mut pool in pools() {
            let (a, b) = (pool.allocate().unwrap(), pool.allocate().unwrap());
            let table = [a, b];
            // 40 tokens: the first block full, 8 slots of the second.
            let len = 40;
            let k = Tensor::arange(0f32, (len * 8) as f32, &Device::Cpu).unwrap().reshape((len, 2, 4)).unwrap();
            let v = (&k * -1.0).unwrap();
            let slots: Vec<Slot> = (0..len).map(|p| slot_of(&table, p)).collect();
            pool.write(1, &slots, &k, &v).unwrap();
            let (gk, gv) = pool.gather(1, &table, 0..len, &Device::Cpu).unwrap();
            assert_eq!(gk.to_vec3::<f32>().unwrap(), k.transpose(0, 1).unwrap().to_vec3::<f32>().unwrap());
            assert_eq!(gv.to_vec3::<f32>().unwrap(), v.transpose(0, 1).unwrap().to_vec3::<f32>().unwrap());
            // Copy the 8 filled slots of block b into a fresh block c.
            let c = pool.allocate().unwrap();
            pool.copy_slots(b, c, 8).unwrap();
            let (ck, _) = pool.gather(1, &[a, c], 0..len, &Device::Cpu).unwrap();
            assert_eq!(ck.to_vec3::<f32>().unwrap(), gk.to_vec3::<f32>().unwrap());
        }
    }
}
