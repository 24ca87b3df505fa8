//! Activations quantized per block for the integer kernels: each block of a row gets a scale
//! `dx = max |x| / 127` and int8 values `round(x / dx)` (ggml's Q8 rows), plus the values' sum,
//! which the kernels need for the weights' offsets and mins. Each row is quantized on its own,
//! so a row's values never depend on the rows beside it.

use rayon::prelude::*;

/// `m` rows of `k` activations in int8 blocks of `block` values.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    m: usize,
    k: usize,
    block: usize,
    /// `[m, k]` row-major.
    pub(crate) values: Vec<i8>,
    /// `[m, k / block]`: each block's scale.
    pub(crate) scales: Vec<f32>,
    /// `[m, k / block]`: each block's sum of values.
    pub(crate) sums: Vec<i32>,
    /// `[m, k / block]`: `scale * sum` (the min term's factor).
    pub(crate) scaled_sums: Vec<f32>,
}

impl QuantizedRows {
    /// Quantizes `x` (`[m, k]` row-major, `k` a multiple of `block`).
    pub fn new(x: &[f32], m: usize, k: usize, block: usize) -> Self {
        assert!(block > 0 && k.is_multiple_of(block) && x.len() == m * k, "x is not [m, k] in blocks of {block}");
        let nb = k / block;
        let mut values = vec![0i8; m * k];
        let mut scales = vec![0f32; m * nb];
        let mut sums = vec![0i32; m * nb];
        // A few rows (decode) are quicker on the calling thread than handed to the pool.
        if m * k < 1 << 16 {
            values.chunks_mut(block).zip(scales.iter_mut()).zip(sums.iter_mut()).zip(x.chunks(block)).for_each(|(((q, d), s), x)| (*d, *s) = quantize_block(x, q));
        } else {
            values.par_chunks_mut(block).zip(scales.par_iter_mut()).zip(sums.par_iter_mut()).zip(x.par_chunks(block)).with_min_len(64).for_each(|(((q, d), s), x)| (*d, *s) = quantize_block(x, q));
        }
        let scaled_sums = scales.iter().zip(&sums).map(|(d, s)| d * *s as f32).collect();
        Self { m, k, block, values, scales, sums, scaled_sums }
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn block(&self) -> usize {
        self.block
    }

    pub(crate) fn blocks(&self) -> usize {
        self.k / self.block
    }
}

/// One block of `x` into `q`: its scale and the sum of its values.
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in q.iter_mut().zip(x) {
        // Round half away from zero, as `f32::round`, without its libm call (no SSE4.1 in the
        // baseline target): truncating casts vectorise.
        let r = v * inv;
        *q = (r + 0.5f32.copysign(r)) as i8;
        sum += *q as i32;
    }
    (amax / 127.0, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..3 * 64).map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0).collect();
        let q = QuantizedRows::new(&x, 3, 64, 32);
        for (i, &v) in x.iter().enumerate() {
            let b = i / 32;
            let back = q.values[i] as f32 * q.scales[b];
            assert!((back - v).abs() <= q.scales[b] * 0.5 + 1e-6, "{i}: {back} vs {v}");
        }
        assert_eq!(q.sums[0], q.values[..32].iter().map(|&v| v as i32).sum::<i32>());
    }

    #[test]
    fn a_row_of_zeros_is_zeros() {
        let q = QuantizedRows::new(&[0.0; 32], 1, 32, 16);
        assert!(q.values.iter().all(|&v| v == 0) && q.scales == [0.0, 0.0]);
    }
}
