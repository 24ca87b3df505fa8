//! One module per subcommand, plus the model loading they share.

pub mod bench;
pub mod bench_quality;
pub mod data;
pub mod discover;
pub mod embed;
pub mod expert;
pub mod export;
pub mod generate;
pub mod judge;
pub mod models;
pub mod optimise;
pub mod project;
pub mod refine;
pub mod report;
pub mod run;
pub mod serve;
pub mod set;

use crate::options::GlobalOptions;
use anyhow::{Context, Result};
use assay_engine::registry::hf_cache_dir;
use assay_engine::{DeviceSpec, Embedder, Engine, EngineConfig, EngineModel, LanguageModel, Manifest, ModelFiles, ModelResolver};
use assay_store::{Project, Store, StoreError};
use candle_core::Device;

/// The resolver for `--models-dir`; a missing manifest only disables short names.
pub fn resolver(global: &GlobalOptions) -> ModelResolver {
    let manifest = Manifest::load(&global.models_dir, global.models_local_dir.clone()).map_err(|e| tracing::info!("no model manifest: {e}")).ok();
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
        other => anyhow::bail!("{} is not a checkpoint folder; embedding models are", other.path().display()),
    };
    let device = device(global)?;
    Embedder::load(spec, &dir, &device).with_context(|| format!("loading embedding model '{spec}' from {}", dir.display()))
}

/// How this command's engines run: the global KV cache and step budget, batched (rows
/// independent of what shares a step).
pub fn engine_config(global: &GlobalOptions) -> EngineConfig {
    EngineConfig { step_tokens: global.step_tokens.max(1), ..EngineConfig::batched(global.kv_cache_mb << 20) }
}

/// Loads `spec` and starts its engine; the model itself (tokenizer, template) comes along.
pub fn start_engine(global: &GlobalOptions, spec: &str, config: EngineConfig) -> Result<(Engine, std::sync::Arc<LanguageModel>)> {
    let lm = load_language_model(global, spec)?;
    let engine = Engine::start(EngineModel::Language(std::sync::Arc::new(lm)), config).with_context(|| format!("starting the engine of '{spec}'"))?;
    let lm = engine.language_model().cloned().context("a language model's engine")?;
    Ok((engine, lm))
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

/// Backends for the pipeline's roles: local models through this process's engine (loaded on
/// first use), servers by URL as the project's configuration names them.
pub fn backends(global: &GlobalOptions) -> Result<assay_pipeline::Backends> {
    let local = assay_pipeline::LocalBackend::new(resolver(global), device(global)?, engine_config(global));
    Ok(assay_pipeline::Backends::new(std::sync::Arc::new(local)).with_policy(outbound_policy(global)))
}

/// What project configurations set over HTTP may call (`--allow-backend`).
pub fn outbound_policy(global: &GlobalOptions) -> assay_pipeline::OutboundPolicy {
    assay_pipeline::OutboundPolicy { allowed: global.allow_backend.clone() }
}

/// The project's dataset called `name`, or its most recent one.
pub fn dataset(store: &Store, project: &Project, name: Option<&str>) -> Result<assay_store::Dataset> {
    with_hint(store.dataset_or_latest(project, name), || format!("import one with `assay data import --project {} --file F`", project.name))
}

/// The project's evaluator-set version `number`, or its latest.
pub fn set_version(store: &Store, project: &Project, number: Option<u32>) -> Result<assay_store::SetVersion> {
    with_hint(store.set_version_or_latest(project, number), || "run `assay discover` or `assay set import`".to_string())
}

/// Says what to run when a default (the latest dataset or set version) does not exist yet.
fn with_hint<T>(found: assay_store::Result<T>, hint: impl FnOnce() -> String) -> Result<T> {
    match found {
        Err(StoreError::NoneYet(why)) => anyhow::bail!("{why} ({})", hint()),
        other => Ok(other?),
    }
}

/// Progress of a pipeline step on one stderr line per stage: done/total, rate and ETA.
pub struct ProgressLine {
    stage: String,
    started: std::time::Instant,
    last: (usize, usize),
}

impl ProgressLine {
    /// The first stage's clock starts now: its first report may come after work was done.
    pub fn new() -> Self {
        Self { stage: String::new(), started: std::time::Instant::now(), last: (usize::MAX, 0) }
    }

    pub fn update(&mut self, stage: &str, done: usize, total: usize) {
        if stage != self.stage {
            if !self.stage.is_empty() {
                eprintln!();
                self.started = std::time::Instant::now();
            }
            self.stage = stage.to_string();
        } else if (done, total) == self.last {
            return;
        }
        self.last = (done, total);
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = done as f64 / secs;
        let eta = if done > 0 && total > done { format!(", ETA {:.0}s", (total - done) as f64 / rate) } else { String::new() };
        eprint!("\r{stage}: {done}/{total} ({rate:.1}/s{eta})   ");
    }

    pub fn finish(&mut self) {
        if !self.stage.is_empty() {
            eprintln!();
            self.stage.clear();
        }
    }
}
