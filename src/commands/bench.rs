//! `assay bench`: throughput measurements of the engine (and, in `bench_quality`, judge
//! quality). Each prints a table to stderr and one JSON line to stdout so that `benches/`
//! scripts can put peers side by side.

use crate::options::{BenchAttentionArgs, BenchGenArgs, BenchJudgeArgs, BenchKind, BenchMatmulArgs, GlobalOptions};
use anyhow::{Context, Result};
use assay_core::{JudgeOptions, SamplingParams};
use assay_engine::projection::{LoadedWeight, Projection};
use assay_engine::{EngineConfig, GenEvent, MatmulPolicy, RequestOptions, WeightCopy};
use candle_core::{Device, Module, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn run(global: &GlobalOptions, args: &crate::options::BenchArgs) -> Result<()> {
    match &args.what {
        BenchKind::Gen(a) => gen(global, a),
        BenchKind::Matmul(a) => matmul(global, a),
        BenchKind::Attention(a) => attention(a),
        BenchKind::Judge(a) => judge(global, a),
        BenchKind::Quality(a) => super::bench_quality::run(global, a),
    }
}

/// The process's peak resident memory (VmHWM), in MiB; 0 where /proc does not say.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
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
    // One sequence as `assay generate` runs it; nothing kept between runs, so each computes
    // its prompt.
    let config = EngineConfig { prefix_sharing: false, ..super::engine_config(global) };
    let t_load = Instant::now();
    let (engine, lm) = super::start_engine(global, &args.model, config)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let file = args.prompt_file.clone().unwrap_or_else(default_prompt_file);
    let mut prompt = lm.tokenizer.encode(&load_text(&file)?)?;
    anyhow::ensure!(prompt.len() >= args.prompt_tokens, "{} has only {} tokens, fewer than --prompt-tokens {}", file.display(), prompt.len(), args.prompt_tokens);
    prompt.truncate(args.prompt_tokens);
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(args.gen_tokens) };
    let (mut prefill_s, mut decode_s) = (Vec::new(), Vec::new());
    for run in 0..=args.repeats {
        let t0 = Instant::now();
        let mut events = engine.generate(vec![(prompt.clone(), params.clone())], RequestOptions::default())?;
        // The first event follows the prompt's pass and the first sampled token.
        let mut first = None;
        let generated = loop {
            match events.blocking_recv() {
                Some(GenEvent::Text { .. }) => {
                    first.get_or_insert_with(Instant::now);
                }
                Some(GenEvent::Finished { generation, .. }) => break generation.token_ids.len(),
                Some(GenEvent::Failed(e)) => return Err(e.into()),
                None => anyhow::bail!("the engine stopped"),
            }
        };
        let (t1, t2) = (first.unwrap_or_else(Instant::now), Instant::now());
        anyhow::ensure!(generated == args.gen_tokens, "generated {generated} tokens, not {}", args.gen_tokens);
        if run > 0 {
            prefill_s.push((t1 - t0).as_secs_f64());
            decode_s.push((t2 - t1).as_secs_f64());
        }
    }
    let decoded = args.gen_tokens.saturating_sub(1).max(1);
    let runs_prefill: Vec<f64> = prefill_s.iter().map(|s| prompt.len() as f64 / s).collect();
    let runs_decode: Vec<f64> = decode_s.iter().map(|s| decoded as f64 / s).collect();
    let prefill_tok_s = median(&mut runs_prefill.clone());
    let decode_tok_s = median(&mut runs_decode.clone());
    eprintln!("assay {}: prompt {} tokens, {} decoded, {} runs", args.model, prompt.len(), args.gen_tokens, args.repeats);
    eprintln!("  prefill {prefill_tok_s:>8.1} tok/s   runs {runs_prefill:.1?}");
    eprintln!("  decode  {decode_tok_s:>8.1} tok/s   runs {runs_decode:.1?}");
    let peak_rss_mib = peak_rss_mib();
    eprintln!("  load {load_s:.2} s, peak resident memory {peak_rss_mib:.0} MiB (KV pool {} MiB)", global.kv_cache_mb);
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}",
        serde_json::json!({
            "engine": "assay", "model": args.model, "threads": threads, "prompt_tokens": prompt.len(),
            "gen_tokens": args.gen_tokens, "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s,
            "load_s": load_s, "peak_rss_mib": peak_rss_mib, "kv_cache_mib": global.kv_cache_mb,
            "runs": {"prefill_tok_s": runs_prefill, "decode_tok_s": runs_decode}
        })
    );
    Ok(())
}

/// The projections of the model's first layer (and its LM head), as the file stores them, timed
/// through each CPU kernel on its blocks and through dense f32 weights.
fn matmul(global: &GlobalOptions, args: &BenchMatmulArgs) -> Result<()> {
    let files = super::resolver(global).resolve(&args.model)?;
    let assay_engine::ModelFiles::Gguf(path) = &files else { anyhow::bail!("bench matmul reads a GGUF file's blocks; {} is not one", args.model) };
    let file = assay_engine::gguf::GgufFile::open(path)?;
    let dev = Device::Cpu;
    let blocks = |name: &str| -> Result<LoadedWeight> { Ok(LoadedWeight::File(file.tensor_blocks(name)?)) };
    let head = if file.has_tensor("output.weight") { "output.weight" } else { "token_embd.weight" };
    let shapes: Vec<(&str, Vec<&str>)> = vec![
        ("qkv", vec!["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"]),
        ("out", vec!["blk.0.attn_output.weight"]),
        ("gate_up", vec!["blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"]),
        ("down", vec!["blk.0.ffn_down.weight"]),
        ("lm_head", vec![head]),
    ];
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
    let mut policies = vec![("dense_f32".to_string(), MatmulPolicy::dense_f32(&dev))];
    for kernel in assay_kernels::cpu::CpuKernel::all_available() {
        policies.push((format!("int8_{kernel:?}").to_lowercase(), MatmulPolicy { weights: WeightCopy::Int8Blocks(kernel), fused_attention: true }));
    }
    let mut results = Vec::new();
    eprintln!("{:<8} {:>6} {:>11} {:>9} {}", "shape", "rows", "GMAC", "formats", policies.iter().map(|(n, _)| format!("{:>14}", format!("{n} ms"))).collect::<String>());
    for (name, tensors) in shapes {
        let parts: Vec<LoadedWeight> = tensors.iter().map(|t| blocks(t)).collect::<Result<_>>()?;
        let formats: Vec<String> = parts.iter().map(|p| if let LoadedWeight::File(b) = p { format!("{:?}", b.dtype) } else { "f32".into() }).collect();
        let projections: Vec<Projection> = policies.iter().map(|(_, p)| Projection::new(parts.clone(), None, *p, &dev)).collect::<candle_core::Result<_>>()?;
        let (n, k) = (projections[0].out_features(), file.tensor_blocks(tensors[0])?.dims[1]);
        for &rows in &args.rows {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
            let ms: Vec<f64> = projections.iter().map(|p| time(p, &x)).collect::<Result<_>>()?;
            let gmac = (rows * n * k) as f64 / 1e9;
            eprintln!("{name:<8} {rows:>6} {gmac:>11.4} {:>9} {}", formats.join("+"), ms.iter().map(|m| format!("{m:>14.3}")).collect::<String>());
            let timings: serde_json::Map<String, serde_json::Value> = policies.iter().zip(&ms).map(|((n, _), m)| (format!("{n}_ms"), serde_json::json!(m))).collect();
            results.push(serde_json::json!({"shape": name, "k": k, "n": n, "rows": rows, "formats": formats, "timings": timings}));
        }
    }
    println!("{}", serde_json::json!({ "engine": "assay", "bench": "matmul", "model": args.model, "threads": candle_core::utils::get_num_threads(), "results": results }));
    Ok(())
}

/// One layer's attention for `sequences` spans that share a `prefix`-token block run, each with
/// `rows` new rows after it: timed through each fused code and the reference, with the
/// multiply-adds of scores and values (`2 * heads * head_dim` per visible key per row) as floor.
fn attention(args: &BenchAttentionArgs) -> Result<()> {
    use assay_engine::attention::{shared_segments, Attention, AttentionCode, CpuAttention, Heads, QuerySpan};
    use assay_engine::kv_pool::{slot_of, KvLayout, KvPool, BLOCK_SIZE};
    let heads = Heads { n_heads: args.heads, n_kv_heads: args.kv_heads, head_dim: args.head_dim };
    anyhow::ensure!(args.sequences > 0 && args.prefix > 0, "--sequences and --prefix must be positive");
    let mut attentions: Vec<(String, Attention)> = Vec::new();
    for code in AttentionCode::all_available() {
        let kernel = CpuAttention::with_code(args.heads, args.kv_heads, args.head_dim, code).context("the fused kernel takes a head size of 64, 128 or 256 and heads a multiple of the kv heads")?;
        attentions.push((format!("fused_{code:?}").to_lowercase(), Attention::Fused(kernel)));
    }
    attentions.push(("reference".into(), Attention::Reference));
    let dev = Device::Cpu;
    let layout = KvLayout { n_layers: 1, n_kv_heads: args.kv_heads, head_dim: args.head_dim, dtype: candle_core::DType::F32 };
    let shared_blocks = args.prefix.div_ceil(BLOCK_SIZE);
    let mut results = Vec::new();
    eprintln!("{:>6} {:>9} {}", "rows", "GMAC", attentions.iter().map(|(n, _)| format!("{:>18}", format!("{n} ms (GMAC/s)"))).collect::<String>());
    for &rows in &args.rows {
        let own_blocks = (args.prefix + rows).div_ceil(BLOCK_SIZE) - shared_blocks + 1;
        let blocks = shared_blocks + args.sequences * own_blocks;
        let mut timings = serde_json::Map::new();
        let mut line = String::new();
        let mut gmac = 0.0;
        for (name, attention) in &attentions {
            let mut pool = KvPool::new(layout, blocks * layout.bytes_per_block(), &dev, attention.wants_cpu_blocks())?;
            let prefix: Vec<u32> = (0..shared_blocks).map(|_| pool.allocate().context("pool sized for the prefix")).collect::<Result<_>>()?;
            let tables: Vec<Vec<u32>> = (0..args.sequences)
                .map(|_| {
                    let own = (0..own_blocks).map(|_| pool.allocate().context("pool sized for every suffix")).collect::<Result<Vec<u32>>>()?;
                    Ok(prefix.iter().copied().chain(own).collect())
                })
                .collect::<Result<_>>()?;
            // Keys and values: the prefix once, then each sequence's rows (prefix rounded up to
            // whole blocks, so that the shared run is complete and each suffix is its own).
            let start = shared_blocks * BLOCK_SIZE;
            let kv = |n: usize| -> Result<Tensor> { Ok(Tensor::randn(0f32, 1.0, (n, args.kv_heads, args.head_dim), &dev)?) };
            pool.write(0, &(0..start).map(|p| slot_of(&tables[0], p)).collect::<Vec<_>>(), &kv(start)?, &kv(start)?)?;
            for table in &tables {
                pool.write(0, &(start..start + rows).map(|p| slot_of(table, p)).collect::<Vec<_>>(), &kv(rows)?, &kv(rows)?)?;
            }
            let total = args.sequences * rows;
            let spans: Vec<QuerySpan<'_>> = tables.iter().enumerate().map(|(i, table)| QuerySpan { offset: i * rows, rows, start, table }).collect();
            let refs: Vec<&[u32]> = tables.iter().map(Vec::as_slice).collect();
            let segments = shared_segments(&refs, &vec![shared_blocks; args.sequences]);
            let q = (Tensor::randn(0f32, 1.0, (total, args.heads, args.head_dim), &dev)? * (args.head_dim as f64).powf(-0.5))?;
            let keys_seen: usize = (0..rows).map(|i| start + i + 1).sum::<usize>() * args.sequences;
            gmac = (2 * args.heads * args.head_dim * keys_seen) as f64 / 1e9;
            attention.attend(&q, &spans, &segments, &pool, 0, None, heads)?;
            let mut runs: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    attention.attend(&q, &spans, &segments, &pool, 0, None, heads).map(|_| t.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<assay_engine::Result<_>>()?;
            let ms = median(&mut runs);
            line.push_str(&format!("{:>18}", format!("{ms:.2} ({:.1})", gmac / ms * 1e3)));
            timings.insert(format!("{name}_ms"), serde_json::json!(ms));
        }
        eprintln!("{rows:>6} {gmac:>9.3} {line}");
        results.push(serde_json::json!({"rows": rows, "gmac": gmac, "timings": timings}));
    }
    let shapes = serde_json::json!({"heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim, "prefix": args.prefix, "sequences": args.sequences});
    println!("{}", serde_json::json!({ "engine": "assay", "bench": "attention", "shapes": shapes, "threads": candle_core::utils::get_num_threads(), "results": results }));
    Ok(())
}

/// K-QA rows (question, physician answer, must-have statements).
fn kqa_rows(path: &Path) -> Result<Vec<serde_json::Value>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(raw.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<serde_json::Result<_>>()?)
}

fn text(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// Workload J1 from K-QA: the first question as input, physician answers as the output (cut
/// so that instructions and item make ~1,000 tokens), and 25 checks of ~60 tokens (with the
/// answer lead-in) made from the questions' must-have statements.
fn j1_workload(path: &Path) -> Result<(Vec<assay_core::JudgeItem>, Vec<assay_core::Check>)> {
    let rows = kqa_rows(path)?;
    let answers: Vec<String> = rows.iter().map(|r| text(r, "Free_form_answer")).collect();
    let output = answers.join("\n\n").chars().take(4500).collect::<String>();
    let item = assay_core::JudgeItem { id: "j1".into(), input: text(&rows[0], "Question"), output, context: None };
    let statements: Vec<String> = rows.iter().flat_map(|r| r["Must_have"].as_array().cloned().unwrap_or_default()).filter_map(|v| v.as_str().map(str::to_string)).collect();
    anyhow::ensure!(statements.len() >= 25, "{} has fewer than 25 must-have statements", path.display());
    let checks = statements
        .iter()
        .take(25)
        .enumerate()
        .map(|(i, s)| assay_core::Check {
            id: format!("c{i:02}"),
            name: format!("states fact {i}"),
            question: format!("Does the output state the following, without contradicting it? \"{s}\""),
            pass_criteria: "the output says this, in any words.".into(),
            fail_examples: vec![],
            threshold: None,
        })
        .collect();
    Ok((vec![item], checks))
}

/// Workload J3, a population as optimisation judges it: one input (the first K-QA question,
/// with its physician answer as context) and 8 candidate outputs (the next 8 answers, up to
/// 600 characters each), x the 25 checks of J2.
fn j3_workload(kqa: &Path, checks: &Path) -> Result<(Vec<assay_core::JudgeItem>, Vec<assay_core::Check>)> {
    let (answered, checks) = j2_workload(kqa, checks)?;
    let (input, context) = (answered[0].input.clone(), Some(answered[0].output.clone()));
    let items = answered[1..9]
        .iter()
        .enumerate()
        .map(|(i, a)| assay_core::JudgeItem { id: format!("candidate-{i}"), input: input.clone(), output: a.output.chars().take(600).collect(), context: context.clone() })
        .collect();
    Ok((items, checks))
}

/// Workload J2: the first 64 K-QA questions with their physician answers, and an evaluator
/// set of 25 checks for medical answers.
fn j2_workload(kqa: &Path, checks: &Path) -> Result<(Vec<assay_core::JudgeItem>, Vec<assay_core::Check>)> {
    let rows = kqa_rows(kqa)?;
    let items: Vec<assay_core::JudgeItem> = rows
        .iter()
        .filter(|r| !text(r, "Free_form_answer").trim().is_empty())
        .take(64)
        .enumerate()
        .map(|(i, r)| assay_core::JudgeItem { id: format!("kqa-{i}"), input: text(r, "Question"), output: text(r, "Free_form_answer"), context: None })
        .collect();
    anyhow::ensure!(items.len() == 64, "{} has {} answered questions, J2 needs 64", kqa.display(), items.len());
    let json = std::fs::read_to_string(checks).with_context(|| format!("reading {}", checks.display()))?;
    let set = assay_core::EvaluatorSet::from_json(&json).with_context(|| format!("checks in {}", checks.display()))?;
    Ok((items, set.checks))
}

fn judge(global: &GlobalOptions, args: &BenchJudgeArgs) -> Result<()> {
    use assay_engine::judge::{judge_prompts, Labels};
    anyhow::ensure!(args.repeats > 0, "repeats must be > 0");
    let (engine, lm) = super::start_engine(global, &args.model, super::engine_config(global))?;
    let (items, checks) = match args.workload.as_str() {
        "j1" => j1_workload(&args.kqa)?,
        "j3" => j3_workload(&args.kqa, &args.j2_checks)?,
        _ => j2_workload(&args.kqa, &args.j2_checks)?,
    };
    let default_modes = match args.workload.as_str() {
        "j1" => "naive,prefix_reuse,packed",
        "j3" => "packed,packed_unshared_inputs",
        _ => "prefix_reuse,packed",
    };
    let wanted: Vec<String> = args.modes.clone().unwrap_or_else(|| default_modes.split(',').map(str::to_string).collect());
    let labels = Labels::default();
    let prompts = judge_prompts(&lm, &items, &checks, &JudgeOptions::default())?;
    let (n_items, n_checks) = (items.len(), checks.len());
    let n = n_items * n_checks;
    let instr = prompts.instructions.len();
    let item_tokens: usize = (0..items.len()).map(|i| prompts.item(i).len()).sum();
    let suffix_tokens: usize = prompts.suffixes.iter().map(Vec::len).sum();
    let workload = args.workload.to_uppercase();
    eprintln!(
        "{workload}: {n_items} item(s) x {n_checks} checks; instructions {instr} tokens, items {:.0} tokens on average ({} distinct inputs), checks {:.0} tokens on average",
        item_tokens as f64 / n_items as f64,
        prompts.inputs.len(),
        suffix_tokens as f64 / n_checks as f64
    );
    let input_tokens: usize = prompts.inputs.iter().map(Vec::len).sum();
    let output_tokens: usize = prompts.outputs.iter().map(Vec::len).sum();
    // Each distinct input once (the prefix tree finds it), or once per item when inputs are not shared.
    let shared_tokens = instr + input_tokens + output_tokens + n_items * suffix_tokens;
    let unshared_tokens = instr + item_tokens + n_items * suffix_tokens;
    // The same items with each input made distinct (its item's id in front): what judging costs
    // when nothing shares an input, batched the same way.
    eprintln!("prompt tokens to compute: {shared_tokens} with shared prefixes, {unshared_tokens} when no input is shared");
    let unshared: Vec<assay_core::JudgeItem> = items.iter().map(|i| assay_core::JudgeItem { input: format!("[{}] {}", i.id, i.input), ..i.clone() }).collect();
    let judge = |items: &[assay_core::JudgeItem], checks: &[assay_core::Check]| -> Result<Vec<f32>> {
        let judged = engine.judge_blocking(items, checks.to_vec(), &labels, Default::default(), &mut |_| {})?;
        Ok(judged.iter().flatten().map(|j| j.p_pass).collect())
    };
    // Every mode starts cold: what an earlier run computed is dropped first.
    type Mode<'a> = (&'a str, usize, Box<dyn Fn() -> Result<Vec<f32>> + 'a>);
    let modes: Vec<Mode> = vec![
        (
            "naive",
            n_checks * (instr + item_tokens) + n_items * suffix_tokens,
            Box::new(|| {
                // Each check a full prompt: nothing kept from the one before.
                let mut out = vec![0f32; n];
                for c in 0..n_checks {
                    engine.clear_prefix_cache()?;
                    for (i, p) in judge(&items, &checks[c..c + 1])?.into_iter().enumerate() {
                        out[i * n_checks + c] = p;
                    }
                }
                Ok(out)
            }),
        ),
        (
            "prefix_reuse",
            unshared_tokens,
            Box::new(|| {
                // Checks one after another, each finding its item's prefix computed.
                engine.clear_prefix_cache()?;
                let mut out = Vec::with_capacity(n);
                for item in &items {
                    for c in 0..n_checks {
                        out.extend(judge(std::slice::from_ref(item), &checks[c..c + 1])?);
                    }
                }
                Ok(out)
            }),
        ),
        (
            "packed",
            shared_tokens,
            Box::new(|| {
                engine.clear_prefix_cache()?;
                judge(&items, &checks)
            }),
        ),
        (
            "packed_unshared_inputs",
            unshared_tokens,
            Box::new(|| {
                engine.clear_prefix_cache()?;
                judge(&unshared, &checks)
            }),
        ),
    ];
    if let Some(path) = &args.dump_workload {
        anyhow::ensure!(n_items == 1, "--dump-workload writes J1 (one item)");
        let ids = |t: &str| lm.tokenizer.encode(t);
        let prefix: Vec<u32> = prompts.instructions.iter().chain(&prompts.item(0)).copied().collect();
        let dump = serde_json::json!({"prefix": prefix, "suffixes": prompts.suffixes, "pass_label": ids(&labels.pass)?, "fail_label": ids(&labels.fail)?});
        std::fs::write(path, dump.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    for m in &wanted {
        anyhow::ensure!(modes.iter().any(|(name, ..)| name == m), "unknown mode '{m}' (naive, prefix_reuse, packed, packed_unshared_inputs)");
    }
    let mut results = Vec::new();
    let mut reference: Option<(String, Vec<f32>)> = None;
    for (name, tokens, run) in wanted.iter().filter_map(|m| modes.iter().find(|(name, ..)| name == m)) {
        // No warm-up run: weights are packed at load, and J2 runs take minutes.
        let mut secs = Vec::with_capacity(args.repeats);
        let mut p_pass = Vec::new();
        for _ in 0..args.repeats {
            let t = Instant::now();
            p_pass = run()?;
            secs.push(t.elapsed().as_secs_f64());
        }
        let deviation = reference.as_ref().map_or(0.0, |(_, r)| r.iter().zip(&p_pass).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
        let reference_name = reference.get_or_insert_with(|| (name.to_string(), p_pass)).0.clone();
        let s = median(&mut secs);
        eprintln!("  {name:<13} {:>7.2} checks/s {:>8.1} prefill tok/s   runs {secs:.2?} s   max |p_pass - {reference_name}| {deviation:.1e}", n as f64 / s, *tokens as f64 / s);
        results.push(serde_json::json!({"mode": name, "checks_per_s": n as f64 / s, "prefill_tok_s": *tokens as f64 / s, "runs_s": secs}));
    }
    let cps = |mode: &str| results.iter().find(|r| r["mode"] == mode).and_then(|r| r["checks_per_s"].as_f64());
    for other in ["naive", "prefix_reuse", "packed_unshared_inputs"] {
        if let (Some(packed), Some(o)) = (cps("packed"), cps(other)) {
            eprintln!("  packed / {other} {:.1}x", packed / o);
        }
    }
    println!(
        "{}",
        serde_json::json!({"engine": "assay", "bench": "judge", "workload": workload, "threads": candle_core::utils::get_num_threads(),
            "items": n_items, "checks": n_checks, "instruction_tokens": instr, "item_tokens": item_tokens, "input_tokens": input_tokens, "suffix_tokens": suffix_tokens, "modes": results})
    );
    Ok(())
}
