//! `assay discover`: outputs, their errors, the error taxonomy and the checks made from it,
//! stored as the project's next evaluator-set version.

use crate::options::{DiscoverArgs, GlobalOptions};
use anyhow::{Context, Result};
use assay_pipeline::{discover, DiscoverOptions};

pub fn run(global: &GlobalOptions, args: &DiscoverArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let dataset = super::dataset(&store, &project, args.dataset.data.as_deref())?;
    let backends = super::backends(global)?;
    eprintln!("discovering checks for '{}' on dataset '{}' ({} items), keeping up to {}", project.name, dataset.name, dataset.item_count, args.checks);
    let mut line = super::ProgressLine::new();
    let report = discover(&mut store, &backends, &project, &dataset, &DiscoverOptions { checks: args.checks, seed: args.seed }, &mut |stage, done, total| line.update(stage, done, total));
    line.finish();
    let report = report.with_context(|| format!("discovery for project '{}'", project.name))?;
    println!(
        "discovery run {}: {} generations ({} failed) in dataset '{}'; {} annotations ({} unreadable), {} errors in {} clusters",
        report.run, report.generations, report.failed_generations, report.outputs_dataset, report.annotations, report.unparseable_annotations, report.errors, report.clusters
    );
    println!(
        "evaluator-set version v{}: {} checks from clusters ({} written from the errors: the check writer's answer was unreadable), {} from prompt constraints; {} questions for the expert",
        report.set_version, report.checks_from_clusters, report.fallback_checks, report.checks_from_prompt, report.questions
    );
    Ok(())
}
