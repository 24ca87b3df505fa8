//! Time of `QuantMatrix::matmul` alone (activations quantized, then the product) for the
//! 1.5B judge's Q4_K and Q6_K shapes at 1, 16 and 64 rows, on every kernel this CPU runs:
//! the kernel without the model around it. Weights are random blocks (timing does not
//! depend on their values).
//!
//!   cargo bench -p assay-kernels --bench quant_matmul [-- REPEATS]

use assay_kernels::cpu::{BlockFormat, CpuKernel, QuantMatrix, QuantizedRows};
use std::time::Instant;

/// Random GGUF blocks of `format` for `[n, k]`, each block's f16 scales set to 2^-7.
fn random_blocks(format: BlockFormat, n: usize, k: usize) -> Vec<u8> {
    let mut s = 12345u64;
    let mut bytes: Vec<u8> = (0..format.gguf_bytes(n, k))
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as u8
        })
        .collect();
    let block_bytes = format.gguf_bytes(1, format.super_k());
    for block in bytes.chunks_mut(block_bytes) {
        // Where each format keeps its f16 scale(s): Q6_K at the end, the others first.
        let at: &[usize] = if format == BlockFormat::Q6K { &[208] } else { &[0, 2] };
        for &i in at {
            block[i..i + 2].copy_from_slice(&0x2000u16.to_le_bytes());
        }
    }
    bytes
}

fn main() {
    let repeats: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(15);
    let shapes = [("gate_up", BlockFormat::Q4K, 17920, 1536), ("down", BlockFormat::Q6K, 1536, 8960), ("lm_head", BlockFormat::Q6K, 151936, 1536)];
    println!("{:8} {:7} {:>4} {:>10} {:>10} {:>9}", "shape", "kernel", "rows", "min ms", "median ms", "GMAC/s");
    for (name, format, n, k) in shapes {
        let w = QuantMatrix::from_gguf(format, &random_blocks(format, n, k), n, k).expect("well-formed blocks");
        for kernel in CpuKernel::all_available() {
            for m in [1usize, 16, 64] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 2654435761) % 1000) as f32 / 250.0 - 2.0).collect();
                let mut y = vec![0f32; m * n];
                let mut ms: Vec<f64> = (0..repeats)
                    .map(|_| {
                        let t = Instant::now();
                        w.matmul(&QuantizedRows::new(&x, m, k, format.row_blocks()), &mut y, n, 0, kernel);
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                ms.sort_by(f64::total_cmp);
                let gmac_s = (m * n * k) as f64 / 1e6 / ms[0];
                println!("{name:8} {:7} {m:>4} {:>10.3} {:>10.3} {gmac_s:>9.0}", format!("{kernel:?}"), ms[0], ms[repeats / 2]);
            }
        }
    }
}
