//! Finding model files offline: a path (GGUF file or checkpoint folder), a short name from the
//! model manifest (`models/manifest.json`, files fetched by `models/fetch`), or a Hugging Face
//! repo id already present in the local cache (`HF_HUB_CACHE`, `HF_HOME/hub`, or
//! `~/.cache/huggingface/hub`), or random weights (`random:<preset>`). Nothing here touches
//! the network.

use crate::error::{EngineError, Result};
use crate::model::random::RandomSpec;
use assay_core::ModelRole;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One entry of `models/manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub roles: Vec<ModelRole>,
    pub family: String,
    pub format: String,
    pub licence: String,
    /// Relative to the manifest's `local/` folder (`models/fetch` knows where it comes from).
    pub path: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ManifestFile {
    models: Vec<ManifestEntry>,
}

/// The model manifest and the folder its files are fetched into.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub local_dir: PathBuf,
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads `<models_dir>/manifest.json`; files live in `local_dir`, by default
    /// `<models_dir>/local` (where `models/fetch` puts them).
    pub fn load(models_dir: &Path, local_dir: Option<PathBuf>) -> Result<Self> {
        let path = models_dir.join("manifest.json");
        let err = |reason: String| EngineError::Manifest { path: path.clone(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let file: ManifestFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let local_dir = local_dir.unwrap_or_else(|| models_dir.join("local"));
        Ok(Self { path, local_dir, entries: file.models })
    }

    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Where an entry's files are (whether or not they were fetched).
    pub fn local_path(&self, entry: &ManifestEntry) -> PathBuf {
        self.local_dir.join(&entry.path)
    }

    /// The first entry that plays `role`.
    pub fn default_for(&self, role: ModelRole) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.roles.contains(&role))
    }
}

/// The kind of files a model spec resolved to.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFiles {
    /// A single GGUF file (weights, tokenizer and template inside).
    Gguf(PathBuf),
    /// A folder with `config.json`, `*.safetensors` and `tokenizer.json`.
    Checkpoint(PathBuf),
    /// Random weights of a configuration (`random:...`).
    Random(RandomSpec),
}

impl ModelFiles {
    /// Where the model comes from, for messages.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Gguf(p) | Self::Checkpoint(p) => p.clone(),
            Self::Random(spec) => spec.origin(),
        }
    }
}

/// The Hugging Face hub cache folder, from the usual environment variables.
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// Classifies an existing path.
fn files_at(path: &Path) -> Option<ModelFiles> {
    if path.is_file() {
        return Some(ModelFiles::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Some(ModelFiles::Checkpoint(path.to_path_buf()));
        }
        let ggufs: Vec<PathBuf> = std::fs::read_dir(path).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "gguf")).collect();
        if let [one] = ggufs.as_slice() {
            return Some(ModelFiles::Gguf(one.clone()));
        }
    }
    None
}

/// Turns a model spec (path, manifest name or Hugging Face repo id) into files on disk.
#[derive(Debug, Clone, Default)]
pub struct ModelResolver {
    pub manifest: Option<Manifest>,
    /// The Hugging Face hub cache folder, if any.
    pub hf_cache: Option<PathBuf>,
}

impl ModelResolver {
    /// Resolves `spec`; a missing model is reported with every place that was searched.
    pub fn resolve(&self, spec: &str) -> Result<ModelFiles> {
        if let Some(random) = crate::model::random::parse(spec)? {
            return Ok(ModelFiles::Random(random));
        }
        let mut looked = Vec::new();
        let as_path = Path::new(spec);
        if let Some(files) = files_at(as_path) {
            return Ok(files);
        }
        looked.push(format!("path {}", as_path.display()));
        if let Some(m) = &self.manifest {
            if let Some(entry) = m.get(spec) {
                let p = m.local_path(entry);
                if let Some(files) = files_at(&p) {
                    return Ok(files);
                }
                return Err(EngineError::UnknownModel { name: spec.to_string(), looked: format!("{} (named in {}, not fetched yet: run models/fetch)", p.display(), m.path.display()) });
            }
            let names: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
            looked.push(format!("manifest {} (names: {})", m.path.display(), names.join(", ")));
        }
        if let (Some(cache_dir), true) = (&self.hf_cache, spec.split('/').count() == 2) {
            let repo = hf_hub::Cache::new(cache_dir.clone()).model(spec.to_string());
            // `get` follows refs/main to the snapshot folder that holds the file.
            let snapshot = ["config.json", "tokenizer.json"].iter().find_map(|f| repo.get(f)).and_then(|f| f.parent().map(Path::to_path_buf));
            if let Some(files) = snapshot.as_deref().and_then(files_at) {
                return Ok(files);
            }
            looked.push(format!("Hugging Face cache {}", cache_dir.display()));
        }
        Err(EngineError::UnknownModel { name: spec.to_string(), looked: looked.join("; ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_a_repo_id_in_the_hugging_face_cache_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--tiny");
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        let resolver = ModelResolver { manifest: None, hf_cache: Some(tmp.path().to_path_buf()) };
        assert_eq!(resolver.resolve("org/tiny").unwrap(), ModelFiles::Checkpoint(snap));
        let err = resolver.resolve("org/absent").unwrap_err().to_string();
        assert!(err.contains("unknown model 'org/absent'") && err.contains("Hugging Face cache"), "{err}");
    }

    #[test]
    fn manifest_names_resolve_and_unfetched_ones_say_so() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = r#"{"models": [{"name": "tiny", "roles": ["judge"], "family": "llama", "format": "gguf",
            "licence": "MIT", "path": "tiny/t.gguf", "description": "d"}]}"#;
        std::fs::write(tmp.path().join("manifest.json"), manifest).unwrap();
        let m = Manifest::load(tmp.path(), None).unwrap();
        let resolver = ModelResolver { manifest: Some(m.clone()), hf_cache: None };
        let err = resolver.resolve("tiny").unwrap_err().to_string();
        assert!(err.contains("run models/fetch"), "{err}");
        std::fs::create_dir_all(tmp.path().join("local/tiny")).unwrap();
        std::fs::write(tmp.path().join("local/tiny/t.gguf"), b"x").unwrap();
        assert_eq!(resolver.resolve("tiny").unwrap(), ModelFiles::Gguf(tmp.path().join("local/tiny/t.gguf")));
        assert_eq!(m.default_for(ModelRole::Judge).unwrap().name, "tiny");
        assert!(m.default_for(ModelRole::Embedder).is_none());
    }
}
