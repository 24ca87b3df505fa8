//! `assay serve`: load the models named by the flags and run `assay_server` until SIGTERM or
//! ctrl-c. The port is open (answering 503) while the models load.

use crate::options::{GlobalOptions, LimitArgs, ServeArgs};
use anyhow::{bail, Context, Result};
use assay_server::{Limits, LoadedModels, ServerConfig};
use std::time::Duration;

pub fn run(global: &GlobalOptions, args: &ServeArgs) -> Result<()> {
    let limits = limits(&args.limits);
    limits.validate().map_err(anyhow::Error::msg)?;
    let config = ServerConfig {
        addr: (args.host, args.port).into(),
        api_key: api_key(args)?,
        max_queue: args.max_queue.max(1),
        request_timeout: Duration::from_secs(args.request_timeout_s),
        max_body_bytes: args.max_body_bytes,
        kv_cache_bytes: global.kv_cache_mb << 20,
        step_tokens: global.step_tokens.max(1),
        db: global.db.clone(),
        outbound: super::outbound_policy(global),
        limits,
        header_timeout: Duration::from_secs(args.header_timeout_s.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout_s.max(1)),
        max_connections: args.max_connections.max(1),
    };
    // Created (or migrated) now: a store that cannot open stops the start, and `/ready` can
    // then tell a database that went missing from one never made.
    assay_store::Store::open(&config.db).with_context(|| format!("opening the store {}", config.db.display()))?;
    if config.api_key.is_none() && !args.host.is_loopback() {
        eprintln!("assay serve: warning: listening on {} without an API key; anyone who reaches the port can run models and projects (--api-key-file)", args.host);
    }
    let (global, loader_args) = (global.clone(), args.clone());
    let load = move || load_models(&global, &loader_args).map_err(|e| format!("{e:#}"));
    eprintln!("assay serve: http://{} (answers 503 until {} is loaded; ASSAY_LOG=info for details)", config.addr, args.model);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(assay_server::serve(config, load)).context("assay serve")
}

fn limits(args: &LimitArgs) -> Limits {
    Limits {
        max_tokens: args.limit_max_tokens,
        n: args.limit_n,
        samples: args.limit_samples,
        rationale_tokens: args.limit_rationale_tokens,
        items: args.limit_items,
        checks: args.limit_checks,
        population: args.limit_population,
        budget: args.limit_budget,
        prompt_bytes: args.limit_prompt_bytes,
        streams: args.limit_streams,
    }
}

/// The key from --api-key-file, else ASSAY_API_KEY or --api-key. An empty key is refused
/// rather than read as "no auth"; a key typed on the command line is visible in `ps`.
fn api_key(args: &ServeArgs) -> Result<Option<String>> {
    let key = match &args.api_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading the API key from {}", path.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        None => {
            if args.api_key.is_some() && std::env::var_os("ASSAY_API_KEY").is_none() {
                eprintln!("assay serve: warning: a key given with --api-key shows in the process list; prefer --api-key-file or ASSAY_API_KEY");
            }
            args.api_key.clone()
        }
    };
    // An empty ASSAY_API_KEY reads as unset to the flag parser; it must not turn auth off.
    let key = key.or_else(|| std::env::var("ASSAY_API_KEY").ok());
    match key {
        Some(k) if k.trim().is_empty() => bail!("the API key is empty; give a key or leave --api-key, ASSAY_API_KEY and --api-key-file unset to serve without one"),
        other => Ok(other),
    }
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
