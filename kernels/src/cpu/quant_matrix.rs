//! A weight matrix `[n, k]` repacked from GGUF blocks into the kernels' tiles.
//!
//! Every format is read as `w = A * c - B` per block of `block` inputs: `c` an unsigned code
//! (what `vpdpbusd` multiplies), `A` the block's scale (`d`, or `d * sc` for the K-quants
//! whose sub-block scales are 6- or 8-bit integers under one f16 `d` per 256 inputs) and `B`
//! either a per-block min (`dmin * m`; Q4_1's `-m`) or `A * c0` for a constant code offset
//! (Q8_0's 128, Q4_0's 8, Q6_K's 32). The file's own f16 scales and integer sub-scales are kept
//! as they are, so dequantizing a tile gives exactly the values ggml gives.
//!
//! A tile holds 16 output columns (one 512-bit vector of i32 or f32 lanes) for all of `k`, in
//! the order the kernel reads it: per super-block the f16 `d` (and `dmin`) of the 16 columns,
//! then per block the columns' sub-scales (and mins) and the codes, grouped 4 inputs x 16
//! columns (one `vpdpbusd` operand). 4-bit codes put group `2h` in the low nibbles and `2h + 1`
//! in the high nibbles of the same 64 bytes. Columns past `n` are zero.

use super::rows::RowBlocks;
use super::KernelError;
use half::f16;
use rayon::prelude::*;

/// Output columns per tile.
pub(crate) const TILE: usize = 16;

/// The GGUF block types the kernels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

/// How a format's blocks map onto the kernel: fixed per format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bits per stored code: 4 (two per byte) or 8.
    pub bits: usize,
    /// Inputs per scale.
    pub block: usize,
    /// Inputs per f16 `d` (a GGUF block: 32, or 256 for the K-quants).
    pub super_k: usize,
    /// Per-block integer sub-scales under `d` (K-quants).
    pub sub_scales: bool,
    /// A per-block min `B` (else the constant offset `offset`).
    pub mins: bool,
    /// The constant code offset when there are no mins.
    pub offset: i32,
    /// Bytes of one GGUF block of `super_k` inputs.
    pub gguf_bytes: usize,
}

impl BlockFormat {
    /// The format of a GGUF tensor type by its ggml name (`Q4_K`, ...).
    pub fn from_ggml_name(name: &str) -> Result<Self, KernelError> {
        Ok(match name {
            "Q8_0" => Self::Q8_0,
            "Q4_0" => Self::Q4_0,
            "Q4_1" => Self::Q4_1,
            "Q5_0" => Self::Q5_0,
            "Q5_1" => Self::Q5_1,
            "Q4K" | "Q4_K" => Self::Q4K,
            "Q5K" | "Q5_K" => Self::Q5K,
            "Q6K" | "Q6_K" => Self::Q6K,
            other => return Err(KernelError::UnsupportedFormat(other.to_string())),
        })
    }

    pub(crate) fn layout(self) -> Layout {
        let (bits, block, super_k, sub_scales, mins, offset, gguf_bytes) = match self {
            Self::Q8_0 => (8, 32, 32, false, false, 128, 34),
            Self::Q4_0 => (4, 32, 32, false, false, 8, 18),
            Self::Q4_1 => (4, 32, 32, false, true, 0, 20),
            Self::Q5_0 => (8, 32, 32, false, false, 16, 22),
            Self::Q5_1 => (8, 32, 32, false, true, 0, 24),
            Self::Q4K => (4, 32, 256, true, true, 0, 144),
            Self::Q5K => (8, 32, 256, true, true, 0, 176),
            Self::Q6K => (8, 16, 256, true, false, 32, 210),
        };
        Layout { bits, block, super_k, sub_scales, mins, offset, gguf_bytes }
    }

    /// How activations are quantized for this format's kernel.
    pub fn row_blocks(self) -> RowBlocks {
        self.layout().row_blocks()
    }

    /// Inputs per GGUF block: a matrix's rows must be a multiple of it.
    pub fn super_k(self) -> usize {
        self.layout().super_k
    }

    /// Bytes of GGUF blocks for a `[n, k]` tensor (`k` a multiple of the block).
    pub fn gguf_bytes(self, n: usize, k: usize) -> usize {
        let l = self.layout();
        n * (k / l.super_k) * l.gguf_bytes
    }
}

impl Layout {
    /// A scale per block, or for the K-quants per super-block (their integer sub-scales then
    /// multiply integer sums); a sum per block.
    pub fn row_blocks(&self) -> RowBlocks {
        RowBlocks { scale: if self.sub_scales { self.super_k } else { self.block }, sum: self.block }
    }

    pub fn blocks_per_super(&self) -> usize {
        self.super_k / self.block
    }

    /// Bytes of one block's codes for the 16 columns of a tile.
    pub fn code_bytes(&self) -> usize {
        TILE * self.block * self.bits / 8
    }

    /// Bytes of a super-block's head in a tile: the columns' f16 `d` (and `dmin`).
    pub fn head_bytes(&self) -> usize {
        2 * TILE * (1 + self.mins as usize)
    }

    /// Bytes of one block's sub-scales (and mins) in a tile, before its codes.
    pub fn sub_bytes(&self) -> usize {
        if self.sub_scales {
            TILE * (1 + self.mins as usize)
        } else {
            0
        }
    }

    /// Bytes of one block in a tile: sub-scales, mins, codes.
    pub fn block_bytes(&self) -> usize {
        self.sub_bytes() + self.code_bytes()
    }

    /// Bytes of one super-block in a tile: `d` (and `dmin`), then its blocks.
    pub fn super_bytes(&self) -> usize {
        self.head_bytes() + self.blocks_per_super() * self.block_bytes()
    }
}

/// One GGUF block decoded: per block of the layout a sub-scale and min (K-quants), and every
/// input's code.
struct Decoded {
    d: u16,
    dmin: u16,
    sub: [i8; 16],
    min: [i8; 16],
    codes: [u8; 256],
}

/// `(scale, min)` of sub-block `j` of a Q4_K / Q5_K block's 12 packed bytes (6 bits each).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn decode(format: BlockFormat, b: &[u8]) -> Decoded {
    let mut out = Decoded { d: 0, dmin: 0, sub: [0; 16], min: [0; 16], codes: [0; 256] };
    match format {
        BlockFormat::Q8_0 => {
            out.d = u16_at(b, 0);
            for i in 0..32 {
                out.codes[i] = (b[2 + i] as i8 as i32 + 128) as u8;
            }
        }
        BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
            out.d = u16_at(b, 0);
            let qs = if format == BlockFormat::Q4_1 {
                // w = d q + m: the kernel's B is -m.
                out.dmin = u16_at(b, 2) ^ 0x8000;
                &b[4..20]
            } else {
                &b[2..18]
            };
            for (i, &q) in qs.iter().enumerate() {
                out.codes[i] = q & 0xF;
                out.codes[i + 16] = q >> 4;
            }
        }
        BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
            out.d = u16_at(b, 0);
            let at = if format == BlockFormat::Q5_1 {
                // w = d q + m: the kernel's B is -m.
                out.dmin = u16_at(b, 2) ^ 0x8000;
                4
            } else {
                2
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for (j, &q) in qs.iter().enumerate() {
                out.codes[j] = (q & 0xF) | ((((qh >> j) << 4) & 0x10) as u8);
                out.codes[j + 16] = (q >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
            }
        }
        BlockFormat::Q4K | BlockFormat::Q5K => {
            out.d = u16_at(b, 0);
            out.dmin = u16_at(b, 2);
            let scales = &b[4..16];
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, scales);
                out.sub[j] = sc as i8;
                out.min[j] = m as i8;
            }
            let (qh, ql) = if format == BlockFormat::Q5K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
            for c in 0..4 {
                for l in 0..32 {
                    let q = ql[32 * c + l];
                    let (hi0, hi1) = match qh {
                        Some(h) => (((h[l] >> (2 * c)) & 1) << 4, ((h[l] >> (2 * c + 1)) & 1) << 4),
                        None => (0, 0),
                    };
                    out.codes[64 * c + l] = (q & 0xF) | hi0;
                    out.codes[64 * c + 32 + l] = (q >> 4) | hi1;
                }
            }
        }
        BlockFormat::Q6K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            out.d = u16_at(b, 208);
            for (s, &sc) in out.sub.iter_mut().zip(scales) {
                *s = sc as i8;
            }
            for n in 0..2 {
                let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
                for l in 0..32 {
                    let y = &mut out.codes[128 * n..];
                    y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                    y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                    y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
    }
    out
}

/// Weights `[n, k]` in the kernels' tiles; see the module notes.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    format: BlockFormat,
    n: usize,
    k: usize,
    tiles: Vec<u8>,
}

impl QuantMatrix {
    /// Repacks a GGUF tensor's blocks (`n` rows of `k` inputs, row-major as the file stores them).
    pub fn from_gguf(format: BlockFormat, blocks: &[u8], n: usize, k: usize) -> Result<Self, KernelError> {
        let l = format.layout();
        if k == 0 || !k.is_multiple_of(l.super_k) {
            return Err(KernelError::RaggedRows { format, n, k, multiple: l.super_k });
        }
        let want = format.gguf_bytes(n, k);
        if blocks.len() != want {
            return Err(KernelError::WrongSize { format, n, k, want, got: blocks.len() });
        }
        let tile_bytes = (k / l.super_k) * l.super_bytes();
        let mut tiles = vec![0u8; n.div_ceil(TILE) * tile_bytes];
        let row_bytes = want / n.max(1);
        tiles.par_chunks_mut(tile_bytes).enumerate().for_each(|(t, tile)| {
            for col in 0..TILE.min(n - t * TILE) {
                let row = &blocks[(t * TILE + col) * row_bytes..][..row_bytes];
                for (s, gguf) in row.chunks_exact(l.gguf_bytes).enumerate() {
                    pack_super(&l, &decode(format, gguf), &mut tile[s * l.super_bytes()..][..l.super_bytes()], col);
                }
            }
        });
        Ok(Self { format, n, k, tiles })
    }

    /// Quantizes f32 weights (`[n, k]` row-major) to Q8_0 blocks (as ggml does: `d` = max |w| /
    /// 127 in f16, codes rounded to nearest) and repacks them.
    pub fn quantize_q8_0(w: &[f32], n: usize, k: usize) -> Result<Self, KernelError> {
        let format = BlockFormat::Q8_0;
        if k == 0 || !k.is_multiple_of(32) || w.len() != n * k {
            return Err(KernelError::RaggedRows { format, n, k, multiple: 32 });
        }
        let mut blocks = vec![0u8; format.gguf_bytes(n, k)];
        blocks.par_chunks_mut(34).zip(w.par_chunks(32)).for_each(|(b, x)| {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            b[0..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            for (q, v) in b[2..].iter_mut().zip(x) {
                *q = (v * inv).round().clamp(-127.0, 127.0) as i8 as u8;
            }
        });
        Self::from_gguf(format, &blocks, n, k)
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes the repacked weights take.
    pub fn bytes(&self) -> usize {
        self.tiles.len()
    }

    pub(crate) fn layout(&self) -> Layout {
        self.format.layout()
    }

    pub(crate) fn tile_bytes(&self) -> usize {
        (self.k / self.layout().super_k) * self.layout().super_bytes()
    }

    pub(crate) fn tile(&self, t: usize) -> &[u8] {
        &self.tiles[t * self.tile_bytes()..][..self.tile_bytes()]
    }

    /// Row `r` of the weights (output `r`) as f32: the values ggml's dequantization gives.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let l = self.layout();
        let (tile, col) = (self.tile(r / TILE), r % TILE);
        let mut out = Vec::with_capacity(self.k);
        for s in 0..self.k / l.super_k {
            let sb = &tile[s * l.super_bytes()..];
            let d = f16_at(sb, col);
            let dmin = if l.mins { f16_at(sb, TILE + col) } else { 0.0 };
            let blocks = &sb[l.head_bytes()..];
            for b in 0..l.blocks_per_super() {
                let blk = &blocks[b * l.block_bytes()..];
                let (a, m) = match l.sub_scales {
                    true => (d * blk[col] as i8 as f32, if l.mins { dmin * blk[TILE + col] as i8 as f32 } else { 0.0 }),
                    false => (d, dmin),
                };
                let mut codes = [[0i16; 32]; TILE];
                unpack(l.bits, l.block, &blk[l.sub_bytes()..], &mut codes);
                for &c in &codes[col][..l.block] {
                    let c = c as f32;
                    out.push(if l.mins { a * c - m } else { a * (c - l.offset as f32) });
                }
            }
        }
        out
    }
}

pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16_at(b, 2 * i)).to_f32()
}

/// One block's codes for the 16 columns of a tile (layout in `quant_matrix`), as i16 per column.
pub(crate) fn unpack(bits: usize, block: usize, codes: &[u8], out: &mut [[i16; 32]; TILE]) {
    for g in 0..block / 4 {
        // 8-bit: group g is its own 64 bytes; 4-bit: groups 2h and 2h + 1 share 64 bytes.
        let (bytes, shift) = if bits == 8 { (&codes[g * 64..][..64], None) } else { (&codes[(g / 2) * 64..][..64], Some(4 * (g % 2))) };
        for (col, out) in out.iter_mut().enumerate() {
            for byte in 0..4 {
                let v = bytes[col * 4 + byte];
                out[4 * g + byte] = match shift {
                    None => v as i16,
                    Some(s) => ((v >> s) & 0xF) as i16,
                };
            }
        }
    }
}

/// Writes column `col` of one decoded GGUF block into its super-block of a tile.
fn pack_super(l: &Layout, dec: &Decoded, sb: &mut [u8], col: usize) {
    sb[2 * col..2 * col + 2].copy_from_slice(&dec.d.to_le_bytes());
    if l.mins {
        sb[2 * (TILE + col)..2 * (TILE + col) + 2].copy_from_slice(&dec.dmin.to_le_bytes());
    }
    let blocks = &mut sb[l.head_bytes()..];
    for b in 0..l.blocks_per_super() {
        let blk = &mut blocks[b * l.block_bytes()..][..l.block_bytes()];
        if l.sub_scales {
            blk[col] = dec.sub[b] as u8;
            if l.mins {
                blk[TILE + col] = dec.min[b] as u8;
            }
        }
        let codes = &mut blk[l.sub_bytes()..];
        for i in 0..l.block {
            let c = dec.codes[b * l.block + i];
            let (group, byte) = (i / 4, i % 4);
            if l.bits == 8 {
                codes[group * 4 * TILE + col * 4 + byte] = c;
            } else {
                codes[(group / 2) * 4 * TILE + col * 4 + byte] |= c << (4 * (group % 2));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    pub(crate) const FORMATS: [(BlockFormat, GgmlDType); 8] = [
        (BlockFormat::Q8_0, GgmlDType::Q8_0),
        (BlockFormat::Q4_0, GgmlDType::Q4_0),
        (BlockFormat::Q4_1, GgmlDType::Q4_1),
        (BlockFormat::Q5_0, GgmlDType::Q5_0),
        (BlockFormat::Q5_1, GgmlDType::Q5_1),
        (BlockFormat::Q4K, GgmlDType::Q4K),
        (BlockFormat::Q5K, GgmlDType::Q5K),
        (BlockFormat::Q6K, GgmlDType::Q6K),
    ];

    /// Blocks of `format` for random weights `[n, k]`, quantized by candle (ggml's quantizer),
    /// and candle's dequantization of them.
    pub(crate) fn candle_blocks(dtype: GgmlDType, n: usize, k: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        let mut s = seed;
        let w: Vec<f32> = (0..n * k)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
            })
            .collect();
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (q.data().unwrap().to_vec(), deq)
    }

    #[test]
    fn repacked_tiles_dequantize_to_exactly_ggml_values() {
        for (format, dtype) in FORMATS {
            let (n, k) = (37, 512);
            let (blocks, want) = candle_blocks(dtype, n, k, 7);
            let m = QuantMatrix::from_gguf(format, &blocks, n, k).unwrap();
            for r in 0..n {
                assert_eq!(m.dequantize_row(r), want[r * k..(r + 1) * k], "{format:?} row {r}");
            }
        }
    }

    #[test]
    fn quantizing_f32_to_q8_0_matches_ggml() {
        let (n, k) = (20, 96);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5).collect();
        let ours = QuantMatrix::quantize_q8_0(&w, n, k).unwrap();
        let theirs = QTensor::quantize(&Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap();
        let theirs = theirs.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for r in 0..n {
            assert_eq!(ours.dequantize_row(r), theirs[r * k..(r + 1) * k], "row {r}");
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(QuantMatrix::from_gguf(BlockFormat::Q4K, &[0; 144], 1, 128), Err(KernelError::RaggedRows { .. })));
        assert!(matches!(QuantMatrix::from_gguf(BlockFormat::Q8_0, &[0; 33], 1, 32), Err(KernelError::WrongSize { .. })));
        assert!(matches!(BlockFormat::from_ggml_name("Q2K"), Err(KernelError::UnsupportedFormat(_))));
    }
}
