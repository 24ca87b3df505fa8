//! `assay bench`: throughput measurements of the engine. Each prints a table to stderr and one
//! JSON line to stdout so that `benches/` scripts can put peers side by side.

use crate::options::{BenchGenArgs, BenchKind, BenchMatmulArgs, GlobalOptions};
use anyhow::{Context, Result};
use assay_engine::generate::prefill;
use assay_engine::gguf::GgufFile;
use assay_engine::projection::Projection;
use assay_engine::sampling::argmax;
use assay_engine::{LlamaConfig, LogitsAt, MatmulPolicy, ModelFiles, SequenceChunk};
use candle_core::{Device, Module, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn run(global: &GlobalOptions, args: &crate::options::BenchArgs) -> Result<()> {
    match &args.what {
        BenchKind::Gen(a) => gen(global, a),
        BenchKind::Matmul(a) => matmul(global, a),
    }
}

/// Median of `runs` (sorted in place).
fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Realistic prompt text: the file as is, or for JSONL the string fields of every record.
pub fn load_text(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        let mut parts = Vec::new();
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line) {
                parts.extend(map.values().filter_map(|v| v.as_str()).map(str::to_string));
            }
        }
        return Ok(parts.join("\n\n"));
    }
    Ok(raw)
}

fn default_prompt_file() -> PathBuf {
    PathBuf::from("../shared/data/kqa/questions_w_answers.jsonl")
}

fn gen(global: &GlobalOptions, args: &BenchGenArgs) -> Result<()> {
    anyhow::ensure!(args.repeats > 0 && args.gen_tokens > 0 && args.prompt_tokens > 0, "repeats, gen-tokens and prompt-tokens must be > 0");
    let lm = super::load_language_model(global, &args.model)?;
    let file = args.prompt_file.clone().unwrap_or_else(default_prompt_file);
    let mut prompt = lm.tokenizer.encode(&load_text(&file)?)?;
    anyhow::ensure!(prompt.len() >= args.prompt_tokens, "{} has only {} tokens, fewer than --prompt-tokens {}", file.display(), prompt.len(), args.prompt_tokens);
    prompt.truncate(args.prompt_tokens);
    let capacity = prompt.len() + args.gen_tokens;
    let (mut prefill_s, mut decode_s) = (Vec::new(), Vec::new());
    for run in 0..=args.repeats {
        let t0 = Instant::now();
        let (mut cache, logits) = prefill(&lm, &prompt, capacity)?;
        let mut next = argmax(&logits.squeeze(0)?.to_vec1()?);
        let t1 = Instant::now();
        for _ in 0..args.gen_tokens {
            let mut chunk = [SequenceChunk { cache: &mut cache, tokens: &[next], logits: LogitsAt::Last }];
            let logits = lm.model.forward(&mut chunk)?.pop().flatten().expect("asked for logits");
            next = argmax(&logits.squeeze(0)?.to_vec1()?);
        }
        let t2 = Instant::now();
        if run > 0 {
            prefill_s.push((t1 - t0).as_secs_f64());
            decode_s.push((t2 - t1).as_secs_f64());
        }
    }
    let runs_prefill: Vec<f64> = prefill_s.iter().map(|s| prompt.len() as f64 / s).collect();
    let runs_decode: Vec<f64> = decode_s.iter().map(|s| args.gen_tokens as f64 / s).collect();
    let prefill_tok_s = median(&mut runs_prefill.clone());
    let decode_tok_s = median(&mut runs_decode.clone());
    eprintln!("assay {}: prompt {} tokens, {} decoded, {} runs", args.model, prompt.len(), args.gen_tokens, args.repeats);
    eprintln!("  prefill {prefill_tok_s:>8.1} tok/s   runs {runs_prefill:.1?}");
    eprintln!("  decode  {decode_tok_s:>8.1} tok/s   runs {runs_decode:.1?}");
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}",
        serde_json::json!({
            "engine": "assay", "model": args.model, "threads": threads, "prompt_tokens": prompt.len(),
            "gen_tokens": args.gen_tokens, "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s,
            "runs": {"prefill_tok_s": runs_prefill, "decode_tok_s": runs_decode}
        })
    );
    Ok(())
}

fn matmul(global: &GlobalOptions, args: &BenchMatmulArgs) -> Result<()> {
    let path = match super::resolver(global).resolve(&args.model)? {
        ModelFiles::Gguf(p) => p,
        ModelFiles::Checkpoint(p) => anyhow::bail!("bench matmul reads shapes from a GGUF file; {} is a folder", p.display()),
    };
    let cfg = LlamaConfig::from_gguf(&GgufFile::open(&path)?)?;
    let dev = Device::Cpu;
    let h = cfg.hidden_size;
    let shapes = [
        ("qkv", h, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim),
        ("out", cfg.n_heads * cfg.head_dim, h),
        ("gate_up", h, 2 * cfg.intermediate_size),
        ("down", cfg.intermediate_size, h),
        ("lm_head", h, cfg.vocab_size),
    ];
    let cpu = MatmulPolicy::for_device(&dev);
    let always_dense = MatmulPolicy { dense_min_rows: 0, ..cpu };
    let always_quantized = MatmulPolicy { dense_min_rows: usize::MAX, ..cpu };
    let time = |p: &Projection, x: &Tensor| -> Result<f64> {
        let reps = 5;
        p.forward(x)?;
        let mut runs: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                p.forward(x).map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(median(&mut runs))
    };
    let mut results = Vec::new();
    eprintln!("{:<8} {:>6} {:>12} {:>12} {:>10}", "shape", "rows", "dense ms", "q8_0 ms", "q8_0/dense");
    for (name, k, n) in shapes {
        let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
        let dense = Projection::from_dense(w.clone(), None, always_dense)?;
        let quant = Projection::from_dense(w, None, always_quantized)?;
        for &rows in &args.rows {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
            let (d, q) = (time(&dense, &x)?, time(&quant, &x)?);
            eprintln!("{name:<8} {rows:>6} {d:>12.3} {q:>12.3} {:>10.2}", q / d);
            results.push(serde_json::json!({"shape": name, "k": k, "n": n, "rows": rows, "dense_ms": d, "q8_0_ms": q}));
        }
    }
    println!("{}", serde_json::json!({ "engine": "assay", "bench": "matmul", "threads": candle_core::utils::get_num_threads(), "results": results }));
    Ok(())
}
