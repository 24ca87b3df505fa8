//! Where a model's tensors come from: a GGUF file, a folder of safetensors shards, or a seeded
//! random generator. Every tensor is checked against the shape the decoder expects, so a
//! missing or mis-shaped tensor is an error naming the file and the tensor.

use super::{Architecture, ModelConfig, Weight};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::projection::LoadedWeight;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// Tensors by role, whatever the file's naming.
pub trait WeightSource {
    /// The tensor as the source holds it (a GGUF file's blocks, or float values), checked
    /// against `shape`.
    fn load(&mut self, w: Weight, shape: &[usize]) -> Result<LoadedWeight>;
    fn has(&self, w: Weight) -> bool;
    /// The file (or generator) tensors come from, for errors.
    fn origin(&self) -> &Path;
    /// Where float tensors (norms, biases) go.
    fn device(&self) -> &Device;

    /// The tensor as f32 values on the source's device (norms, biases, RoPE factors).
    fn get(&mut self, w: Weight, shape: &[usize]) -> Result<Tensor> {
        let device = self.device().clone();
        Ok(self.load(w, shape)?.dense(&device)?)
    }
}

fn check_shape(origin: &Path, name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(EngineError::InvalidModel { path: origin.to_path_buf(), reason: format!("tensor {name} has shape {got:?}, expected {want:?}") })
}

fn missing(origin: &Path, name: &str) -> EngineError {
    EngineError::InvalidModel { path: origin.to_path_buf(), reason: format!("missing tensor {name}") }
}

pub struct GgufWeights<'a> {
    pub file: &'a GgufFile,
    pub device: Device,
}

impl WeightSource for GgufWeights<'_> {
    fn load(&mut self, w: Weight, shape: &[usize]) -> Result<LoadedWeight> {
        let name = w.gguf();
        if !self.file.has_tensor(&name) {
            return Err(missing(self.file.path(), &name));
        }
        let blocks = self.file.tensor_blocks(&name)?;
        check_shape(self.file.path(), &name, &blocks.dims, shape)?;
        Ok(LoadedWeight::File(blocks))
    }

    fn has(&self, w: Weight) -> bool {
        self.file.has_tensor(&w.gguf())
    }

    fn origin(&self) -> &Path {
        self.file.path()
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// The shards of a Hugging Face checkpoint, memory-mapped; tensors are read one at a time.
pub struct SafetensorsWeights {
    shards: MmapedSafetensors,
    arch: &'static dyn Architecture,
    dir: PathBuf,
    device: Device,
}

impl SafetensorsWeights {
    pub fn open(dir: &Path, arch: &'static dyn Architecture, device: &Device) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| EngineError::Io { path: dir.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(EngineError::InvalidModel { path: dir.to_path_buf(), reason: "no *.safetensors file".into() });
        }
        // SAFETY: model files are not modified while the model is loaded.
        let shards = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| EngineError::InvalidModel { path: dir.to_path_buf(), reason: e.to_string() })?;
        Ok(Self { shards, arch, dir: dir.to_path_buf(), device: device.clone() })
    }
}

impl WeightSource for SafetensorsWeights {
    fn load(&mut self, w: Weight, shape: &[usize]) -> Result<LoadedWeight> {
        let name = w.hf(self.arch);
        if !self.has(w) {
            return Err(missing(&self.dir, &name));
        }
        let t = self.shards.load(&name, &self.device).map_err(|e| EngineError::InvalidModel { path: self.dir.clone(), reason: format!("tensor {name}: {e}") })?;
        check_shape(&self.dir, &name, t.dims(), shape)?;
        Ok(LoadedWeight::Dense(t))
    }

    fn has(&self, w: Weight) -> bool {
        self.shards.get(&w.hf(self.arch)).is_ok()
    }

    fn origin(&self) -> &Path {
        &self.dir
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

/// Seeded normal weights (standard deviation 0.02; norms around 1) for any configuration:
/// each tensor is drawn from its own stream (seed and name), so values do not depend on the
/// order tensors are loaded in.
pub struct RandomWeights {
    pub config: ModelConfig,
    pub seed: u64,
    pub device: Device,
    pub origin: PathBuf,
}

impl WeightSource for RandomWeights {
    fn load(&mut self, w: Weight, shape: &[usize]) -> Result<LoadedWeight> {
        let name = w.gguf();
        let n: usize = shape.iter().product();
        let mut rng = SplitMix64::new(self.seed ^ fnv(&name));
        let is_norm = shape.len() == 1 && !name.ends_with(".bias");
        let values: Vec<f32> = (0..n).map(|_| if is_norm { 1.0 + 0.1 * rng.normal() } else { 0.02 * rng.normal() }).collect();
        Ok(LoadedWeight::Dense(Tensor::from_vec(values, shape, &self.device)?))
    }

    fn has(&self, w: Weight) -> bool {
        use super::LayerWeight::*;
        match w {
            Weight::LmHead | Weight::RopeFreqs => false,
            Weight::Layer(_, QBias | KBias | VBias) => self.config.qkv_bias,
            Weight::Layer(_, QNorm | KNorm) => self.config.qk_norm,
            Weight::Layer(_, PostAttnNorm | PostFfnNorm) => self.config.sandwich_norms,
            _ => true,
        }
    }

    fn origin(&self) -> &Path {
        &self.origin
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A small, fast, seedable generator (SplitMix64) with Box-Muller normals: random weights for
/// billions of parameters must not take minutes.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 1.0) / (1u64 << 24) as f32
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}
