//! `assay run`: an evaluator-set version judged on a dataset, stored chunk by chunk; an
//! interrupted run with the same parameters is resumed.

use crate::options::{GlobalOptions, RunArgs};
use anyhow::{Context, Result};
use assay_pipeline::{run_judging, start_judge_run};

pub fn run(global: &GlobalOptions, args: &RunArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let dataset = super::dataset(&store, &project, args.dataset.data.as_deref())?;
    let backends = super::backends(global)?;
    let options = args.options.judge_options();
    eprintln!("judging dataset '{}' ({} items) with v{} ({} checks)", dataset.name, dataset.item_count, set.number, set.set.checks.len());
    let mut line = super::ProgressLine::new();
    let (run, _) = start_judge_run(&mut store, &backends, &project, &set, &dataset, &options).with_context(|| format!("starting a judge run of v{} on '{}'", set.number, dataset.name))?;
    let report = run_judging(&mut store, &backends, &project, run.id, args.chunk_items, &mut |stage, done, total| line.update(stage, done, total));
    line.finish();
    let report = report.with_context(|| format!("judging dataset '{}' with v{}", dataset.name, set.number))?;
    println!(
        "run {} {}: {} judgments made now, {} reused from runs of identical checks, {}/{} stored; {} ambiguous judgments raised as questions",
        report.run.id,
        if report.resumed { "resumed and finished" } else { "finished" },
        report.judged_now,
        report.reused,
        report.run.progress_done,
        report.run.progress_total,
        report.questions
    );
    Ok(())
}
