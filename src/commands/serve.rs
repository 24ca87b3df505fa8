//! `assay serve`: load the models named by the flags and run `assay_server` until SIGTERM or
//! ctrl-c. The port is open (answering 503) while the models load.

use crate::options::{GlobalOptions, ServeArgs};
use anyhow::{Context, Result};
use assay_server::{LoadedModels, ServerConfig};
use std::time::Duration;

pub fn run(global: &GlobalOptions, args: &ServeArgs) -> Result<()> {
    let config = ServerConfig {
        addr: (args.host, args.port).into(),
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_queue: args.max_queue.max(1),
        request_timeout: Duration::from_secs(args.request_timeout_s),
        max_body_bytes: args.max_body_bytes,
        kv_cache_bytes: global.kv_cache_mb << 20,
        step_tokens: global.step_tokens.max(1),
        db: global.db.clone(),
    };
    let (global, loader_args) = (global.clone(), args.clone());
    let load = move || load_models(&global, &loader_args).map_err(|e| format!("{e:#}"));
    eprintln!("assay serve: http://{} (answers 503 until {} is loaded; ASSAY_LOG=info for details)", config.addr, args.model);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(assay_server::serve(config, load)).context("assay serve")
}

fn load_models(global: &GlobalOptions, args: &ServeArgs) -> Result<LoadedModels> {
    let mut language = vec![super::load_language_model(global, &args.model)?];
    let judge = args.judge_model.clone().unwrap_or_else(|| args.model.clone());
    if judge != args.model {
        language.push(super::load_language_model(global, &judge)?);
    }
    let embedder = args.embed_model.as_deref().map(|spec| super::load_embedder(global, spec)).transpose()?;
    Ok(LoadedModels { language, judge, embedder })
}
