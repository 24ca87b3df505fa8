//! The gated MLP, `down(act(gate x) * up x)`, with gate and up stacked in one projection.
//!
//! On the int8 kernels the rows run in chunks: a chunk's gate and up outputs and its activated
//! product live in buffers reused from chunk to chunk (a few MB, in cache; the product's int8
//! rows, a quarter of its size, are made per chunk), and only the down projection's output
//! becomes a tensor. Unfused, a 1,000-token
//! prefill of a 1.5B model allocates ~140 MB per layer for `gate_up`, `act(gate)` and the
//! product, each past the allocator's mmap threshold, so every step pays fresh page faults
//! for them. Each row's arithmetic is the same whatever the rows beside it. The activation is
//! `Activation::apply`: candle's `gelu` bit for bit, SiLU within a few ulp of candle's (its
//! `exp` vectorises); the unfused path (dense weights, GPUs) runs candle's ops.

use super::Activation;
use crate::projection::{cpu_f32, with_slice, Projection};
use candle_core::{Module, Result, Tensor};
use rayon::prelude::*;

/// Rows per chunk: 128 rows of a 1.5B model's gate and up outputs are 9 MB.
const CHUNK_ROWS: usize = 128;

/// Activated values below which one thread applies the activation (a decode step's rows).
const PARALLEL_VALUES: usize = 1 << 16;

pub(crate) struct GatedMlp {
    /// gate and up stacked: `[rows, 2 intermediate]`.
    gate_up: Projection,
    down: Projection,
    activation: Activation,
}

impl GatedMlp {
    pub fn new(gate_up: Projection, down: Projection, activation: Activation) -> Self {
        Self { gate_up, down, activation }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (Some(gate_up), Some(down)) = (self.gate_up.int8_parts(), self.down.int8_parts()) else {
            return self.forward_unfused(x);
        };
        let (x, m) = cpu_f32(x)?;
        let k = x.dim(1)?;
        let inter = gate_up.out() / 2;
        let out = down.out();
        let chunk = CHUNK_ROWS.min(m).max(1);
        let mut y = vec![0f32; m * out];
        let mut gu = vec![0f32; chunk * 2 * inter];
        let mut h = vec![0f32; chunk * inter];
        with_slice(&x, |data| {
            for r0 in (0..m).step_by(chunk) {
                let rows = chunk.min(m - r0);
                let (gu, h) = (&mut gu[..rows * 2 * inter], &mut h[..rows * inter]);
                gate_up.matmul_into(&data[r0 * k..(r0 + rows) * k], rows, gu);
                self.activate(gu, h, inter);
                down.matmul_into(h, rows, &mut y[r0 * out..(r0 + rows) * out]);
            }
        })?;
        Tensor::from_vec(y, (m, out), x.device())
    }

    /// `h = act(gate) * up` per row of `gu` (`[gate | up]`).
    fn activate(&self, gu: &[f32], h: &mut [f32], inter: usize) {
        let act = self.activation;
        let row = |(h, gu): (&mut [f32], &[f32])| {
            let (gate, up) = gu.split_at(inter);
            act.gated(gate, up, h);
        };
        if h.len() < PARALLEL_VALUES {
            h.chunks_mut(inter).zip(gu.chunks(2 * inter)).for_each(row);
        } else {
            h.par_chunks_mut(inter).zip(gu.par_chunks(2 * inter)).for_each(row);
        }
    }

    /// Through candle's ops (dense weights, candle's blocks, GPUs).
    fn forward_unfused(&self, x: &Tensor) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        let inter = gu.dim(1)? / 2;
        let gate = gu.narrow(1, 0, inter)?;
        let gate = match self.activation {
            Activation::Silu => candle_nn::ops::silu(&gate)?,
            Activation::GeluTanh => gate.gelu()?,
        };
        self.down.forward(&(gate * gu.narrow(1, inter, inter)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{MatmulPolicy, WeightCopy};
    use assay_kernels::cpu::CpuKernel;
    use candle_core::Device;

    #[test]
    fn activations_follow_candle() -> Result<()> {
        let v: Vec<f32> = (-20000..20000).map(|i| i as f32 / 197.0).collect();
        let t = Tensor::new(v.as_slice(), &Device::Cpu)?;
        let ours = |act: Activation| v.iter().map(|&x| act.apply(x)).collect::<Vec<f32>>();
        assert_eq!(ours(Activation::GeluTanh), t.gelu()?.to_vec1::<f32>()?, "GELU: candle's bits");
        for ((x, a), b) in v.iter().zip(ours(Activation::Silu)).zip(candle_nn::ops::silu(&t)?.to_vec1::<f32>()?) {
            // Below x = -87 the exact value (|x| e^x < 1e-35) is rounded to 0 or a tiny number.
            let close = a.to_bits().abs_diff(b.to_bits()) <= 4 || (*x < -87.0 && a.abs() < 1e-35 && b.abs() < 1e-35);
            assert!(close, "SiLU({x}): {a} vs candle's {b}");
        }
        Ok(())
    }

    /// The fused int8 path gives, for any number of rows (chunks and tails included) and both
    /// activations, the bits of the same steps run one after the other on whole tensors.
    #[test]
    fn the_fused_path_gives_the_stepwise_bits() -> Result<()> {
        let dev = Device::Cpu;
        let (hidden, inter) = (64, 96);
        let gate_up = Tensor::randn(0f32, 1.0, (2 * inter, hidden), &dev)?;
        let down = Tensor::randn(0f32, 1.0, (hidden, inter), &dev)?;
        for kernel in CpuKernel::all_available() {
            let policy = MatmulPolicy { weights: WeightCopy::Int8Blocks(kernel), fused_attention: true };
            for act in [Activation::Silu, Activation::GeluTanh] {
                let mlp = GatedMlp::new(Projection::from_dense(gate_up.clone(), None, policy)?, Projection::from_dense(down.clone(), None, policy)?, act);
                assert!(mlp.gate_up.int8_parts().is_some() && mlp.down.int8_parts().is_some());
                for rows in [1, 5, CHUNK_ROWS, CHUNK_ROWS + 3, 2 * CHUNK_ROWS + 1] {
                    let x = Tensor::randn(0f32, 1.0, (rows, hidden), &dev)?;
                    let fused = mlp.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
                    let gu = mlp.gate_up.forward(&x)?.to_vec2::<f32>()?;
                    let h: Vec<f32> = gu.iter().flat_map(|r| (0..inter).map(|j| act.apply(r[j]) * r[inter + j])).collect();
                    let stepwise = mlp.down.forward(&Tensor::from_vec(h, (rows, inter), &dev)?)?.flatten_all()?.to_vec1::<f32>()?;
                    assert_eq!(fused, stepwise, "{kernel:?} {act:?} rows {rows}");
                }
            }
        }
        Ok(())
    }
}
