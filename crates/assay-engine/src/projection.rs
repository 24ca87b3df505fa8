//! Linear projections with two matmul paths, chosen per call by the number of rows.
//!
//! On the CPU, candle's quantized matmul is fast for one row (decode: a SIMD dot product per
//! output, bound by the bandwidth of the small quantized weights) but has no batched kernel,
//! so a prompt of T tokens costs T matrix-vector products. A dequantized f32 copy of the same
//! weights goes through gemm, which is several times faster per token once T reaches a few
//! rows; on CPUs with AVX-512 the dense copy is packed once for our own kernel
//! (`packed_gemm`), 2.5-3x faster than gemm's AVX2 kernels at 64 rows here. Every source
//! format (Q4_1, Q4_K, f16, ...) is requantized to Q8_0 for the quantized path: Q8_0 has a
//! SIMD dot product in candle and loses almost nothing against the source.
//! BENCHMARKS.md has the crossover measurement behind `MatmulPolicy::dense_min_rows`.

use crate::packed_gemm::PackedWeights;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

/// The format of the quantized copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizedFormat {
    /// Requantize everything to Q8_0 (fast SIMD dot product; the default).
    Q8_0,
    /// Keep the file's own blocks (smaller, and bit-for-bit the arithmetic of llama.cpp-style
    /// engines; Q4_1 has no SIMD path in candle, so slower).
    Source,
}

/// Which weight copies a model keeps and when it uses each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulPolicy {
    /// Calls with at least this many rows use the dense copy; fewer use the quantized one.
    pub dense_min_rows: usize,
    /// Keep a quantized copy for calls with few rows.
    pub keep_quantized: bool,
    pub quantized_format: QuantizedFormat,
    /// Attention through the fused CPU kernel (`cpu_attention`) where the CPU runs it; off,
    /// attention uses candle's ops and reproduces upstream's arithmetic exactly.
    pub fused_attention: bool,
}

impl MatmulPolicy {
    /// Both paths on the CPU; dense only on accelerators, where cuBLAS is fast at every shape
    /// and a second copy would only cost memory.
    pub fn for_device(device: &Device) -> Self {
        if device.is_cpu() {
            Self { dense_min_rows: 4, keep_quantized: true, quantized_format: QuantizedFormat::Q8_0, fused_attention: true }
        } else {
            Self { dense_min_rows: 0, keep_quantized: false, quantized_format: QuantizedFormat::Q8_0, fused_attention: false }
        }
    }

    /// Every matmul through the file's own quantized blocks and attention through candle's
    /// ops, as upstream candle's `quantized_llama` does (reference comparisons).
    pub fn source_quantized() -> Self {
        Self { dense_min_rows: usize::MAX, keep_quantized: true, quantized_format: QuantizedFormat::Source, fused_attention: false }
    }
}

/// Which path a forward pass takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulPath {
    /// Per call, by its number of rows (`MatmulPolicy::dense_min_rows`).
    ByRows,
    /// Always the dense f32 path.
    Dense,
}

/// One weight matrix `[out, in]` as loaded: f32 values, and the file's quantized blocks when
/// the file had them.
#[derive(Debug, Clone)]
pub struct LoadedWeight {
    pub dense: Tensor,
    pub source: Option<std::sync::Arc<QTensor>>,
}

/// The dense copy: packed for our AVX-512 kernel where the CPU has it (then the tensor is not
/// kept), otherwise a tensor for candle's matmul (gemm on CPUs, cuBLAS on GPUs).
#[derive(Debug, Clone)]
enum DenseCopy {
    Packed(PackedWeights),
    Tensor(Tensor),
}

/// `y = x W^T (+ b)` for `x` of shape `[rows, in]`.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The f32 weights `[out, in]` for calls with many rows.
    dense: DenseCopy,
    /// Quantized copy of `dense` for calls with fewer than `dense_min_rows` rows, as row
    /// blocks whose outputs are concatenated (one block unless the source format is kept for
    /// stacked weights).
    quantized: Vec<QMatMul>,
    bias: Option<Tensor>,
    dense_min_rows: usize,
}

impl Projection {
    /// Stacks `parts` (weights that read the same input, e.g. q, k and v) into one projection
    /// whose output is their outputs side by side. `bias` is `[sum of out]`.
    pub fn new(parts: Vec<LoadedWeight>, bias: Option<Tensor>, policy: MatmulPolicy) -> Result<Self> {
        let dense: Vec<Tensor> = parts.iter().map(|p| p.dense.to_dtype(DType::F32)).collect::<Result<_>>()?;
        let dense = if dense.len() == 1 { dense[0].contiguous()? } else { Tensor::cat(&dense, 0)? };
        let q8 = |w: &Tensor| -> Result<QMatMul> { QMatMul::from_qtensor(QTensor::quantize(w, GgmlDType::Q8_0)?) };
        let quantizable = dense.dim(1)? % GgmlDType::Q8_0.block_size() == 0;
        let quantized = match (policy.keep_quantized && quantizable, policy.quantized_format) {
            (false, _) => Vec::new(),
            (true, QuantizedFormat::Q8_0) => vec![q8(&dense)?],
            (true, QuantizedFormat::Source) => parts
                .into_iter()
                .map(|p| match p.source {
                    Some(q) => QMatMul::from_arc(q),
                    None => q8(&p.dense.to_dtype(DType::F32)?),
                })
                .collect::<Result<_>>()?,
        };
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        let (n, k) = dense.dims2()?;
        let packed = match dense.device().is_cpu() {
            true => PackedWeights::new(&dense.flatten_all()?.to_vec1::<f32>()?, n, k),
            false => None,
        };
        let dense = packed.map_or(DenseCopy::Tensor(dense), DenseCopy::Packed);
        Ok(Self { dense, quantized, bias, dense_min_rows: policy.dense_min_rows })
    }

    /// A projection of one float weight `[out, in]`.
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>, policy: MatmulPolicy) -> Result<Self> {
        Self::new(vec![LoadedWeight { dense: weight, source: None }], bias, policy)
    }

    /// True when a call with `rows` rows takes the dense (batched) path.
    pub fn uses_dense(&self, rows: usize) -> bool {
        rows >= self.dense_min_rows || self.quantized.is_empty()
    }
}

impl Projection {
    /// `forward` on a given path (dense, or quantized when there is a quantized copy).
    pub fn forward_on(&self, x: &Tensor, dense: bool) -> Result<Tensor> {
        let y = if dense || self.quantized.is_empty() {
            match &self.dense {
                DenseCopy::Packed(p) => packed_matmul(p, x)?,
                DenseCopy::Tensor(w) => x.matmul(&w.t()?)?,
            }
        } else if let [one] = self.quantized.as_slice() {
            one.forward(x)?
        } else {
            let parts: Vec<Tensor> = self.quantized.iter().map(|q| q.forward(x)).collect::<Result<_>>()?;
            Tensor::cat(&parts, 1)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x W^T` through the packed kernel; `x` is `[m, k]` f32 on the CPU.
fn packed_matmul(p: &PackedWeights, x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let m = x.dim(0)?;
    let (storage, layout) = x.storage_and_layout();
    let y = match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) => {
            let start = layout.start_offset();
            p.matmul(&data[start..start + x.elem_count()], m)
        }
        _ => candle_core::bail!("packed matmul needs f32 input on the CPU"),
    };
    Tensor::from_vec(y, (m, p.n()), x.device())
}

impl Module for Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_on(x, self.uses_dense(x.dim(0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_compute_the_same_projection() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 64), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 96, &dev)?;
        let policy = MatmulPolicy { dense_min_rows: 4, ..MatmulPolicy::for_device(&dev) };
        let p = Projection::from_dense(w.clone(), Some(b.clone()), policy)?;
        for rows in [1usize, 3, 4, 9] {
            let x = Tensor::randn(0f32, 1.0, (rows, 64), &dev)?;
            let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
            let got = p.forward(&x)?;
            let err = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            // Q8_0 keeps ~8 bits per weight and per activation: relative error well under 2%.
            let tol = if p.uses_dense(rows) { 1e-5 } else { 0.02 };
            assert!(err <= tol * scale, "rows {rows}: err {err} scale {scale}");
        }
        Ok(())
    }
}
