//! The integer kernel in plain Rust: the same block arithmetic as the SIMD kernels (integer
//! dot products per block, integer sub-scales for the K-quants, then the same f32 fused
//! multiply-adds in the same order, so the same bits), for CPUs without them. Each
//! block's codes are unpacked once to i16 for all rows of the call, so the inner loop is a
//! dot product of two i16 slices that the compiler vectorises (`pmaddwd` even on SSE2).

use super::quant_matrix::{f16_at, unpack, QuantMatrix, TILE};
use super::rows::QuantizedRows;

/// Rows `r0 .. r0 + rows` of `x` times tile `t` of `w`: `cols` outputs per row into `y` (row
/// stride `ldy`, starting at the tile's first column).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_rows(w: &QuantMatrix, t: usize, x: &QuantizedRows, r0: usize, rows: usize, y: &mut [f32], ldy: usize, cols: usize) {
    let l = w.layout();
    let tile = w.tile(t);
    let (n_scales, n_sums) = (x.scales_per_row(), x.sums_per_row());
    let mut acc = vec![[0f32; TILE]; rows];
    let mut isup = vec![[0i32; TILE]; rows];
    let mut unpacked = [[0i16; 32]; TILE];
    let mut xb = [0i16; 32];
    for s in 0..w.k() / l.super_k {
        let sb = &tile[s * l.super_bytes()..];
        let d: [f32; TILE] = std::array::from_fn(|col| f16_at(sb, col));
        let dmin: [f32; TILE] = std::array::from_fn(|col| if l.mins { f16_at(sb, TILE + col) } else { 0.0 });
        let block = |b: usize| &sb[l.head_bytes() + b * l.block_bytes()..];
        isup.iter_mut().for_each(|v| *v = [0; TILE]);
        for b in 0..l.blocks_per_super() {
            let blk = block(b);
            unpack(l.bits, l.block, &blk[l.sub_bytes()..], &mut unpacked);
            let kb = s * l.blocks_per_super() + b;
            for (r, (acc, isup)) in (r0..r0 + rows).zip(acc.iter_mut().zip(isup.iter_mut())) {
                for (v, &q) in xb.iter_mut().zip(&x.values[r * x.k() + kb * l.block..][..l.block]) {
                    *v = q as i16;
                }
                let sum = x.sums[r * n_sums + kb];
                for col in 0..TILE {
                    let isum: i32 = unpacked[col][..l.block].iter().zip(&xb[..l.block]).map(|(&c, &v)| c as i32 * v as i32).sum();
                    let centred = if l.mins { isum } else { isum - l.offset * sum };
                    if l.sub_scales {
                        // Under 2^28 over a super-block (at most 6-bit codes, 8-bit sub-scales): no overflow.
                        isup[col] += centred * blk[col] as i8 as i32;
                    } else {
                        // Fused multiply-adds in the SIMD kernel's order: the same bits as the SIMD kernel's.
                        let dx = x.scales[r * n_scales + s];
                        acc[col] = (centred as f32).mul_add(d[col] * dx, acc[col]);
                        if l.mins {
                            acc[col] = (-dmin[col]).mul_add(x.scaled_sums[r * n_sums + kb], acc[col]);
                        }
                    }
                }
            }
        }
        if l.sub_scales {
            for (r, (acc, isup)) in (r0..r0 + rows).zip(acc.iter_mut().zip(&isup)) {
                let dx = x.scales[r * n_scales + s];
                for col in 0..TILE {
                    acc[col] = (isup[col] as f32).mul_add(d[col] * dx, acc[col]);
                }
            }
            if l.mins {
                for b in 0..l.blocks_per_super() {
                    let m: [f32; TILE] = std::array::from_fn(|col| dmin[col] * block(b)[TILE + col] as i8 as f32);
                    for (r, acc) in (r0..r0 + rows).zip(acc.iter_mut()) {
                        let ss = x.scaled_sums[r * n_sums + s * l.blocks_per_super() + b];
                        for col in 0..TILE {
                            acc[col] = (-m[col]).mul_add(ss, acc[col]);
                        }
                    }
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        y[i * ldy..][..cols].copy_from_slice(&acc[..cols]);
    }
}
