//! Attention over the paged KV pool for one layer of a step: every sequence's query rows
//! against the keys its block table names (its shared prefix blocks and its own), causally and
//! within the layer's sliding window. Two implementations of the same function: the fused CPU
//! kernel (`cpu.rs`: AVX-512, AVX2 or plain Rust, the same bits), and candle ops
//! (`reference.rs`) on any device, which also serves as the fused kernel's test oracle.

pub mod cpu;
pub mod reference;

use crate::error::Result;
use crate::kv_pool::{BlockId, KvPool};
use candle_core::Tensor;
pub use cpu::{AttentionCode, CpuAttention};
pub use reference::Heads;

/// The query rows of one sequence in a step.
#[derive(Debug, Clone, Copy)]
pub struct QuerySpan<'a> {
    /// First row of the sequence in the step's flat batch.
    pub offset: usize,
    /// Rows (new tokens) of the sequence.
    pub rows: usize,
    /// Position of the first row: keys `0..start` were computed before this step.
    pub start: usize,
    /// The sequence's block table (covers `start + rows` positions).
    pub table: &'a [BlockId],
}

/// Blocks `first_block..first_block + blocks` are the same pool blocks in the tables of every
/// member span, all computed before the step: their keys can be read once for all members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSegment {
    pub first_block: usize,
    pub blocks: usize,
    /// Indices of the member spans, in order.
    pub members: Vec<usize>,
}

/// The shared segments of a step, nested like a trie of the spans' block tables: a segment is
/// the longest run of blocks that two or more spans hold in common after their common
/// ancestors' runs. `shareable[i]` is how many leading blocks of span `i` were complete
/// before the step (a block that receives new keys this step is its own).
pub fn shared_segments(tables: &[&[BlockId]], shareable: &[usize]) -> Vec<SharedSegment> {
    fn split(tables: &[&[BlockId]], shareable: &[usize], members: Vec<usize>, depth: usize, out: &mut Vec<SharedSegment>) {
        let mut groups: Vec<(BlockId, Vec<usize>)> = Vec::new();
        for m in members.into_iter().filter(|&m| shareable[m] > depth) {
            match groups.iter_mut().find(|(b, _)| *b == tables[m][depth]) {
                Some((_, g)) => g.push(m),
                None => groups.push((tables[m][depth], vec![m])),
            }
        }
        for (_, group) in groups.into_iter().filter(|(_, g)| g.len() > 1) {
            let mut end = depth + 1;
            while group.iter().all(|&m| shareable[m] > end && tables[m][end] == tables[group[0]][end]) {
                end += 1;
            }
            out.push(SharedSegment { first_block: depth, blocks: end - depth, members: group.clone() });
            split(tables, shareable, group, end, out);
        }
    }
    let mut out = Vec::new();
    split(tables, shareable, (0..tables.len()).collect(), 0, &mut out);
    out
}

/// How a model runs attention.
#[derive(Debug)]
pub enum Attention {
    Fused(CpuAttention),
    Reference,
}

impl Attention {
    /// The fused kernel (on the fastest code this CPU runs) when it applies to these shapes,
    /// the device is the CPU and `fused` allows it.
    pub fn for_model(heads: Heads, cpu: bool, fused: bool) -> Self {
        match CpuAttention::new(heads.n_heads, heads.n_kv_heads, heads.head_dim).filter(|_| cpu && fused) {
            Some(k) => Self::Fused(k),
            None => Self::Reference,
        }
    }

    /// Whether the pool must use the fused kernel's CPU block layout.
    pub fn wants_cpu_blocks(&self) -> bool {
        matches!(self, Self::Fused(_))
    }

    /// Attention of `q` (`[total, n_heads, head_dim]`, pre-scaled) of every span over layer
    /// `layer` of the pool (the step's new keys already written); `[total, n_heads * head_dim]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(&self, q: &Tensor, spans: &[QuerySpan<'_>], segments: &[SharedSegment], pool: &KvPool, layer: usize, window: Option<usize>, heads: Heads) -> Result<Tensor> {
        match self {
            Self::Fused(kernel) => {
                let (k, v) = pool.cpu_layer(layer).ok_or_else(|| crate::error::EngineError::Internal("the fused kernel needs the pool's CPU block layout".into()))?;
                let total = q.dim(0)?;
                let q = q.contiguous()?;
                let guard = q.storage_and_layout();
                let out = kernel.attend(crate::kv_pool::cpu_f32(&guard.0, guard.1)?, total, spans, k, v, window);
                Ok(Tensor::from_vec(out, (total, heads.n_heads * heads.head_dim), q.device())?)
            }
            Self::Reference => reference::attend(q, spans, segments, pool, layer, window, heads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_pool::{slot_of, KvLayout, Slot, BLOCK_SIZE};
    use candle_core::{DType, Device};

    #[test]
    fn segments_follow_the_trie_of_block_tables() {
        // Spans 0-2 share block 7; 0 and 1 also share 8 and 9; span 3 shares nothing.
        let t: [&[BlockId]; 4] = [&[7, 8, 9, 1], &[7, 8, 9, 2], &[7, 3], &[4, 5]];
        let segs = shared_segments(&t, &[4, 3, 2, 2]);
        assert_eq!(segs, vec![SharedSegment { first_block: 0, blocks: 1, members: vec![0, 1, 2] }, SharedSegment { first_block: 1, blocks: 2, members: vec![0, 1] }]);
        // A block still being written (not shareable) is no one's shared segment.
        assert_eq!(shared_segments(&t[..2], &[1, 1]), vec![SharedSegment { first_block: 0, blocks: 1, members: vec![0, 1] }]);
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 2654435761) % 1009) as f32 / 1009.0 - 0.5).collect()
    }

    /// Softmax attention of one query row over `keys` (each a key and value row), in f64.
    fn exact(q: &[f32], keys: &[(Vec<f32>, Vec<f32>)]) -> Vec<f32> {
        let scores: Vec<f64> = keys.iter().map(|(k, _)| q.iter().zip(k).map(|(a, b)| (*a as f64) * (*b as f64)).sum()).collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let z: f64 = w.iter().sum();
        (0..q.len()).map(|d| (keys.iter().zip(&w).map(|((_, v), w)| w * v[d] as f64).sum::<f64>() / z) as f32).collect()
    }

    /// Two sequences sharing a 45-token prefix (one full block and 13 copied slots), with 3
    /// and 11 new rows; both implementations against exact softmax, with and without a window.
    #[test]
    fn fused_and_reference_equal_exact_attention_over_shared_blocks() {
        for hd in [64usize, 128, 256] {
            let (nh, nkv) = (6, 2);
            let heads = Heads { n_heads: nh, n_kv_heads: nkv, head_dim: hd };
            let layout = KvLayout { n_layers: 1, n_kv_heads: nkv, head_dim: hd, dtype: DType::F32 };
            let fused = AttentionCode::all_available().into_iter().map(|code| Attention::Fused(CpuAttention::with_code(nh, nkv, hd, code).unwrap()));
            for attention in fused.chain([Attention::Reference]) {
                let cpu_blocks = attention.wants_cpu_blocks();
                let mut pool = KvPool::new(layout, 8 * layout.bytes_per_block(), &Device::Cpu, cpu_blocks).unwrap();
                let shared = pool.allocate().unwrap();
                pool.retain(shared);
                let tables: Vec<Vec<BlockId>> = vec![vec![shared, pool.allocate().unwrap()], vec![shared, pool.allocate().unwrap()]];
                // Positions: span 0 computes 45..48, span 1 computes 45..56 (keys 0..45 cached).
                let (start, rows) = (45usize, [3usize, 11]);
                let lens = [start + rows[0], start + rows[1]];
                let keys: Vec<Vec<(Vec<f32>, Vec<f32>)>> = (0..2)
                    .map(|s| (0..lens[s]).map(|p| (values(nkv * hd, if p < start { p } else { 1000 * (s + 1) + p }), values(nkv * hd, 7 + if p < start { p } else { 1000 * (s + 1) + p }))).collect())
                    .collect();
                for s in 0..2 {
                    let slots: Vec<Slot> = (0..lens[s]).map(|p| slot_of(&tables[s], p)).collect();
                    let k: Vec<f32> = keys[s].iter().flat_map(|(k, _)| k.clone()).collect();
                    let v: Vec<f32> = keys[s].iter().flat_map(|(_, v)| v.clone()).collect();
                    let k = Tensor::from_vec(k, (lens[s], nkv, hd), &Device::Cpu).unwrap();
                    let v = Tensor::from_vec(v, (lens[s], nkv, hd), &Device::Cpu).unwrap();
                    pool.write(0, &slots, &k, &v).unwrap();
                }
                let total = rows[0] + rows[1];
                let qv = values(total * nh * hd, 99);
                let q = Tensor::from_vec(qv.clone(), (total, nh, hd), &Device::Cpu).unwrap();
                let spans = [QuerySpan { offset: 0, rows: rows[0], start, table: &tables[0] }, QuerySpan { offset: rows[0], rows: rows[1], start, table: &tables[1] }];
                let segments = shared_segments(&[&tables[0], &tables[1]], &[start / BLOCK_SIZE, start / BLOCK_SIZE]);
                assert_eq!(segments.len(), 1);
                for window in [None, Some(20)] {
                    let out: Vec<f32> = attention.attend(&q, &spans, &segments, &pool, 0, window, heads).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                    for (s, span) in spans.iter().enumerate() {
                        for i in 0..span.rows {
                            let pos = start + i;
                            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                            for h in 0..nh {
                                let kv = h / (nh / nkv);
                                let visible: Vec<(Vec<f32>, Vec<f32>)> = (lo..=pos).map(|p| (keys[s][p].0[kv * hd..(kv + 1) * hd].to_vec(), keys[s][p].1[kv * hd..(kv + 1) * hd].to_vec())).collect();
                                let row = span.offset + i;
                                let want = exact(&qv[(row * nh + h) * hd..][..hd], &visible);
                                let got = &out[(row * nh + h) * hd..][..hd];
                                for (a, b) in got.iter().zip(&want) {
                                    assert!((a - b).abs() < 1e-5, "hd {hd} {attention:?} window {window:?} span {s} row {i} head {h}: {a} vs {b}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// What a row computes depends on nothing but its query and the keys it sees: the same bits
    /// prefilled whole, in chunks, decoded one row at a time and beside another sequence, by
    /// every code this CPU runs.
    #[test]
    fn a_row_computes_the_same_bits_however_its_step_is_composed() {
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        for hd in [64usize, 128, 256] {
            let (nh, nkv, len) = (4, 2, 70usize);
            let layout = KvLayout { n_layers: 1, n_kv_heads: nkv, head_dim: hd, dtype: DType::F32 };
            let mut pool = KvPool::new(layout, 4 * layout.bytes_per_block(), &Device::Cpu, true).unwrap();
            let table: Vec<BlockId> = (0..len.div_ceil(BLOCK_SIZE)).map(|_| pool.allocate().unwrap()).collect();
            let slots: Vec<Slot> = (0..len).map(|p| slot_of(&table, p)).collect();
            let kv = |seed| Tensor::from_vec(values(len * nkv * hd, seed), (len, nkv, hd), &Device::Cpu).unwrap();
            pool.write(0, &slots, &kv(1), &kv(2)).unwrap();
            let (k, v) = pool.cpu_layer(0).unwrap();
            let row = nh * hd;
            let q = values(len * row, 3);
            let span = |offset, rows, start| QuerySpan { offset, rows, start, table: &table };
            for window in [None, Some(20)] {
                let mut first: Option<Vec<f32>> = None;
                for code in AttentionCode::all_available() {
                    let kernel = CpuAttention::with_code(nh, nkv, hd, code).unwrap();
                    let whole = kernel.attend(&q, len, &[span(0, len, 0)], k, v, window);
                    let chunked: Vec<f32> = [(0, 20), (20, 51), (51, len)].into_iter().flat_map(|(a, b)| kernel.attend(&q[a * row..b * row], b - a, &[span(0, b - a, a)], k, v, window)).collect();
                    let decoded: Vec<f32> = (0..len).flat_map(|i| kernel.attend(&q[i * row..(i + 1) * row], 1, &[span(0, 1, i)], k, v, window)).collect();
                    let mut two = q[..30 * row].to_vec();
                    two.extend(&q);
                    let beside = kernel.attend(&two, 30 + len, &[span(0, 30, 0), span(30, len, 0)], k, v, window)[30 * row..].to_vec();
                    for (how, got) in [("in chunks", &chunked), ("one row at a time", &decoded), ("beside another sequence", &beside)] {
                        assert!(bits(got) == bits(&whole), "hd {hd} {code:?} window {window:?}: computed {how} differs from a whole prefill");
                    }
                    match &first {
                        None => first = Some(whole),
                        Some(want) => assert!(bits(&whole) == bits(want), "hd {hd} window {window:?}: {code:?} differs from the first code"),
                    }
                }
            }
        }
    }
}
