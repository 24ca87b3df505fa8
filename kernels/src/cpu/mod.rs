//! CPU kernels: `QuantMatrix` (weights repacked from GGUF blocks) times `QuantizedRows`
//! (activations quantized per block), on the best kernel this CPU runs (AVX512-VNNI, AVX2) or
//! one forced by name;
//! and `PackedWeights`, an f32 GEMM for the exact reference path.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod f32_gemm;
mod matmul;
mod portable;
mod quant_matrix;
mod rows;
#[cfg(target_arch = "x86_64")]
mod vnni;

pub use f32_gemm::{avx2_fma_available, avx512_available, PackedWeights};
pub use quant_matrix::{BlockFormat, QuantMatrix};
pub use rows::{QuantizedRows, RowBlocks};

use std::str::FromStr;

/// Errors of the CPU kernels: inputs that do not describe a matrix they can hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("GGUF block type {0} has no CPU kernel (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)")]
    UnsupportedFormat(String),
    #[error("a [{n}, {k}] matrix of {format:?} needs k to be a multiple of {multiple}")]
    RaggedRows { format: BlockFormat, n: usize, k: usize, multiple: usize },
    #[error("{format:?} [{n}, {k}] needs {want} bytes of blocks, got {got}")]
    WrongSize { format: BlockFormat, n: usize, k: usize, want: usize, got: usize },
    #[error("unknown CPU kernel '{0}' (known: auto, vnni, avx2, portable)")]
    UnknownKernel(String),
    #[error("the {0:?} kernel does not run on this CPU")]
    KernelUnavailable(CpuKernel),
}

/// Which code runs the integer dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuKernel {
    /// AVX512-VNNI (`vpdpbusd`: 64 int8 products per instruction).
    Vnni,
    /// AVX2 (`vpmaddubsw` and `vpmaddwd`: 32 int8 products per instruction pair), for x86
    /// CPUs without AVX-512.
    Avx2,
    /// Plain Rust, any CPU (the compiler vectorises what it can).
    Portable,
}

impl CpuKernel {
    /// The kernel models load with: the one `set_preferred` chose (`--cpu-kernel`), else VNNI
    /// or AVX2, the first the CPU has, else none: dense f32 weights through a float GEMM
    /// measured 10-15x faster than the portable int8 kernel (BENCHMARKS.md), so callers keep
    /// f32 copies there unless the portable kernel is asked for by name.
    pub fn preferred() -> Option<Self> {
        PREFERRED.get().copied().flatten().or_else(|| [Self::Vnni, Self::Avx2].into_iter().find(|k| k.available()))
    }

    /// Chooses the kernel for the whole process by name (`auto`, `vnni`, `avx2`, `portable`; once,
    /// later calls keep the first choice); a named kernel the CPU lacks is an error.
    pub fn set_preferred(name: &str) -> Result<(), KernelError> {
        let kernel = name.parse::<Choice>()?.0;
        if let Some(k) = kernel.filter(|k| !k.available()) {
            return Err(KernelError::KernelUnavailable(k));
        }
        let _ = PREFERRED.set(kernel);
        Ok(())
    }

    pub fn available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Vnni => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2_fma_available() && is_x86_feature_detected!("f16c"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Vnni | Self::Avx2 => false,
        }
    }

    /// Every kernel this CPU runs (tests cover each).
    pub fn all_available() -> Vec<Self> {
        [Self::Vnni, Self::Avx2, Self::Portable].into_iter().filter(|k| k.available()).collect()
    }
}

/// `--cpu-kernel`: `Some(None)` is `auto`.
static PREFERRED: std::sync::OnceLock<Option<CpuKernel>> = std::sync::OnceLock::new();

struct Choice(Option<CpuKernel>);

impl FromStr for Choice {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self, KernelError> {
        match s {
            "auto" => Ok(Self(None)),
            "vnni" => Ok(Self(Some(CpuKernel::Vnni))),
            "avx2" => Ok(Self(Some(CpuKernel::Avx2))),
            "portable" => Ok(Self(Some(CpuKernel::Portable))),
            other => Err(KernelError::UnknownKernel(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quant_matrix::tests::{candle_blocks, FORMATS};
    use super::*;

    fn activations(m: usize, k: usize, seed: usize) -> Vec<f32> {
        (0..m * k).map(|i| (((i + seed) * 2654435761) % 1000) as f32 / 250.0 - 2.0).collect()
    }

    /// f64 products of the dequantized weights and the quantized activations: the value every
    /// kernel computes, up to the order of its f32 sums.
    fn reference(w: &QuantMatrix, x: &QuantizedRows) -> Vec<f64> {
        let rows: Vec<Vec<f32>> = (0..w.n()).map(|r| w.dequantize_row(r)).collect();
        let mut y = vec![0f64; x.m() * w.n()];
        for i in 0..x.m() {
            for (j, row) in rows.iter().enumerate() {
                y[i * w.n() + j] = (0..x.k()).map(|p| row[p] as f64 * x.values[i * x.k() + p] as f64 * x.scales[i * x.scales_per_row() + p / x.blocks().scale] as f64).sum();
            }
        }
        y
    }

    #[test]
    fn every_kernel_computes_the_reference_product_for_every_format_and_ragged_shape() {
        for kernel in CpuKernel::all_available() {
            for (format, dtype) in FORMATS {
                for (n, k) in [(1, 256), (16, 256), (37, 512)] {
                    let (blocks, _) = candle_blocks(dtype, n, k, n as u64);
                    let w = QuantMatrix::from_gguf(format, &blocks, n, k).unwrap();
                    for m in [1, 3, 8, 9, 70] {
                        let x = QuantizedRows::new(&activations(m, k, m), m, k, format.row_blocks());
                        // Written at a column offset inside a wider output, as stacked projections do.
                        let ldy = n + 5;
                        let mut y = vec![f32::NAN; m * ldy];
                        w.matmul(&x, &mut y, ldy, 3, kernel);
                        let want = reference(&w, &x);
                        for i in 0..m {
                            for j in 0..n {
                                let (got, want) = (y[i * ldy + 3 + j] as f64, want[i * n + j]);
                                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()) * k as f64 / 32.0, "{kernel:?} {format:?} n {n} k {k} m {m} ({i}, {j}): {got} vs {want}");
                            }
                            assert!(y[i * ldy..i * ldy + 3].iter().chain(&y[i * ldy + 3 + n..(i + 1) * ldy]).all(|v| v.is_nan()), "wrote outside its columns");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_rows_result_does_not_depend_on_the_rows_beside_it() {
        for kernel in CpuKernel::all_available() {
            for (format, dtype) in FORMATS {
                let (n, k) = (40, 256);
                let (blocks, _) = candle_blocks(dtype, n, k, 3);
                let w = QuantMatrix::from_gguf(format, &blocks, n, k).unwrap();
                let xs = activations(13, k, 1);
                let block = format.row_blocks();
                let mut all = vec![0f32; 13 * n];
                w.matmul(&QuantizedRows::new(&xs, 13, k, block), &mut all, n, 0, kernel);
                for i in 0..13 {
                    let mut one = vec![0f32; n];
                    w.matmul(&QuantizedRows::new(&xs[i * k..(i + 1) * k], 1, k, block), &mut one, n, 0, kernel);
                    assert_eq!(one, all[i * n..(i + 1) * n], "{kernel:?} {format:?} row {i}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        for (format, dtype) in FORMATS {
            let (n, k, m) = (40, 512, 11);
            let (blocks, _) = candle_blocks(dtype, n, k, 5);
            let w = QuantMatrix::from_gguf(format, &blocks, n, k).unwrap();
            let x = QuantizedRows::new(&activations(m, k, 2), m, k, format.row_blocks());
            let outputs: Vec<Vec<f32>> = CpuKernel::all_available()
                .into_iter()
                .map(|kernel| {
                    let mut y = vec![0f32; m * n];
                    w.matmul(&x, &mut y, n, 0, kernel);
                    y
                })
                .collect();
            assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{format:?}: kernels differ");
        }
    }

    #[test]
    fn kernels_are_chosen_by_name() {
        assert!(matches!("portable".parse::<Choice>(), Ok(Choice(Some(CpuKernel::Portable)))));
        assert!(matches!("avx2".parse::<Choice>(), Ok(Choice(Some(CpuKernel::Avx2)))));
        assert!(matches!("auto".parse::<Choice>(), Ok(Choice(None))));
        assert!(matches!(CpuKernel::set_preferred("amx"), Err(KernelError::UnknownKernel(_))));
    }
}
