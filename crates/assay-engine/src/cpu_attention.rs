//! Fused attention for the CPU: each tile of query rows walks the key blocks of every segment
//! it may see (the cached ancestors of its sequence, then its own keys, causally) with an
//! online softmax, so no score matrix is ever materialised. This is the Hydragen / cascade
//! split done in registers: a shared prefix is read once per tile from L2 by every sequence
//! that continues it, and the log-sum-exp merge of segments is the running maximum and sum.
//!
//! Why not candle ops? At judge shapes (thousands of suffix rows over a ~1k-token prefix) the
//! unfused path writes, re-reads and exponentiates tens of MB of scores per layer and
//! allocates a tensor per step; that, not the FLOPs, was most of a judge pass (BENCHMARKS.md).
//!
//! The kernel needs AVX-512F and a head size of 64 or 128; `CpuAttention::new` says whether it
//! applies, and callers keep the candle path otherwise (and on GPUs).

use crate::packed_gemm::avx512_available;
use rayon::prelude::*;

/// Keys per block: two 16-lane vectors of scores per query row.
const KB: usize = 32;
/// Query rows per tile: 8 rows x 32 keys of scores fill 16 registers.
const TILE: usize = 8;

/// One cached run of keys and values, `[n_kv_heads, head_stride, head_dim]` row-major with
/// the first `len` positions of each head filled.
#[derive(Debug, Clone, Copy)]
pub struct KvSegment<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub head_stride: usize,
    pub len: usize,
}

/// The query rows of one sequence chunk and the segments they attend to.
#[derive(Debug, Clone)]
pub struct QueryChunk {
    /// First row of the chunk in the flat batch.
    pub offset: usize,
    /// Rows (tokens) of the chunk.
    pub rows: usize,
    /// Segments read in full (the ancestors), as indices into the segment list.
    pub ancestors: Vec<usize>,
    /// The chunk's own keys: row `i` sees positions `0..=before + i` of this segment.
    pub own: usize,
    /// Own positions that were cached before this chunk.
    pub before: usize,
}

/// Shapes of the attention a model runs.
#[derive(Debug, Clone, Copy)]
pub struct CpuAttention {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl CpuAttention {
    /// The fused kernel for these shapes, when this CPU and head size allow it.
    pub fn new(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Option<Self> {
        let shapes_ok = matches!(head_dim, 64 | 128) && n_kv_heads > 0 && n_heads % n_kv_heads == 0;
        (shapes_ok && avx512_available()).then_some(Self { n_heads, n_kv_heads, head_dim })
    }

    /// Attention of `q` (`[n_heads, total, head_dim]`, pre-scaled, row-major) for every chunk;
    /// returns `[total, n_heads * head_dim]`, the layout the output projection reads.
    pub fn attend(&self, q: &[f32], total: usize, segments: &[KvSegment<'_>], chunks: &[QueryChunk]) -> Vec<f32> {
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        assert_eq!(q.len(), nh * total * hd, "queries are not [heads, total, head_dim]");
        let group = nh / nkv;
        let transposed: Vec<Vec<f32>> = segments.par_iter().map(|s| transpose_keys(s, nkv, hd)).collect();
        let mut out = vec![0f32; total * nh * hd];
        let out_addr = out.as_mut_ptr() as usize;
        let mut tiles = Vec::new();
        for (c, chunk) in chunks.iter().enumerate() {
            for kv in 0..nkv {
                for first in (0..group * chunk.rows).step_by(TILE) {
                    tiles.push((c, kv, first));
                }
            }
        }
        tiles.into_par_iter().for_each(|(c, kv, first)| {
            let chunk = &chunks[c];
            let n = TILE.min(group * chunk.rows - first);
            let mut tile = Tile { q: [std::ptr::null(); TILE], out: [std::ptr::null_mut(); TILE], own_visible: [0; TILE], n };
            for r in 0..n {
                // Rows of a tile run through (query head within the group, token) token-first.
                let (g, i) = ((first + r) / chunk.rows, (first + r) % chunk.rows);
                let head = kv * group + g;
                tile.q[r] = q[(head * total + chunk.offset + i) * hd..].as_ptr();
                // SAFETY: each (row, head) slot of `out` belongs to exactly one tile.
                tile.out[r] = unsafe { (out_addr as *mut f32).add((chunk.offset + i) * nh * hd + head * hd) };
                tile.own_visible[r] = chunk.before + i + 1;
            }
            let reads: Vec<SegmentRead<'_>> = chunk
                .ancestors
                .iter()
                .map(|&s| (s, false))
                .chain(std::iter::once((chunk.own, true)))
                .map(|(s, causal)| {
                    let seg = &segments[s];
                    let blocks = seg.len.div_ceil(KB);
                    SegmentRead {
                        kt: &transposed[s][kv * blocks * hd * KB..(kv + 1) * blocks * hd * KB],
                        v: &seg.v[kv * seg.head_stride * hd..],
                        len: seg.len,
                        causal,
                    }
                })
                .collect();
            // SAFETY: AVX-512F was detected in `new`; pointers are in bounds of `q` and `out`.
            unsafe {
                match hd {
                    64 => attend_tile::<4>(&tile, &reads),
                    _ => attend_tile::<8>(&tile, &reads),
                }
            }
        });
        out
    }
}

/// Keys of every head as blocks of `KB` keys laid out `[head_dim][KB]` (zero-padded), so the
/// score kernel multiplies one query element by 32 keys at once.
fn transpose_keys(s: &KvSegment<'_>, nkv: usize, hd: usize) -> Vec<f32> {
    let blocks = s.len.div_ceil(KB);
    let mut kt = vec![0f32; nkv * blocks * hd * KB];
    for kv in 0..nkv {
        let keys = &s.k[kv * s.head_stride * hd..];
        for j in 0..s.len {
            let (b, jj) = (j / KB, j % KB);
            let block = &mut kt[(kv * blocks + b) * hd * KB..];
            for (d, &x) in keys[j * hd..(j + 1) * hd].iter().enumerate() {
                block[d * KB + jj] = x;
            }
        }
    }
    kt
}

/// Query rows handled together, with where their outputs go.
struct Tile {
    q: [*const f32; TILE],
    out: [*mut f32; TILE],
    /// Keys of the own segment each row may see (causal).
    own_visible: [usize; TILE],
    n: usize,
}

struct SegmentRead<'a> {
    kt: &'a [f32],
    v: &'a [f32],
    len: usize,
    causal: bool,
}


/// Dispatches a tile to the kernel compiled for its row count, so that every accumulator
/// index is a constant and stays in a register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_tile<const NV: usize>(tile: &Tile, reads: &[SegmentRead<'_>]) {
    match tile.n {
        8 => attend_rows::<NV, 8>(tile, reads),
        7 => attend_rows::<NV, 7>(tile, reads),
        6 => attend_rows::<NV, 6>(tile, reads),
        5 => attend_rows::<NV, 5>(tile, reads),
        4 => attend_rows::<NV, 4>(tile, reads),
        3 => attend_rows::<NV, 3>(tile, reads),
        2 => attend_rows::<NV, 2>(tile, reads),
        _ => attend_rows::<NV, 1>(tile, reads),
    }
}

/// Online-softmax attention of `R` query rows over their segments; `NV` is `head_dim / 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_rows<const NV: usize, const R: usize>(tile: &Tile, reads: &[SegmentRead<'_>]) {
    use std::arch::x86_64::*;
    let hd = NV * 16;
    // Rows per pass over a value block: 16 accumulators (4 rows of 64, 2 rows of 128).
    let pass = 16 / NV;
    let mut max = [f32::NEG_INFINITY; R];
    let mut sum = [0f32; R];
    let mut alpha = [1f32; R];
    let mut out = [[0f32; 128]; R];
    let mut p = [[0f32; KB]; R];
    for read in reads {
        let blocks = read.len.div_ceil(KB);
        let visible = |r: usize| if read.causal { tile.own_visible[r].min(read.len) } else { read.len };
        let most = (0..R).map(visible).max().unwrap_or(0);
        for b in 0..blocks.min(most.div_ceil(KB)) {
            let j0 = b * KB;
            let kt = read.kt.as_ptr().add(b * hd * KB);
            // Scores: R rows x 32 keys held in registers across the head dimension.
            let mut s = [[_mm512_setzero_ps(); 2]; R];
            for d in 0..hd {
                let k0 = _mm512_loadu_ps(kt.add(d * KB));
                let k1 = _mm512_loadu_ps(kt.add(d * KB + 16));
                for r in 0..R {
                    let qv = _mm512_set1_ps(*tile.q[r].add(d));
                    s[r][0] = _mm512_fmadd_ps(qv, k0, s[r][0]);
                    s[r][1] = _mm512_fmadd_ps(qv, k1, s[r][1]);
                }
            }
            // Online softmax: what was accumulated is rescaled when the running maximum moves.
            let mut valid_max = 0;
            for r in 0..R {
                let valid = visible(r).saturating_sub(j0).min(KB);
                valid_max = valid_max.max(valid);
                alpha[r] = 1.0;
                if valid == 0 {
                    p[r] = [0.0; KB];
                    continue;
                }
                let m0 = lane_mask(valid);
                let m1 = lane_mask(valid.saturating_sub(16));
                let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
                let s0 = _mm512_mask_mov_ps(ninf, m0, s[r][0]);
                let s1 = _mm512_mask_mov_ps(ninf, m1, s[r][1]);
                let new_max = max[r].max(_mm512_reduce_max_ps(_mm512_max_ps(s0, s1)));
                alpha[r] = (max[r] - new_max).exp();
                let mv = _mm512_set1_ps(new_max);
                let e0 = _mm512_maskz_mov_ps(m0, exp_ps(_mm512_sub_ps(s0, mv)));
                let e1 = _mm512_maskz_mov_ps(m1, exp_ps(_mm512_sub_ps(s1, mv)));
                sum[r] = sum[r] * alpha[r] + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
                max[r] = new_max;
                _mm512_storeu_ps(p[r].as_mut_ptr(), e0);
                _mm512_storeu_ps(p[r].as_mut_ptr().add(16), e1);
            }
            // Values: out_r = alpha_r out_r + sum_j p_rj v_j, each value row feeding a pass of rows.
            let v = read.v.as_ptr().add(j0 * hd);
            for r0 in (0..R).step_by(pass) {
                let mut acc = [[_mm512_setzero_ps(); NV]; 4];
                for (k, a) in acc.iter_mut().enumerate().take(pass.min(R - r0)) {
                    let av = _mm512_set1_ps(alpha[r0 + k]);
                    for (c, x) in a.iter_mut().enumerate() {
                        *x = _mm512_mul_ps(_mm512_loadu_ps(out[r0 + k].as_ptr().add(c * 16)), av);
                    }
                }
                for j in 0..valid_max {
                    let mut vv = [_mm512_setzero_ps(); NV];
                    for (c, x) in vv.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(v.add(j * hd + c * 16));
                    }
                    for (k, a) in acc.iter_mut().enumerate().take(pass.min(R - r0)) {
                        let pv = _mm512_set1_ps(p[r0 + k][j]);
                        for c in 0..NV {
                            a[c] = _mm512_fmadd_ps(pv, vv[c], a[c]);
                        }
                    }
                }
                for (k, a) in acc.iter().enumerate().take(pass.min(R - r0)) {
                    for (c, x) in a.iter().enumerate() {
                        _mm512_storeu_ps(out[r0 + k].as_mut_ptr().add(c * 16), *x);
                    }
                }
            }
        }
    }
    for r in 0..R {
        let inv = _mm512_set1_ps(1.0 / sum[r]);
        for c in 0..NV {
            _mm512_storeu_ps(tile.out[r].add(c * 16), _mm512_mul_ps(_mm512_loadu_ps(out[r].as_ptr().add(c * 16)), inv));
        }
    }
}

/// The first `valid` (capped at 16) lanes.
#[cfg(target_arch = "x86_64")]
fn lane_mask(valid: usize) -> u16 {
    if valid >= 16 {
        u16::MAX
    } else {
        ((1u32 << valid) - 1) as u16
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn attend_tile<const NV: usize>(_: &Tile, _: &[SegmentRead<'_>]) {
    unreachable!("CpuAttention::new returns None without AVX-512")
}

/// `exp(x)` for 16 lanes (relative error ~2e-7): `2^n * e^r` with `r` reduced to
/// `|r| <= ln2 / 2` and a degree-6 polynomial; `-inf` gives 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_ps(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0)), _mm512_set1_ps(88.7));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut y = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(y, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 2654435761) % 1009) as f32 / 1009.0 - 0.5).collect()
    }

    /// Softmax attention of one query row over the visible keys, in f64.
    fn reference(q: &[f32], keys: &[(&[f32], &[f32])]) -> Vec<f32> {
        let scores: Vec<f64> = keys.iter().map(|(k, _)| q.iter().zip(*k).map(|(a, b)| (*a as f64) * (*b as f64)).sum()).collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let z: f64 = w.iter().sum();
        (0..q.len()).map(|d| (keys.iter().zip(&w).map(|((_, v), w)| w * v[d] as f64).sum::<f64>() / z) as f32).collect()
    }

    #[test]
    fn equals_softmax_attention_over_ancestors_and_causal_own_keys() {
        for hd in [64usize, 128] {
            let (nh, nkv) = (6, 2);
            let Some(attn) = CpuAttention::new(nh, nkv, hd) else {
                return; // no AVX-512: callers use candle's path
            };
            // A 45-key prefix shared by two chunks (3 and 11 new rows, the second with 5 own
            // keys cached before it), stored with spare capacity like a KV cache.
            let (cap_p, cap_o) = (50, 20);
            let prefix = (values(nkv * cap_p * hd, 1), values(nkv * cap_p * hd, 2));
            let own_a = (values(nkv * cap_o * hd, 3), values(nkv * cap_o * hd, 4));
            let own_b = (values(nkv * cap_o * hd, 5), values(nkv * cap_o * hd, 6));
            let segments = [
                KvSegment { k: &prefix.0, v: &prefix.1, head_stride: cap_p, len: 45 },
                KvSegment { k: &own_a.0, v: &own_a.1, head_stride: cap_o, len: 3 },
                KvSegment { k: &own_b.0, v: &own_b.1, head_stride: cap_o, len: 16 },
            ];
            let chunks = [
                QueryChunk { offset: 0, rows: 3, ancestors: vec![0], own: 1, before: 0 },
                QueryChunk { offset: 3, rows: 11, ancestors: vec![0], own: 2, before: 5 },
            ];
            let total = 14;
            let q = values(nh * total * hd, 7);
            let out = attn.attend(&q, total, &segments, &chunks);
            for chunk in &chunks {
                for i in 0..chunk.rows {
                    for h in 0..nh {
                        let kv = h / (nh / nkv);
                        fn row<'a>(s: &KvSegment<'a>, kv: usize, j: usize, hd: usize) -> (&'a [f32], &'a [f32]) {
                            let at = (kv * s.head_stride + j) * hd;
                            (&s.k[at..at + hd], &s.v[at..at + hd])
                        }
                        let own = &segments[chunk.own];
                        let mut keys: Vec<(&[f32], &[f32])> = (0..45).map(|j| row(&segments[0], kv, j, hd)).collect();
                        keys.extend((0..=chunk.before + i).map(|j| row(own, kv, j, hd)));
                        let qr = &q[(h * total + chunk.offset + i) * hd..][..hd];
                        let want = reference(qr, &keys);
                        let got = &out[(chunk.offset + i) * nh * hd + h * hd..][..hd];
                        for (a, b) in got.iter().zip(&want) {
                            assert!((a - b).abs() < 1e-5, "hd {hd} row {i} head {h}: {a} vs {b}");
                        }
                    }
                }
            }
        }
    }
}
