//! A CPU matrix product for weights that never change: `y = x W^T` with `W` packed once, at
//! load, into panels of 32 output columns laid out k-major, multiplied by an AVX-512
//! micro-kernel (12 rows x 32 columns: 24 of the 32 vector registers hold accumulators, so each
//! panel load feeds 12 rows; 12 rows were 14% faster than 6 on the model's shapes, 14 slower).
//!
//! Why not gemm (candle's CPU matmul)? The gemm crate's AVX-512 kernels need a nightly
//! compiler, so on stable it runs 8-wide AVX2 kernels and re-packs the weight matrix on every
//! call. Prefill and judging are dominated by exactly these products (BENCHMARKS.md). Where
//! AVX-512 is missing, `PackedWeights::new` returns `None` and callers keep candle's path.

use rayon::prelude::*;

/// Columns per panel: two 16-lane vectors.
const NR: usize = 32;
/// Rows per micro-kernel call.
const MR: usize = 12;

/// `W` (`[n, k]`, row-major) packed for the micro-kernel: panel `j` holds columns
/// `32j..32j+32` as `k` consecutive groups of 32 values (zero-padded past `n`).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    n: usize,
    k: usize,
    panels: Vec<f32>,
}

impl PackedWeights {
    /// Packs `w` (`[n, k]` row-major) when this CPU has AVX-512F.
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if !avx512_available() || w.len() != n * k || k == 0 {
            return None;
        }
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0f32; n_panels * k * NR];
        for (j, panel) in panels.chunks_mut(k * NR).enumerate() {
            for c in 0..NR.min(n - j * NR) {
                let row = &w[(j * NR + c) * k..(j * NR + c + 1) * k];
                for (p, &v) in row.iter().enumerate() {
                    panel[p * NR + c] = v;
                }
            }
        }
        Some(Self { n, k, panels })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// `x` (`[m, k]` row-major) times `W^T`: `[m, n]` row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input is not [m, k]");
        let n_panels = self.n.div_ceil(NR);
        let ld = n_panels * NR;
        let mut y = vec![0f32; m * ld];
        // Row chunks keep a block of x in L2 while every panel streams past it; panels are
        // split across threads, each writing its own columns.
        const ROW_CHUNK: usize = 96;
        let y_addr = y.as_mut_ptr() as usize;
        for r0 in (0..m).step_by(ROW_CHUNK) {
            let rows = ROW_CHUNK.min(m - r0);
            (0..n_panels).into_par_iter().for_each(|j| {
                let panel = &self.panels[j * self.k * NR..(j + 1) * self.k * NR];
                let mut r = r0;
                while r < r0 + rows {
                    let mr = MR.min(r0 + rows - r);
                    // SAFETY: avx512f was detected when packing; each (row, panel) block of y
                    // is written by exactly one task, and all indices are within m x ld.
                    unsafe { kernel(&x[r * self.k..], self.k, panel, (y_addr as *mut f32).add(r * ld + j * NR), ld, mr) };
                    r += mr;
                }
            });
        }
        if ld == self.n {
            return y;
        }
        y.chunks(ld).flat_map(|row| row[..self.n].iter().copied()).collect()
    }
}

/// Whether this CPU runs AVX2 and FMA (the 256-bit codes' baseline).
pub fn avx2_fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs AVX-512F (our kernels' baseline).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `mr` (1..=12) rows of `x` (row stride `k`) times one panel, written to `y` (row stride `ld`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(x: &[f32], k: usize, panel: &[f32], y: *mut f32, ld: usize, mr: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let b = panel.as_ptr();
    let a = x.as_ptr();
    macro_rules! rows {
        ($n:expr) => {
            for p in 0..k {
                let b0 = _mm512_loadu_ps(b.add(p * NR));
                let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
                for r in 0..$n {
                    let av = _mm512_set1_ps(*a.add(r * k + p));
                    acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
                }
            }
        };
    }
    // A constant row count lets the compiler keep all accumulators in registers.
    match mr {
        12 => rows!(12),
        11 => rows!(11),
        10 => rows!(10),
        9 => rows!(9),
        8 => rows!(8),
        7 => rows!(7),
        6 => rows!(6),
        5 => rows!(5),
        4 => rows!(4),
        3 => rows!(3),
        2 => rows!(2),
        _ => rows!(1),
    }
    for (r, row) in acc.iter().enumerate().take(mr) {
        _mm512_storeu_ps(y.add(r * ld), row[0]);
        _mm512_storeu_ps(y.add(r * ld + 16), row[1]);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_: &[f32], _: usize, _: &[f32], _: *mut f32, _: usize, _: usize) {
    unreachable!("PackedWeights::new returns None without AVX-512")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_naive_product_for_ragged_shapes() {
        let (n, k) = (45, 37);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5).collect();
        let Some(packed) = PackedWeights::new(&w, n, k) else {
            return; // no AVX-512 on this machine: callers use candle's matmul
        };
        for m in [1, 5, 6, 7, 100] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729) % 97) as f32 / 97.0 - 0.5).collect();
            let y = packed.matmul(&x, m);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
                    assert!((y[i * n + j] - want).abs() < 1e-4, "m {m} ({i}, {j}): {} vs {want}", y[i * n + j]);
                }
            }
        }
    }
}
