//! `assay models`: what is available locally, and where it was looked for.

use crate::options::GlobalOptions;
use anyhow::Result;
use assay_engine::registry::hf_cache_dir;

pub fn run(global: &GlobalOptions) -> Result<()> {
    let resolver = super::resolver(global);
    match &resolver.manifest {
        Some(m) => {
            println!("manifest: {} (files in {})", m.path.display(), m.local_dir.display());
            println!("{:<10} {:<28} {:<10} {:<12} {:<8} location", "name", "roles", "format", "licence", "status");
            for e in &m.entries {
                let path = m.local_path(e);
                let status = if path.exists() { "present" } else { "missing" };
                let roles: Vec<String> = e.roles.iter().map(ToString::to_string).collect();
                println!("{:<10} {:<28} {:<10} {:<12} {:<8} {}", e.name, roles.join(","), e.format, e.licence, status, path.display());
            }
            if m.entries.iter().any(|e| !m.local_path(e).exists()) {
                println!("(run models/fetch to get the missing ones)");
            }
        }
        None => println!("manifest: none at {}", global.models_dir.join("manifest.json").display()),
    }
    match hf_cache_dir() {
        Some(dir) => {
            let repos: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("models--")).map(|n| n.replacen("--", "/", 1))).collect())
                .unwrap_or_default();
            println!("Hugging Face cache: {} ({} model repos{})", dir.display(), repos.len(), if repos.is_empty() { String::new() } else { format!(": {}", repos.join(", ")) });
        }
        None => println!("Hugging Face cache: none (HF_HUB_CACHE, HF_HOME and HOME unset)"),
    }
    println!("paths: any .gguf file, or a folder with config.json + *.safetensors + tokenizer.json");
    Ok(())
}
