//! The AVX2 kernel, for x86 CPUs without AVX-512 (most desktop parts, Zen 2-3): the VNNI
//! kernel's block arithmetic (`vnni.rs`) on 256-bit registers, a tile's 16 columns as two
//! halves of 8. `vpmaddubsw` multiplies unsigned codes by int8 activations into i16 pairs and
//! `vpmaddwd` by ones sums those into i32 lanes of 4 inputs, where VNNI's `vpdpbusd` does
//! both. An i16 pair holds 2 x 63 x 127 (6-bit codes), not 2 x 255 x 127, so Q8_0's codes
//! are recentred to int8 first and multiplied by magnitude and sign (`SIGNED`): its sums come
//! back centred. Every integer sum equals the VNNI kernel's, and the f32 steps are the same
//! fused multiply-adds in the same order, so the results are the same bits.
//!
//! Monomorphised per format and per row count, as the VNNI kernel.

use super::quant_matrix::{BlockFormat, QuantMatrix, TILE};
use super::rows::QuantizedRows;
use std::arch::x86_64::*;

/// Rows per kernel call: 16 registers hold one row's block sums, super-block sums and
/// accumulators (2 each) for a few rows; more rows spill to L1.
const MR: usize = 4;

/// How far ahead of its loads the kernel asks for a tile's codes (see `vnni.rs`).
const PREFETCH_AHEAD: usize = 4096;

/// A tile's 16 columns: two registers of 8 lanes.
type Halves<T> = [T; 2];

/// Rows `r0 .. r0 + rows` of `x` times tile `t` of `w` (see `portable::tile_rows`).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `y` must hold `rows` rows of stride `ldy` with
/// `cols` (at most 16) values each.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tile_rows(w: &QuantMatrix, t: usize, x: &QuantizedRows, r0: usize, rows: usize, y: &mut [f32], ldy: usize, cols: usize) {
    let call = Call { tile: w.tile(t).as_ptr(), n_super: w.k() / w.layout().super_k, offset: w.layout().offset, x, ldy, cols };
    let mut r = r0;
    while r < r0 + rows {
        let mr = MR.min(r0 + rows - r);
        let out = y.as_mut_ptr().add((r - r0) * ldy);
        match w.format() {
            BlockFormat::Q8_0 => by_rows::<8, 32, false, false, true>(&call, mr, r, out),
            BlockFormat::Q4_0 => by_rows::<4, 32, false, false, false>(&call, mr, r, out),
            BlockFormat::Q4_1 => by_rows::<4, 32, false, true, false>(&call, mr, r, out),
            BlockFormat::Q5_0 => by_rows::<8, 32, false, false, false>(&call, mr, r, out),
            BlockFormat::Q5_1 => by_rows::<8, 32, false, true, false>(&call, mr, r, out),
            BlockFormat::Q4K => by_rows::<4, 32, true, true, false>(&call, mr, r, out),
            BlockFormat::Q5K => by_rows::<8, 32, true, true, false>(&call, mr, r, out),
            BlockFormat::Q6K => by_rows::<8, 16, true, false, false>(&call, mr, r, out),
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
    cols: usize,
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn by_rows<const BITS: usize, const BLOCK: usize, const SUB: bool, const MINS: bool, const SIGNED: bool>(c: &Call, mr: usize, r: usize, y: *mut f32) {
    match mr {
        4 => kernel::<4, BITS, BLOCK, SUB, MINS, SIGNED>(c, r, y),
        3 => kernel::<3, BITS, BLOCK, SUB, MINS, SIGNED>(c, r, y),
        2 => kernel::<2, BITS, BLOCK, SUB, MINS, SIGNED>(c, r, y),
        _ => kernel::<1, BITS, BLOCK, SUB, MINS, SIGNED>(c, r, y),
    }
}

#[inline(always)]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

/// `acc` plus the sums of 4 products of unsigned `codes` and int8 `x` per i32 lane.
#[inline(always)]
unsafe fn dot4(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(codes, x), _mm256_set1_epi16(1)))
}

/// One block's integer dot products for `R` rows (`xb`, rows `k` apart); with `SIGNED`, of
/// the codes less 128.
#[inline(always)]
unsafe fn block_sums<const R: usize, const BITS: usize, const BLOCK: usize, const SIGNED: bool>(codes: *const u8, xb: *const i8, k: usize) -> [Halves<__m256i>; R] {
    let mut isum = [[_mm256_setzero_si256(); 2]; R];
    if BITS == 8 {
        for g in 0..BLOCK / 4 {
            _mm_prefetch::<_MM_HINT_T0>(codes.add(g * 64 + PREFETCH_AHEAD) as *const i8);
            for h in 0..2 {
                let wv = _mm256_loadu_si256(codes.add(g * 64 + h * 32) as *const __m256i);
                // Recentred codes as magnitudes, their signs moved onto the activations.
                let q = if SIGNED { _mm256_xor_si256(wv, _mm256_set1_epi8(i8::MIN)) } else { wv };
                let magnitude = if SIGNED { _mm256_abs_epi8(q) } else { wv };
                for (i, s) in isum.iter_mut().enumerate() {
                    let xv = broadcast4(xb.add(i * k + 4 * g));
                    s[h] = dot4(s[h], magnitude, if SIGNED { _mm256_sign_epi8(xv, q) } else { xv });
                }
            }
        }
    } else {
        let low_nibbles = _mm256_set1_epi8(0x0F);
        for g in 0..BLOCK / 8 {
            _mm_prefetch::<_MM_HINT_T0>(codes.add(g * 64 + PREFETCH_AHEAD) as *const i8);
            for h in 0..2 {
                let packed = _mm256_loadu_si256(codes.add(g * 64 + h * 32) as *const __m256i);
                let lo = _mm256_and_si256(packed, low_nibbles);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low_nibbles);
                for (i, s) in isum.iter_mut().enumerate() {
                    s[h] = dot4(s[h], lo, broadcast4(xb.add(i * k + 8 * g)));
                    s[h] = dot4(s[h], hi, broadcast4(xb.add(i * k + 8 * g + 4)));
                }
            }
        }
    }
    isum
}

/// Sixteen i8 sub-scales (or mins) as i32 lanes.
#[inline(always)]
unsafe fn sub_scales(p: *const u8) -> Halves<__m256i> {
    [0, 1].map(|h| _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(8 * h) as *const __m128i)))
}

/// Sixteen f16 values as f32 lanes.
#[inline(always)]
unsafe fn halfs(p: *const u8) -> Halves<__m256> {
    [0, 1].map(|h| _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * h) as *const __m128i)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<const R: usize, const BITS: usize, const BLOCK: usize, const SUB: bool, const MINS: bool, const SIGNED: bool>(c: &Call, r: usize, y: *mut f32) {
    let x = c.x;
    let k = x.k();
    let (n_scales, n_sums) = (x.scales_per_row(), x.sums_per_row());
    let xv = x.values.as_ptr().add(r * k);
    let sub_bytes = if SUB { TILE * (1 + MINS as usize) } else { 0 };
    let block_bytes = sub_bytes + TILE * BLOCK * BITS / 8;
    let head_bytes = 2 * TILE * (1 + MINS as usize);
    let bps = if SUB { 256 / BLOCK } else { 1 };
    let super_bytes = head_bytes + bps * block_bytes;
    let row_scale = |i: usize, s: usize| _mm256_set1_ps(*x.scales.get_unchecked((r + i) * n_scales + s));
    let row_offset = |i: usize, kb: usize| _mm256_set1_epi32(c.offset * *x.sums.get_unchecked((r + i) * n_sums + kb));
    let row_scaled_sum = |i: usize, kb: usize| _mm256_set1_ps(*x.scaled_sums.get_unchecked((r + i) * n_sums + kb));
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for s in 0..c.n_super {
        let sb = c.tile.add(s * super_bytes);
        let d = halfs(sb);
        let dmin = if MINS { halfs(sb.add(2 * TILE)) } else { [_mm256_setzero_ps(); 2] };
        if SUB {
            // The sub-scales multiply integer sums; the row is rescaled once per super-block.
            let mut isup = [[_mm256_setzero_si256(); 2]; R];
            for b in 0..bps {
                let blk = sb.add(head_bytes + b * block_bytes);
                let sc = sub_scales(blk);
                let kb = s * bps + b;
                let isum = block_sums::<R, BITS, BLOCK, SIGNED>(blk.add(sub_bytes), xv.add(kb * BLOCK), k);
                for (i, (isup, isum)) in isup.iter_mut().zip(isum).enumerate() {
                    for h in 0..2 {
                        let centred = if MINS { isum[h] } else { _mm256_sub_epi32(isum[h], row_offset(i, kb)) };
                        isup[h] = _mm256_add_epi32(isup[h], _mm256_mullo_epi32(centred, sc[h]));
                    }
                }
            }
            for (i, (acc, isup)) in acc.iter_mut().zip(isup).enumerate() {
                for h in 0..2 {
                    acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isup[h]), _mm256_mul_ps(d[h], row_scale(i, s)), acc[h]);
                }
            }
            if MINS {
                for b in 0..bps {
                    let mins = sub_scales(sb.add(head_bytes + b * block_bytes + TILE));
                    let m = [0, 1].map(|h| _mm256_mul_ps(dmin[h], _mm256_cvtepi32_ps(mins[h])));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        for h in 0..2 {
                            acc[h] = _mm256_fnmadd_ps(m[h], row_scaled_sum(i, s * bps + b), acc[h]);
                        }
                    }
                }
            }
        } else {
            let isum = block_sums::<R, BITS, BLOCK, SIGNED>(sb.add(head_bytes), xv.add(s * BLOCK), k);
            for (i, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
                for h in 0..2 {
                    let scale = _mm256_mul_ps(d[h], row_scale(i, s));
                    if MINS {
                        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h]), scale, acc[h]);
                        acc[h] = _mm256_fnmadd_ps(dmin[h], row_scaled_sum(i, s), acc[h]);
                    } else {
                        let centred = if SIGNED { isum[h] } else { _mm256_sub_epi32(isum[h], row_offset(i, s)) };
                        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(centred), scale, acc[h]);
                    }
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        let mut out = [0f32; TILE];
        _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        std::ptr::copy_nonoverlapping(out.as_ptr(), y.add(i * c.ldy), c.cols);
    }
}
