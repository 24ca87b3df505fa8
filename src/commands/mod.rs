//! One module per subcommand, plus the model loading they share.

pub mod bench;
pub mod data;
pub mod embed;
pub mod export;
pub mod generate;
pub mod judge;
pub mod models;
pub mod project;
pub mod set;
pub mod serve;

use crate::options::GlobalOptions;
use anyhow::{Context, Result};
use assay_engine::registry::hf_cache_dir;
use assay_engine::{DeviceSpec, Embedder, LanguageModel, Manifest, ModelFiles, ModelResolver};
use assay_store::{Project, Store, StoreError};
use candle_core::Device;

/// The resolver for `--models-dir`; a missing manifest only disables short names.
pub fn resolver(global: &GlobalOptions) -> ModelResolver {
    let manifest = Manifest::load(&global.models_dir, global.models_local_dir.clone())
        .map_err(|e| tracing::info!("no model manifest: {e}"))
        .ok();
    ModelResolver { manifest, hf_cache: hf_cache_dir() }
}

pub fn device(global: &GlobalOptions) -> Result<Device> {
    let spec: DeviceSpec = global.device.parse()?;
    Ok(spec.open()?)
}

pub fn load_language_model(global: &GlobalOptions, spec: &str) -> Result<LanguageModel> {
    let files = resolver(global).resolve(spec)?;
    let device = device(global)?;
    let started = std::time::Instant::now();
    let lm = LanguageModel::load(spec, &files, &device).with_context(|| format!("loading model '{spec}' from {}", files.path().display()))?;
    tracing::info!("loaded {spec} in {:.2}s", started.elapsed().as_secs_f64());
    Ok(lm)
}

pub fn load_embedder(global: &GlobalOptions, spec: &str) -> Result<Embedder> {
    let dir = match resolver(global).resolve(spec)? {
        ModelFiles::Checkpoint(dir) => dir,
        ModelFiles::Gguf(p) => anyhow::bail!("{} is a GGUF file; embedding models are checkpoint folders", p.display()),
    };
    let device = device(global)?;
    Embedder::load(spec, &dir, &device).with_context(|| format!("loading embedding model '{spec}' from {}", dir.display()))
}

/// The database named by `--db`, created and migrated if needed.
pub fn open_store(global: &GlobalOptions) -> Result<Store> {
    Store::open(&global.db).with_context(|| format!("opening the database {}", global.db.display()))
}

/// The project called `name`; a missing one says how to make it.
pub fn project(store: &Store, name: &str) -> Result<Project> {
    match store.project_by_name(name) {
        Err(StoreError::NotFound { .. }) => {
            anyhow::bail!("no project '{name}' in {} (create it with `assay project create {name} --prompt-file F`)", store.path().display())
        }
        other => Ok(other?),
    }
}
