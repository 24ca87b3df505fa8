//! `assay export judgments` (a run's judgments as JSONL, the format `assay judge` writes),
//! `assay export set` (a version as JSON that `--checks` reads back) and `assay export sft` /
//! `dpo` (a judge or optimise run's outputs as training data, `assay_pipeline::training_data`). Files are written whole
//! to a temporary name and renamed, so a failed export leaves no half-written file.

use crate::options::{ExportArgs, ExportCommand, GlobalOptions, TrainingRunArgs};
use anyhow::{Context, Result};
use assay_core::Check;
use assay_pipeline::training_data::{dpo_pairs, scored_outputs, sft_records};
use assay_store::RunId;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

pub fn run(global: &GlobalOptions, args: &ExportArgs) -> Result<()> {
    let store = super::open_store(global)?;
    match &args.what {
        ExportCommand::Judgments(export) => {
            let project = super::project(&store, &export.project.project)?;
            let run = store.run(RunId(export.run))?;
            anyhow::ensure!(run.project == project.id, "run {} belongs to another project than '{}'", run.id, project.name);
            let judgments = store.judgments(run.id)?;
            write_output(export.out.as_deref(), &json_lines(&judgments)?)?;
            eprintln!("exported {} judgments of {} run {} ({}, {}/{} done)", judgments.len(), run.kind, run.id, run.status, run.progress_done, run.progress_total);
        }
        ExportCommand::Set(export) => {
            let project = super::project(&store, &export.project.project)?;
            let version = store.set_version(project.id, export.set).with_context(|| format!("project '{}'", project.name))?;
            let exported = ExportedSet {
                version: version.set.version.as_deref(),
                project: &project.name,
                parent: version.parent.map(|p| format!("v{p}")),
                reason: &version.reason,
                content_hash: &version.content_hash,
                created_at: &version.created_at,
                checks: &version.set.checks,
            };
            write_output(export.out.as_deref(), &(serde_json::to_string_pretty(&exported)? + "\n"))?;
            eprintln!("exported version v{} of project '{}' ({} checks)", version.number, project.name, version.set.checks.len());
        }
        ExportCommand::Sft(export) => {
            let (project, run) = training_run(&store, &export.from)?;
            let outputs = scored_outputs(&store, run)?;
            let records = sft_records(&outputs, &project.generation_prompt, export.min_score);
            write_output(export.from.out.as_deref(), &json_lines(&records)?)?;
            eprintln!("exported {} of {} judged outputs of run {run} passing at least {:.0}% of the checks", records.len(), outputs.len(), 100.0 * export.min_score);
        }
        ExportCommand::Dpo(export) => {
            let (_, run) = training_run(&store, &export.from)?;
            let outputs = scored_outputs(&store, run)?;
            let pairs = dpo_pairs(&outputs, export.min_margin);
            write_output(export.from.out.as_deref(), &json_lines(&pairs)?)?;
            eprintln!("exported {} preference pairs from the {} judged outputs of run {run} (margin >= {})", pairs.len(), outputs.len(), export.min_margin);
        }
    }
    Ok(())
}

/// The project and the judge or optimise run training data comes from.
fn training_run(store: &assay_store::Store, args: &TrainingRunArgs) -> Result<(assay_store::Project, RunId)> {
    let project = super::project(store, &args.project.project)?;
    let run = match args.run {
        Some(id) => {
            let run = store.run(RunId(id))?;
            anyhow::ensure!(run.project == project.id, "run {id} belongs to another project than '{}'", project.name);
            run
        }
        None => {
            let set = super::set_version(store, &project, args.set.set)?;
            assay_pipeline::report::report_run(store, &project, &set, None)?
        }
    };
    anyhow::ensure!(matches!(run.kind, assay_store::RunKind::Judge | assay_store::RunKind::Optimise), "run {} is a {} run, not a judge or optimise run", run.id, run.kind);
    Ok((project, run.id))
}

fn json_lines<T: Serialize>(records: &[T]) -> Result<String> {
    let mut text = String::new();
    for r in records {
        text += &serde_json::to_string(r)?;
        text.push('\n');
    }
    Ok(text)
}

/// An evaluator-set version as a file. Read as `--checks`, the fields beside `version` and
/// `checks` are ignored. Serialised directly (not through `serde_json::Value`, which would
/// widen thresholds to f64 and write 0.6 as 0.6000000238418579).
#[derive(Serialize)]
struct ExportedSet<'a> {
    version: Option<&'a str>,
    project: &'a str,
    parent: Option<String>,
    reason: &'a str,
    content_hash: &'a str,
    created_at: &'a str,
    checks: &'a [Check],
}

fn write_output(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        }
        None => Ok(std::io::stdout().lock().write_all(text.as_bytes())?),
    }
}
