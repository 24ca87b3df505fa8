//! `assay judge`: every check of an evaluator set asked of every item through the judge model's
//! engine, with progress and a summary. Judgments are written whole at the end (to a temporary file renamed over `--out`),
//! so an interrupted run leaves no half-written output.

use crate::options::{GlobalOptions, JudgeArgs};
use anyhow::{Context, Result};
use assay_core::{parse_items_jsonl, EvaluatorSet, ItemScore, Judgment, Verdict};
use assay_engine::judge::Labels;
use std::io::Write;
use std::time::Instant;

pub fn run(global: &GlobalOptions, args: &JudgeArgs) -> Result<()> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let set = EvaluatorSet::from_json(&read(&args.checks)?).with_context(|| format!("checks in {}", args.checks.display()))?;
    let items = parse_items_jsonl(&read(&args.items)?).with_context(|| format!("items in {}", args.items.display()))?;
    let labels = Labels { pass: args.pass_label.clone(), fail: args.fail_label.clone() };
    let options = args.options.judge_options();
    options.validate()?;
    let (engine, _) = super::start_engine(global, &args.model, super::engine_config(global))?;
    let (n_items, n_checks) = (items.len(), set.checks.len());
    let total = n_items * n_checks;
    eprintln!(
        "judging {n_items} items x {n_checks} checks (set {}) with {}, {}",
        &set.content_hash()[..12],
        args.model,
        if options.generates_rationales() { format!("rationales first ({} per check)", options.samples) } else { "verdict only".into() }
    );
    let started = Instant::now();
    let mut progress = |done: usize| {
        let secs = started.elapsed().as_secs_f64();
        let rate = done as f64 / secs;
        let eta = if done > 0 { format!(", ETA {:.0}s", (total - done) as f64 / rate) } else { String::new() };
        eprint!("\r[{}/{n_items} items] {:.2} items/s, {rate:.1} checks/s{eta}   ", done / n_checks, rate / n_checks as f64);
    };
    let per_item = engine.judge_blocking(&items, set.checks.clone(), &labels, options, &mut progress)?;
    let scores: Vec<ItemScore> = items.iter().zip(&per_item).map(|(item, js)| ItemScore::of(&item.id, js)).collect();
    let judgments: Vec<Judgment> = per_item.into_iter().flatten().collect();
    eprintln!();
    let mut text = String::new();
    for j in &judgments {
        text.push_str(&serde_json::to_string(j)?);
        text.push('\n');
    }
    match &args.out {
        Some(path) => {
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            eprintln!("wrote {} judgments to {}", judgments.len(), path.display());
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    summarise(&set, &judgments, &scores, started.elapsed().as_secs_f64());
    let s = engine.stats().scheduler;
    eprintln!(
        "prefix tree: {} of {} prompt tokens reused ({:.0}%); KV cache: {} of {} blocks in use, {} preemptions",
        s.reused_tokens,
        s.prompt_tokens,
        100.0 * s.reused_tokens as f64 / s.prompt_tokens.max(1) as f64,
        s.pool.used,
        s.pool.blocks,
        s.preemptions
    );
    Ok(())
}

/// Runs of at most this many items list each item's score in the summary.
const ITEMS_LISTED: usize = 20;

fn summarise(set: &EvaluatorSet, judgments: &[Judgment], scores: &[ItemScore], secs: f64) {
    let total = set.checks.len();
    eprintln!("{} judgments in {secs:.1}s ({:.1} checks/s)", judgments.len(), judgments.len() as f64 / secs);
    eprintln!("score distribution (passed/{total}: items):");
    for passed in (0..=total).rev() {
        let n = scores.iter().filter(|s| s.passed == passed).count();
        if n > 0 {
            eprintln!("  {passed:>3}/{total}: {n:>5} {}", "#".repeat(n.min(60)));
        }
    }
    // A handful of items (the README's pairs) read best one by one, in input order.
    if scores.len() <= ITEMS_LISTED {
        eprintln!("per item (passed/{total}, sum of P(PASS)):");
        for s in scores {
            let p: f32 = judgments.iter().filter(|j| j.item_id == s.item_id).map(|j| j.p_pass).sum();
            eprintln!("  {:<28} {:>3}/{total}  {p:>6.2}", s.item_id, s.passed);
        }
    }
    eprintln!("per-check pass rate (mean P(pass), mean off-format mass{}):", if judgments.iter().any(|j| j.flip_rate.is_some()) { ", mean flip rate" } else { "" });
    for c in &set.checks {
        let mine: Vec<&Judgment> = judgments.iter().filter(|j| j.check_id == c.id).collect();
        let n = mine.len().max(1) as f32;
        let rate = mine.iter().filter(|j| j.verdict == Verdict::Pass).count() as f32 / n;
        let p = mine.iter().map(|j| j.p_pass).sum::<f32>() / n;
        let off = mine.iter().map(|j| j.off_format_mass).sum::<f32>() / n;
        let flips: Vec<f32> = mine.iter().filter_map(|j| j.flip_rate).collect();
        let flip = if flips.is_empty() { String::new() } else { format!(", {:.3}", flips.iter().sum::<f32>() / flips.len() as f32) };
        eprintln!("  {:<28} {:>5.1}%  ({p:.3}, {off:.3}{flip})", c.id, 100.0 * rate);
    }
}
