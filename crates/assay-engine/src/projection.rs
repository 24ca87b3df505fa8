//! Linear projections `y = x W^T (+ b)`, over whichever copy of the weights the policy keeps.
//!
//! On the CPU the default keeps only the file's quantized blocks, repacked once at load into
//! `assay-kernels`' tiles, and multiplies every call (one decode row or a 2,048-token prefill)
//! by the int8 kernels: activations quantized per block, integer dot products, no f32 copy of
//! any weight. Formats without a kernel (F16, Q5_0's cousins, ...) and float checkpoints are
//! quantized to Q8_0 at load. A row's arithmetic never depends on the other rows of the call,
//! so batched and solo generation agree bit for bit.
//!
//! Two other policies exist for references and accelerators: dense f32 weights (exact
//! arithmetic; on AVX-512 CPUs through `assay_kernels::cpu::PackedWeights`, elsewhere candle's matmul, cuBLAS on
//! GPUs), and candle's own `QMatMul` on the file's blocks with candle's attention ops, which
//! reproduces upstream `quantized_llama` exactly.

use crate::gguf::FileBlocks;
use assay_kernels::cpu::{BlockFormat, CpuKernel, PackedWeights, QuantMatrix, QuantizedRows};
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor};
use std::sync::Arc;

/// Which copy of the weights a model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightCopy {
    /// The file's blocks repacked for the CPU's int8 kernels (the CPU default).
    Int8Blocks(CpuKernel),
    /// f32 values (accelerators; exact CPU references).
    DenseF32,
    /// candle's `QMatMul` on the file's own blocks (upstream candle's arithmetic).
    CandleBlocks,
}

/// How a model's projections and attention compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulPolicy {
    pub weights: WeightCopy,
    /// Attention through the fused CPU kernel (`cpu_attention`) where the CPU runs it; off,
    /// attention uses candle's ops and reproduces upstream's arithmetic exactly.
    pub fused_attention: bool,
}

impl MatmulPolicy {
    /// The CPU: int8 kernels on the file's blocks (the kernel `CpuKernel::preferred` names;
    /// dense f32 where it names none) and fused attention; accelerators: dense weights and
    /// candle's ops.
    pub fn for_device(device: &Device) -> Self {
        match (device.is_cpu(), CpuKernel::preferred()) {
            (true, Some(kernel)) => Self { weights: WeightCopy::Int8Blocks(kernel), fused_attention: true },
            (true, None) => Self::dense_f32(device),
            (false, _) => Self { weights: WeightCopy::DenseF32, fused_attention: false },
        }
    }

    /// Exact f32 arithmetic on the dequantized weights (the reference the quantized paths
    /// are measured against).
    pub fn dense_f32(device: &Device) -> Self {
        Self { weights: WeightCopy::DenseF32, fused_attention: device.is_cpu() }
    }

    /// Every matmul through candle's `QMatMul` on the file's own blocks and attention through
    /// candle's ops, as upstream candle's `quantized_llama` does (reference comparisons).
    pub fn upstream_candle() -> Self {
        Self { weights: WeightCopy::CandleBlocks, fused_attention: false }
    }
}

/// One weight matrix `[out, in]` as its source holds it.
#[derive(Debug, Clone)]
pub enum LoadedWeight {
    /// A GGUF tensor's blocks in the mapped file.
    File(FileBlocks),
    /// Float values (safetensors checkpoints, random weights).
    Dense(Tensor),
}

impl LoadedWeight {
    /// The f32 values on `device`.
    pub fn dense(&self, device: &Device) -> Result<Tensor> {
        match self {
            Self::File(b) => {
                let t = b.qtensor(&Device::Cpu)?.dequantize(device);
                b.release();
                t
            }
            Self::Dense(t) => t.to_device(device)?.to_dtype(DType::F32),
        }
    }

    /// Whether the int8 kernels can hold the matrix: inputs in whole blocks of 32 (the file's
    /// own format, or Q8_0). Others (a checkpoint with an odd width) keep f32 weights.
    pub fn fits_int8_kernels(&self) -> bool {
        let k = match self {
            Self::File(b) => b.dims.last().copied().unwrap_or(0),
            Self::Dense(t) => t.dims().last().copied().unwrap_or(0),
        };
        k > 0 && k.is_multiple_of(32)
    }

    /// The weights in the int8 kernels' tiles: the file's blocks where a kernel reads their
    /// format, else the f32 values quantized to Q8_0.
    pub fn quant_matrix(&self) -> Result<QuantMatrix> {
        let err = |e: assay_kernels::cpu::KernelError| candle_core::Error::Msg(e.to_string());
        if let Self::File(b) = self {
            if let ([n, k], Some(format)) = (b.dims.as_slice(), kernel_format(b.dtype)) {
                if k % format.super_k() == 0 {
                    let m = QuantMatrix::from_gguf(format, b.bytes(), *n, *k).map_err(err);
                    b.release();
                    return m;
                }
            }
        }
        let w = self.dense(&Device::Cpu)?;
        let (n, k) = w.dims2()?;
        QuantMatrix::quantize_q8_0(&w.flatten_all()?.to_vec1::<f32>()?, n, k).map_err(err)
    }

    /// candle's `QMatMul` on the file's blocks (float weights quantized to Q8_0).
    fn candle_qmatmul(&self) -> Result<QMatMul> {
        match self {
            Self::File(b) => {
                let q = QMatMul::from_qtensor(b.qtensor(&Device::Cpu)?);
                b.release();
                q
            }
            Self::Dense(t) => QMatMul::from_qtensor(candle_core::quantized::QTensor::quantize(&t.to_dtype(DType::F32)?, GgmlDType::Q8_0)?),
        }
    }
}

fn kernel_format(dtype: GgmlDType) -> Option<BlockFormat> {
    BlockFormat::from_ggml_name(&format!("{dtype:?}")).ok()
}

/// The copy a projection multiplies by.
#[derive(Debug, Clone)]
enum Weights {
    /// Stacked parts, each written to its own columns of the output.
    Int8 { parts: Vec<Arc<QuantMatrix>>, kernel: CpuKernel },
    /// f32 packed for our AVX-512 kernel.
    Packed(PackedWeights),
    /// f32 for candle's matmul.
    Tensor(Tensor),
    /// candle's quantized matmul per part, outputs concatenated.
    Candle(Vec<QMatMul>),
}

/// `y = x W^T (+ b)` for `x` of shape `[rows, in]`.
#[derive(Debug, Clone)]
pub struct Projection {
    weights: Weights,
    bias: Option<Tensor>,
    out: usize,
}

impl Projection {
    /// Stacks `parts` (weights that read the same input, e.g. q, k and v) into one projection
    /// whose output is their outputs side by side. `bias` is `[sum of out]`.
    pub fn new(parts: Vec<LoadedWeight>, bias: Option<Tensor>, policy: MatmulPolicy, device: &Device) -> Result<Self> {
        let weights = match policy.weights {
            WeightCopy::Int8Blocks(kernel) if device.is_cpu() && parts.iter().all(LoadedWeight::fits_int8_kernels) => {
                Weights::Int8 { parts: parts.iter().map(|p| p.quant_matrix().map(Arc::new)).collect::<Result<_>>()?, kernel }
            }
            WeightCopy::CandleBlocks if device.is_cpu() => Weights::Candle(parts.iter().map(LoadedWeight::candle_qmatmul).collect::<Result<_>>()?),
            _ => {
                let dense: Vec<Tensor> = parts.iter().map(|p| p.dense(device)).collect::<Result<_>>()?;
                let dense = if dense.len() == 1 { dense[0].contiguous()? } else { Tensor::cat(&dense, 0)? };
                let (n, k) = dense.dims2()?;
                match device.is_cpu() {
                    true => PackedWeights::new(&dense.flatten_all()?.to_vec1::<f32>()?, n, k).map_or(Weights::Tensor(dense), Weights::Packed),
                    false => Weights::Tensor(dense),
                }
            }
        };
        Self::from_weights(weights, bias)
    }

    /// A projection over matrices already repacked (shared with another user, e.g. tied
    /// embeddings).
    pub fn from_quant_matrices(parts: Vec<Arc<QuantMatrix>>, kernel: CpuKernel) -> Result<Self> {
        Self::from_weights(Weights::Int8 { parts, kernel }, None)
    }

    fn from_weights(weights: Weights, bias: Option<Tensor>) -> Result<Self> {
        let out = match &weights {
            Weights::Int8 { parts, .. } => parts.iter().map(|p| p.n()).sum(),
            Weights::Packed(p) => p.n(),
            Weights::Tensor(t) => t.dim(0)?,
            Weights::Candle(parts) => parts.iter().map(q_out).sum::<Result<usize>>()?,
        };
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        Ok(Self { weights, bias, out })
    }

    /// A projection of one float weight `[out, in]`.
    pub fn from_dense(weight: Tensor, bias: Option<Tensor>, policy: MatmulPolicy) -> Result<Self> {
        let device = weight.device().clone();
        Self::new(vec![LoadedWeight::Dense(weight)], bias, policy, &device)
    }

    /// Output columns.
    pub fn out_features(&self) -> usize {
        self.out
    }
}

fn q_out(q: &QMatMul) -> Result<usize> {
    match q {
        QMatMul::QTensor(t) => Ok(t.shape().dims()[0]),
        QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dim(0),
    }
}

impl Module for Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weights {
            Weights::Int8 { parts, kernel } => int8_matmul(parts, *kernel, x, self.out)?,
            Weights::Packed(p) => packed_matmul(p, x)?,
            Weights::Tensor(w) => x.matmul(&w.t()?)?,
            Weights::Candle(parts) => match parts.as_slice() {
                [one] => one.forward(x)?,
                parts => Tensor::cat(&parts.iter().map(|q| q.forward(x)).collect::<Result<Vec<_>>>()?, 1)?,
            },
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// The f32 values of `x` (`[m, k]` on the CPU).
pub(crate) fn cpu_f32(x: &Tensor) -> Result<(Tensor, usize)> {
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let m = x.dim(0)?;
    Ok((x, m))
}

pub(crate) fn with_slice<T>(x: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) => Ok(f(&data[layout.start_offset()..layout.start_offset() + x.elem_count()])),
        _ => candle_core::bail!("the CPU kernels need f32 input on the CPU"),
    }
}

/// A projection's int8 parts without a bias: what fused paths (the gated MLP) call directly on
/// slices, without a tensor per intermediate result.
pub(crate) struct Int8Parts<'a> {
    parts: &'a [Arc<QuantMatrix>],
    kernel: CpuKernel,
    out: usize,
}

impl Int8Parts<'_> {
    /// Output columns (the parts' side by side).
    pub fn out(&self) -> usize {
        self.out
    }

    /// `y = x W^T` for `x` `[m, k]` and `y` `[m, out]`, both row-major; `x` is quantized once
    /// per activation blocking the parts need.
    pub fn matmul_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let k = x.len() / m.max(1);
        let mut rows: Vec<QuantizedRows> = Vec::new();
        let mut col0 = 0;
        for p in self.parts {
            let block = p.format().row_blocks();
            let q = match rows.iter().position(|r| r.blocks() == block) {
                Some(i) => &rows[i],
                None => {
                    rows.push(QuantizedRows::new(x, m, k, block));
                    rows.last().expect("just pushed")
                }
            };
            p.matmul(q, y, self.out, col0, self.kernel);
            col0 += p.n();
        }
    }
}

impl Projection {
    /// The int8 parts, when this projection runs on them and has no bias.
    pub(crate) fn int8_parts(&self) -> Option<Int8Parts<'_>> {
        match (&self.weights, &self.bias) {
            (Weights::Int8 { parts, kernel }, None) => Some(Int8Parts { parts, kernel: *kernel, out: self.out }),
            _ => None,
        }
    }
}

/// `x W^T` through the int8 kernels.
fn int8_matmul(parts: &[Arc<QuantMatrix>], kernel: CpuKernel, x: &Tensor, out: usize) -> Result<Tensor> {
    let (x, m) = cpu_f32(x)?;
    let mut y = vec![0f32; m * out];
    with_slice(&x, |data| Int8Parts { parts, kernel, out }.matmul_into(data, m, &mut y))?;
    Tensor::from_vec(y, (m, out), x.device())
}

/// `x W^T` through the packed f32 kernel.
fn packed_matmul(p: &PackedWeights, x: &Tensor) -> Result<Tensor> {
    let (x, m) = cpu_f32(x)?;
    let y = with_slice(&x, |data| p.matmul(data, m))?;
    Tensor::from_vec(y, (m, p.n()), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_width_the_int8_kernels_cannot_block_keeps_f32_weights() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (24, 40), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (3, 40), &dev)?;
        let policy = MatmulPolicy { weights: WeightCopy::Int8Blocks(CpuKernel::Portable), fused_attention: true };
        let got = Projection::from_dense(w.clone(), None, policy)?.forward(&x)?;
        let err = (got - x.matmul(&w.t()?)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-4, "{err}");
        Ok(())
    }

    #[test]
    fn every_policy_computes_the_same_projection() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 64), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 96, &dev)?;
        let mut policies = vec![(MatmulPolicy::dense_f32(&dev), 1e-5), (MatmulPolicy::upstream_candle(), 0.02)];
        for kernel in CpuKernel::all_available() {
            // Q8_0 keeps ~8 bits per weight and per activation: relative error well under 2%.
            policies.push((MatmulPolicy { weights: WeightCopy::Int8Blocks(kernel), fused_attention: true }, 0.02));
        }
        for (policy, tol) in policies {
            let p = Projection::from_dense(w.clone(), Some(b.clone()), policy)?;
            for rows in [1usize, 3, 4, 9] {
                let x = Tensor::randn(0f32, 1.0, (rows, 64), &dev)?;
                let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
                let got = p.forward(&x)?;
                let err = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(err <= tol * scale, "{policy:?} rows {rows}: err {err} scale {scale}");
            }
        }
        Ok(())
    }
}
