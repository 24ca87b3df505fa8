//! The integer kernel in plain Rust: the same block arithmetic as the SIMD kernels (integer
//! dot products per block, then `A dx isum - B dx sum` in f32 with the same fused
//! multiply-adds, so the same bits), for CPUs without them. Each
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
    let nb = x.blocks();
    let mut acc = vec![[0f32; TILE]; rows];
    let mut unpacked = [[0i16; 32]; TILE];
    let mut xb = [0i16; 32];
    for s in 0..w.k() / l.super_k {
        let sb = &tile[s * l.super_bytes()..];
        let blocks = &sb[2 * TILE * (1 + l.mins as usize)..];
        for b in 0..l.blocks_per_super() {
            let blk = &blocks[b * l.block_bytes()..];
            let codes = &blk[if l.sub_scales { TILE * (1 + l.mins as usize) } else { 0 }..];
            let mut a = [0f32; TILE];
            let mut m = [0f32; TILE];
            unpack(l.bits, l.block, codes, &mut unpacked);
            for col in 0..TILE {
                let d = f16_at(sb, col);
                a[col] = if l.sub_scales { d * blk[col] as i8 as f32 } else { d };
                if l.mins {
                    let dmin = f16_at(sb, TILE + col);
                    m[col] = if l.sub_scales { dmin * blk[TILE + col] as i8 as f32 } else { dmin };
                }
            }
            let kb = s * l.blocks_per_super() + b;
            for (r, acc) in (r0..r0 + rows).zip(acc.iter_mut()) {
                for (v, &q) in xb.iter_mut().zip(&x.values[r * x.k() + kb * l.block..][..l.block]) {
                    *v = q as i16;
                }
                let (dx, sum, dxs) = (x.scales[r * nb + kb], x.sums[r * nb + kb], x.scaled_sums[r * nb + kb]);
                for col in 0..TILE {
                    let isum: i32 = unpacked[col][..l.block].iter().zip(&xb[..l.block]).map(|(&c, &v)| c as i32 * v as i32).sum();
                    // Fused multiply-adds in the SIMD kernels' order: the same bits as theirs.
                    acc[col] = if l.mins { (-m[col]).mul_add(dxs, (isum as f32).mul_add(a[col] * dx, acc[col])) } else { ((isum - l.offset * sum) as f32).mul_add(a[col] * dx, acc[col]) };
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        y[i * ldy..][..cols].copy_from_slice(&acc[..cols]);
    }
}
