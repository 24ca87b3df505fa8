//! The AVX512-VNNI kernel: per block, `vpdpbusd` multiplies a tile's 16 columns of unsigned
//! codes (4 inputs each) by 4 int8 activations broadcast from one row, summing into i32 lanes.
//! Formats without sub-scales turn each block's sums into f32, scaled (`A dx`) into the row's
//! accumulators, less the min or offset term. The K-quants multiply each block's sums by its
//! integer sub-scales (less the offset) and rescale in f32 once per 256 inputs (`d dx`), then
//! take off the mins (`dmin m dx sum`) per block. Up to 8 rows share each load of the codes.
//! Each row's instructions are the same whatever the number of rows beside it, so its result
//! is too.
//!
//! Monomorphised per format (bits per code, block size, sub-scales, mins) and per row count,
//! so the accumulators stay in registers.

use super::quant_matrix::{BlockFormat, QuantMatrix, TILE};
use super::rows::QuantizedRows;
use std::arch::x86_64::*;

/// Rows per kernel call: each row's block sums, super-block sums (K-quants) and f32
/// accumulators, 24 of the 32 vector registers, leave room for codes and scales.
const MR: usize = 8;

/// How far ahead of its loads the kernel asks for a tile's codes: a tile is one stream
/// through memory, and the hardware prefetchers stop at every 4 KiB page; without this, the
/// first 8 rows of a 16-row step waited on memory (a 16-row LM head step of the 1.5B took
/// 1.5-1.8x longer, BENCHMARKS.md).
const PREFETCH_AHEAD: usize = 4096;

/// Rows `r0 .. r0 + rows` of `x` times tile `t` of `w` (see `portable::tile_rows`).
///
/// # Safety
/// The CPU must have AVX-512F, AVX-512BW and AVX512-VNNI; `y` must hold `rows` rows of stride
/// `ldy` with `cols` (at most 16) values each.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile_rows(w: &QuantMatrix, t: usize, x: &QuantizedRows, r0: usize, rows: usize, y: &mut [f32], ldy: usize, cols: usize) {
    let call = Call { tile: w.tile(t).as_ptr(), n_super: w.k() / w.layout().super_k, offset: w.layout().offset, x, ldy, mask: ((1u32 << cols) - 1) as u16 };
    let mut r = r0;
    while r < r0 + rows {
        let mr = MR.min(r0 + rows - r);
        let out = y.as_mut_ptr().add((r - r0) * ldy);
        match w.format() {
            BlockFormat::Q8_0 => by_rows::<8, 32, false, false>(&call, mr, r, out),
            BlockFormat::Q4_0 => by_rows::<4, 32, false, false>(&call, mr, r, out),
            BlockFormat::Q4_1 => by_rows::<4, 32, false, true>(&call, mr, r, out),
            BlockFormat::Q5_0 => by_rows::<8, 32, false, false>(&call, mr, r, out),
            BlockFormat::Q5_1 => by_rows::<8, 32, false, true>(&call, mr, r, out),
            BlockFormat::Q4K => by_rows::<4, 32, true, true>(&call, mr, r, out),
            BlockFormat::Q5K => by_rows::<8, 32, true, true>(&call, mr, r, out),
            BlockFormat::Q6K => by_rows::<8, 16, true, false>(&call, mr, r, out),
        }
        r += mr;
    }
}

/// What every kernel call of one tile shares.
struct Call<'a> {
    tile: *const u8,
    n_super: usize,
    offset: i32,
    x: &'a QuantizedRows,
    ldy: usize,
    mask: u16,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn by_rows<const BITS: usize, const BLOCK: usize, const SUB: bool, const MINS: bool>(c: &Call, mr: usize, r: usize, y: *mut f32) {
    match mr {
        8 => kernel::<8, BITS, BLOCK, SUB, MINS>(c, r, y),
        7 => kernel::<7, BITS, BLOCK, SUB, MINS>(c, r, y),
        6 => kernel::<6, BITS, BLOCK, SUB, MINS>(c, r, y),
        5 => kernel::<5, BITS, BLOCK, SUB, MINS>(c, r, y),
        4 => kernel::<4, BITS, BLOCK, SUB, MINS>(c, r, y),
        3 => kernel::<3, BITS, BLOCK, SUB, MINS>(c, r, y),
        2 => kernel::<2, BITS, BLOCK, SUB, MINS>(c, r, y),
        _ => kernel::<1, BITS, BLOCK, SUB, MINS>(c, r, y),
    }
}

#[inline(always)]
unsafe fn broadcast4(p: *const i8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// One block's integer dot products for `R` rows: `vpdpbusd` of the tile's codes with 4
/// activations broadcast from each row (`xb`, rows `k` apart).
#[inline(always)]
unsafe fn block_sums<const R: usize, const BITS: usize, const BLOCK: usize>(codes: *const u8, xb: *const i8, k: usize) -> [__m512i; R] {
    let mut isum = [_mm512_setzero_si512(); R];
    if BITS == 8 {
        for g in 0..BLOCK / 4 {
            _mm_prefetch::<_MM_HINT_T0>(codes.add(g * 64 + PREFETCH_AHEAD) as *const i8);
            let wv = _mm512_loadu_si512(codes.add(g * 64) as *const __m512i);
            for (i, s) in isum.iter_mut().enumerate() {
                *s = _mm512_dpbusd_epi32(*s, wv, broadcast4(xb.add(i * k + 4 * g)));
            }
        }
    } else {
        let low_nibbles = _mm512_set1_epi8(0x0F);
        for h in 0..BLOCK / 8 {
            _mm_prefetch::<_MM_HINT_T0>(codes.add(h * 64 + PREFETCH_AHEAD) as *const i8);
            let packed = _mm512_loadu_si512(codes.add(h * 64) as *const __m512i);
            let lo = _mm512_and_si512(packed, low_nibbles);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low_nibbles);
            for (i, s) in isum.iter_mut().enumerate() {
                *s = _mm512_dpbusd_epi32(*s, lo, broadcast4(xb.add(i * k + 8 * h)));
                *s = _mm512_dpbusd_epi32(*s, hi, broadcast4(xb.add(i * k + 8 * h + 4)));
            }
        }
    }
    isum
}

/// Sixteen i8 sub-scales (or mins) as i32 lanes.
#[inline(always)]
unsafe fn sub_scales(p: *const u8) -> __m512i {
    _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel<const R: usize, const BITS: usize, const BLOCK: usize, const SUB: bool, const MINS: bool>(c: &Call, r: usize, y: *mut f32) {
    let x = c.x;
    let k = x.k();
    let (n_scales, n_sums) = (x.scales_per_row(), x.sums_per_row());
    let xv = x.values.as_ptr().add(r * k);
    let sub_bytes = if SUB { TILE * (1 + MINS as usize) } else { 0 };
    let block_bytes = sub_bytes + TILE * BLOCK * BITS / 8;
    let head_bytes = 2 * TILE * (1 + MINS as usize);
    let bps = if SUB { 256 / BLOCK } else { 1 };
    let super_bytes = head_bytes + bps * block_bytes;
    let row_scale = |i: usize, s: usize| _mm512_set1_ps(*x.scales.get_unchecked((r + i) * n_scales + s));
    let row_sum = |i: usize, kb: usize| *x.sums.get_unchecked((r + i) * n_sums + kb);
    let row_scaled_sum = |i: usize, kb: usize| _mm512_set1_ps(*x.scaled_sums.get_unchecked((r + i) * n_sums + kb));
    let mut acc = [_mm512_setzero_ps(); R];
    for s in 0..c.n_super {
        let sb = c.tile.add(s * super_bytes);
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(sb as *const __m256i));
        let dmin = if MINS { _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(2 * TILE) as *const __m256i)) } else { _mm512_setzero_ps() };
        if SUB {
            // The sub-scales multiply integer sums; the row is rescaled once per super-block.
            let mut isup = [_mm512_setzero_si512(); R];
            for b in 0..bps {
                let blk = sb.add(head_bytes + b * block_bytes);
                let sc = sub_scales(blk);
                let kb = s * bps + b;
                let isum = block_sums::<R, BITS, BLOCK>(blk.add(sub_bytes), xv.add(kb * BLOCK), k);
                for (i, (isup, isum)) in isup.iter_mut().zip(isum).enumerate() {
                    let centred = if MINS { isum } else { _mm512_sub_epi32(isum, _mm512_set1_epi32(c.offset * row_sum(i, kb))) };
                    *isup = _mm512_add_epi32(*isup, _mm512_mullo_epi32(centred, sc));
                }
            }
            for (i, (acc, isup)) in acc.iter_mut().zip(isup).enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isup), _mm512_mul_ps(d, row_scale(i, s)), *acc);
            }
            if MINS {
                for b in 0..bps {
                    let m = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(sub_scales(sb.add(head_bytes + b * block_bytes + TILE))));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fnmadd_ps(m, row_scaled_sum(i, s * bps + b), *acc);
                    }
                }
            }
        } else {
            let isum = block_sums::<R, BITS, BLOCK>(sb.add(head_bytes), xv.add(s * BLOCK), k);
            for (i, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
                let scale = _mm512_mul_ps(d, row_scale(i, s));
                if MINS {
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, *acc);
                    *acc = _mm512_fnmadd_ps(dmin, row_scaled_sum(i, s), *acc);
                } else {
                    let centred = _mm512_sub_epi32(isum, _mm512_set1_epi32(c.offset * row_sum(i, s)));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(centred), scale, *acc);
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(y.add(i * c.ldy), c.mask, *acc);
    }
}
