//! `QuantMatrix::matmul`: output tiles split across threads, each tile's rows run by the
//! chosen kernel.

use super::quant_matrix::{QuantMatrix, TILE};
use super::rows::QuantizedRows;
use super::CpuKernel;
use rayon::prelude::*;

/// Multiply-adds below which a product runs on the calling thread alone (about 5 us of work,
/// the cost of handing work to another thread and waiting for it).
const MIN_TASK_MACS: usize = 1 << 20;

impl QuantMatrix {
    /// `y[:, col0 .. col0 + n] = x W^T` for quantized rows `x` (`[m, k]`); `y` is row-major
    /// with row stride `ldy`. Output tiles are split across rayon's threads.
    pub fn matmul(&self, x: &QuantizedRows, y: &mut [f32], ldy: usize, col0: usize, kernel: CpuKernel) {
        assert_eq!(x.k(), self.k(), "rows have {} inputs, the matrix {}", x.k(), self.k());
        assert_eq!(x.blocks(), self.format().row_blocks(), "rows quantized in blocks {:?}, the matrix needs {:?}", x.blocks(), self.format().row_blocks());
        assert!(col0 + self.n() <= ldy && y.len() >= x.m() * ldy, "output too small");
        assert!(kernel.available(), "{kernel:?} does not run on this CPU");
        let y_addr = y.as_mut_ptr() as usize;
        let tiles = self.n().div_ceil(TILE);
        // Row chunks keep a block of activations in L2 while every tile streams past it.
        const ROW_CHUNK: usize = 64;
        for r0 in (0..x.m()).step_by(ROW_CHUNK) {
            let rows = ROW_CHUNK.min(x.m() - r0);
            // One task per thread at most, and none smaller than MIN_TASK_MACS: waking a
            // thread costs more than a small product (a decode row of a 135M model).
            let tasks = (rows * self.n() * self.k() / MIN_TASK_MACS).clamp(1, rayon::current_num_threads());
            let run = |t: usize| {
                let cols = TILE.min(self.n() - t * TILE);
                // SAFETY: each task writes only its tile's columns of rows r0..r0 + rows, all
                // within `y` (checked above).
                let y = unsafe { std::slice::from_raw_parts_mut((y_addr as *mut f32).add(r0 * ldy + col0 + t * TILE), (rows - 1) * ldy + cols) };
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the kernel is available (asserted above).
                    CpuKernel::Vnni => unsafe { super::vnni::tile_rows(self, t, x, r0, rows, y, ldy, cols) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    CpuKernel::Avx2 => unsafe { super::avx2::tile_rows(self, t, x, r0, rows, y, ldy, cols) },
                    _ => super::portable::tile_rows(self, t, x, r0, rows, y, ldy, cols),
                }
            };
            match tasks {
                1 => (0..tiles).for_each(run),
                // Four chunks per task, so a thread that lost its core to another process holds back
                // a quarter of its share, not all of it.
                _ => (0..tiles).into_par_iter().with_min_len((tiles / (4 * tasks)).max(1)).for_each(run),
            }
        }
    }
}
