//! `assay report`: per-check consistency, separation, cohesion, agreement and calibration of an
//! evaluator-set version, from one of its judge runs, as a table (or JSON) and SVG plots.

use crate::options::{GlobalOptions, ReportArgs};
use anyhow::{Context, Result};
use assay_pipeline::report::{report, report_run, SetReport};
use assay_store::RunId;

pub fn run(global: &GlobalOptions, args: &ReportArgs) -> Result<()> {
    let store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let run = report_run(&store, &project, &set, args.run.map(RunId))?;
    let dir = args.plots.clone().unwrap_or_else(|| format!("reports/project-{}-v{}", project.id, set.number).into());
    let backends = super::backends(global)?;
    let report = report(&store, &backends, &project, &set, &run, Some(&dir)).with_context(|| format!("reporting on v{} of '{}'", set.number, project.name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn render(r: &SetReport) -> String {
    let mut out = format!("v{} of '{}': run {} ({}) of judge {} on dataset '{}', {} items\n", r.set, r.project, r.run, r.run_status.as_str(), r.judge, r.dataset, r.items);
    out.push_str(&format!(
        "{:<32} {:>5} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6}\n",
        "check", "n", "pass", "p_mean", "clear", "flip", "j-disag", "auroc", "cohes.", "labels", "acc", "kappa", "F-prec", "F-rec", "ECE"
    ));
    for c in &r.checks {
        let a = c.agreement;
        out.push_str(&format!(
            "{:<32} {:>5} {:>6.2} {:>6.2} {:>6} {:>6} {:>7} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6}\n",
            c.id.chars().take(32).collect::<String>(),
            c.judged,
            c.pass_rate,
            c.mean_p_pass,
            cell(c.clear_fraction),
            cell(c.flip_rate),
            cell(c.judge_disagreement),
            cell(c.separation.as_ref().and_then(|s| s.auroc)),
            cell(c.cohesion),
            a.map_or("-".into(), |a| a.n.to_string()),
            cell(a.map(|a| a.accuracy)),
            cell(a.and_then(|a| a.kappa)),
            cell(a.and_then(|a| a.fail_precision)),
            cell(a.and_then(|a| a.fail_recall)),
            cell(c.reliability.as_ref().map(|r| r.ece)),
        ));
        if let Some(cal) = c.calibration {
            out.push_str(&format!("{:<32} threshold calibrated on labels: {:.3} (accuracy {:.2}, kappa {})\n", "", cal.threshold, cal.accuracy, cell(cal.kappa)));
        }
    }
    match r.agreement {
        Some(a) => out.push_str(&format!(
            "overall agreement with expert labels: {} pairs, accuracy {:.2}, kappa {}, FAIL precision {}, FAIL recall {}\n",
            a.n,
            a.accuracy,
            cell(a.kappa),
            cell(a.fail_precision),
            cell(a.fail_recall)
        )),
        None => out.push_str("no expert labels on this dataset (add some with `assay label`)\n"),
    }
    if let Some(rel) = &r.reliability {
        let bins: Vec<String> = rel.bins.iter().map(|b| format!("{:.1}-{:.1}: {} at mean {:.2}, expert PASS {:.2}", b.lo, b.hi, b.n, b.mean_p_pass, b.observed_pass_rate)).collect();
        out.push_str(&format!("calibration of P(PASS) on labelled pairs: ECE {:.3}; bins {}\n", rel.ece, bins.join("; ")));
    }
    out.push_str(&format!("Spearman of item totals against the expert's: {}\n", cell(r.total_spearman)));
    if let Some(rec) = &r.reference_recovery {
        out.push_str(&format!("reference statements recovered by the checks: {}/{} (cosine similarity >= {})\n", rec.recovered, rec.statements, rec.similarity));
    }
    for p in &r.plots {
        out.push_str(&format!("plot: {}\n", p.display()));
    }
    out
}
