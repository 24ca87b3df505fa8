//! Activations quantized for the integer kernels: each block of `blocks.scale` inputs of a row
//! gets a scale `dx = max |x| / 127` and int8 values `round(x / dx)` (ggml's Q8 rows), and each
//! run of `blocks.sum` inputs the sum of its values, which the kernels need for the weights'
//! offsets and mins. The K-quants take one scale per 256 inputs (ggml's Q8_K), so their
//! integer sub-scales apply to integer sums and a row is rescaled in f32 once per 256 inputs.
//! Each row is quantized on its own, so a row's values never depend on the rows beside it.

use rayon::prelude::*;

/// How a matrix wants its activations blocked: a scale per `scale` inputs, a sum per `sum`
/// (`sum` divides `scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBlocks {
    pub scale: usize,
    pub sum: usize,
}

/// `m` rows of `k` activations in int8 blocks.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    m: usize,
    k: usize,
    blocks: RowBlocks,
    /// `[m, k]` row-major.
    pub(crate) values: Vec<i8>,
    /// `[m, k / blocks.scale]`: each scale block's scale.
    pub(crate) scales: Vec<f32>,
    /// `[m, k / blocks.sum]`: each sum block's sum of values.
    pub(crate) sums: Vec<i32>,
    /// `[m, k / blocks.sum]`: the sum times its scale (the min term's factor).
    pub(crate) scaled_sums: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes `x` (`[m, k]` row-major, `k` a multiple of `blocks.scale`).
    pub fn new(x: &[f32], m: usize, k: usize, blocks: RowBlocks) -> Self {
        let RowBlocks { scale, sum } = blocks;
        assert!(sum > 0 && scale.is_multiple_of(sum) && k.is_multiple_of(scale) && x.len() == m * k, "x is not [m, k] in blocks of {blocks:?}");
        let mut values = vec![0i8; m * k];
        let mut scales = vec![0f32; m * (k / scale)];
        let mut sums = vec![0i32; m * (k / sum)];
        let quantize = |(((q, d), s), x): ScaleBlock| *d = quantize_block(x, q, s);
        // A few rows (decode) are quicker on the calling thread than handed to the pool.
        if m * k < 1 << 16 {
            values.chunks_mut(scale).zip(scales.iter_mut()).zip(sums.chunks_mut(scale / sum)).zip(x.chunks(scale)).for_each(quantize);
        } else {
            values.par_chunks_mut(scale).zip(scales.par_iter_mut()).zip(sums.par_chunks_mut(scale / sum)).zip(x.par_chunks(scale)).with_min_len((2048 / scale).max(1)).for_each(quantize);
        }
        let scaled_sums = sums.iter().enumerate().map(|(i, s)| scales[i * sum / scale] * *s as f32).collect();
        Self { m, k, blocks, values, scales, sums, scaled_sums }
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn blocks(&self) -> RowBlocks {
        self.blocks
    }

    /// Scale blocks per row.
    pub(crate) fn scales_per_row(&self) -> usize {
        self.k / self.blocks.scale
    }

    /// Sum blocks per row.
    pub(crate) fn sums_per_row(&self) -> usize {
        self.k / self.blocks.sum
    }
}

/// One scale block as the quantizer's iterators yield it: values, scale, sums, inputs.
type ScaleBlock<'a> = (((&'a mut [i8], &'a mut f32), &'a mut [i32]), &'a [f32]);

/// One scale block of `x` into `q`, the sums of its runs of `q.len() / sums.len()` values into
/// `sums`; returns its scale.
fn quantize_block(x: &[f32], q: &mut [i8], sums: &mut [i32]) -> f32 {
    // Written lane-wise so that it vectorises: `f32::max` and a float-to-i8 cast each have
    // semantics (NaN, saturation) that kept this loop scalar and 5% of a prefill.
    let mut lanes = [0f32; 16];
    for chunk in x.chunks(16) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            let a = v.abs();
            // A NaN compares false and is skipped, as `f32::max` skips it.
            *m = if a > *m { a } else { *m };
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let run = q.len() / sums.len();
    for ((q, x), sum) in q.chunks_mut(run).zip(x.chunks(run)).zip(sums) {
        let mut s = 0i32;
        for (q, v) in q.iter_mut().zip(x) {
            // Round half away from zero, as `f32::round`, without its libm call (no SSE4.1 in
            // the baseline target). |r| <= 127 up to rounding; a NaN (from an infinite input)
            // becomes 0, as a saturating cast makes it.
            let r = v * inv;
            let r = if r.abs() <= 128.0 { r + 0.5f32.copysign(r) } else { 0.0 };
            // SAFETY: |r| <= 128.5 fits an i32 (and an i8 after rounding); the checked cast
            // does not vectorise.
            *q = unsafe { r.to_int_unchecked::<i32>() } as i8;
            s += *q as i32;
        }
        *sum = s;
    }
    amax / 127.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..3 * 64).map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0).collect();
        for blocks in [RowBlocks { scale: 32, sum: 32 }, RowBlocks { scale: 64, sum: 16 }] {
            let q = QuantizedRows::new(&x, 3, 64, blocks);
            for (i, &v) in x.iter().enumerate() {
                let d = q.scales[i / blocks.scale];
                let back = q.values[i] as f32 * d;
                assert!((back - v).abs() <= d * 0.5 + 1e-6, "{blocks:?} {i}: {back} vs {v}");
            }
            for (j, &s) in q.sums.iter().enumerate() {
                assert_eq!(s, q.values[j * blocks.sum..][..blocks.sum].iter().map(|&v| v as i32).sum::<i32>(), "{blocks:?} sum {j}");
                assert_eq!(q.scaled_sums[j], s as f32 * q.scales[j * blocks.sum / blocks.scale]);
            }
        }
    }

    #[test]
    fn non_finite_inputs_quantize_to_zeros() {
        let mut x = vec![1.0f32; 64];
        x[3] = f32::INFINITY;
        x[40] = f32::NAN;
        let q = QuantizedRows::new(&x, 1, 64, RowBlocks { scale: 32, sum: 16 });
        // Block 0 (an infinity): scale infinite, values 0. Block 1 (a NaN, skipped by max): 127s, the NaN 0.
        assert!(q.values[..32].iter().all(|&v| v == 0) && q.scales[0].is_infinite());
        assert!(q.values[32..].iter().enumerate().all(|(i, &v)| v == if i == 8 { 0 } else { 127 }), "{:?}", &q.values[32..]);
        assert_eq!(q.scales[1], 1.0 / 127.0);
    }

    #[test]
    fn a_row_of_zeros_is_zeros() {
        let q = QuantizedRows::new(&[0.0; 32], 1, 32, RowBlocks { scale: 16, sum: 16 });
        assert!(q.values.iter().all(|&v| v == 0) && q.scales == [0.0, 0.0]);
    }
}
