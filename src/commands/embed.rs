//! `assay embed`: sentence embeddings as JSON lines `{"text", "embedding"}`.

use crate::options::{EmbedArgs, GlobalOptions};
use anyhow::{Context, Result};
use std::io::{BufRead, Write};

/// Texts per forward pass.
const BATCH: usize = 32;

pub fn run(global: &GlobalOptions, args: &EmbedArgs) -> Result<()> {
    let texts: Vec<String> = if args.texts.is_empty() { std::io::stdin().lock().lines().collect::<std::io::Result<_>>().context("reading texts from stdin")? } else { args.texts.clone() };
    if texts.is_empty() {
        anyhow::bail!("no texts to embed: pass them as arguments or one per line on stdin");
    }
    let embedder = assay_engine::Engine::start(assay_engine::EngineModel::Embedding(Box::new(super::load_embedder(global, &args.model)?)), super::engine_config(global))?;
    let mut out = std::io::stdout().lock();
    for batch in texts.chunks(BATCH) {
        for (text, v) in batch.iter().zip(embedder.embed_blocking(batch.to_vec())?.vectors) {
            serde_json::to_writer(&mut out, &serde_json::json!({ "text": text, "embedding": v }))?;
            writeln!(out)?;
        }
    }
    Ok(())
}
