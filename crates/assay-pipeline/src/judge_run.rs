//! Judge runs (`assay run`): every check of an evaluator-set version on every item of a
//! dataset, through the judge role (the packed judge when local), stored chunk by chunk.
//! A run that was interrupted (killed, failed) is found again by its set, dataset, judge and
//! options and resumed: only the (item, check) pairs without a judgment are judged, and the
//! store refuses duplicates, so nothing is lost and nothing is judged twice.

use crate::backend::Backends;
use crate::config::ProjectConfig;
use crate::error::{PipelineError, Result};
use crate::lease::RunLease;
use crate::questions::raise_ambiguities;
use crate::{record_outcome, Progress};
use assay_core::{Check, JudgeItem, JudgeOptions};
use assay_store::{Dataset, DatasetId, NewRun, PendingPair, Project, Run, RunId, RunKind, RunStatus, SetVersion, Store};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// Most items judged between two writes to the store: large enough to fill packed passes,
/// small enough that an interruption loses little work.
pub const DEFAULT_CHUNK_ITEMS: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct JudgeRunReport {
    pub run: Run,
    /// Whether an interrupted run was picked up rather than a new one started.
    pub resumed: bool,
    /// Judgments made by this call (the rest were stored before or reused).
    pub judged_now: usize,
    /// Judgments copied from earlier finished runs on the same dataset with the same judge and
    /// options, for checks identical in every field (a refined set re-judges only what changed).
    pub reused: usize,
    /// Ambiguous judgments raised as questions for the expert.
    pub questions: usize,
}

/// The judge run for `set` on `dataset` with these options: an unfinished one with the same
/// parameters (judge, options) to resume, or a new queued one. Returns it and whether it is
/// resumed. `run_judging` carries it out.
pub fn start_judge_run(store: &mut Store, backends: &Backends, project: &Project, set: &SetVersion, dataset: &Dataset, options: &JudgeOptions) -> Result<(Run, bool)> {
    options.validate()?;
    let config = ProjectConfig::of(project)?;
    let judge = backends.role(&config.roles.judge)?;
    let params = json!({"judge": judge.describe(), "options": options});
    Ok(store.resumable_run(project.id, &NewRun { kind: RunKind::Judge, set_version: Some(set.id), dataset: Some(dataset.id), params })?)
}

/// Judges the run's pending pairs, chunk by chunk, then raises its ambiguities as questions;
/// the run ends done or failed.
pub fn run_judging(store: &mut Store, backends: &Backends, project: &Project, run: RunId, chunk_items: usize, progress: Progress) -> Result<JudgeRunReport> {
    let this = store.run(run)?;
    let (Some(set), Some(dataset)) = (this.set_version, this.dataset) else {
        return Err(PipelineError::Invalid(format!("run {run} is a {} run, not a judge run", this.kind)));
    };
    let options = run_options(&this)?;
    let config = ProjectConfig::of(project)?;
    let judge = backends.role(&config.roles.judge)?;
    let set = store.set_version_by_id(set)?;
    let lease = RunLease::claim(store, run)?;
    // A new run is queued; one that was started before (and killed or failed) is resumed.
    let resumed = this.status != RunStatus::Queued;
    store.set_run_status(run, RunStatus::Running, None)?;
    let reused = reuse_identical_judgments(store, project, &this, &set)?;
    // The questions are raised before the run reads "done": whoever waits for it then finds them.
    let judged = judge_pending(store, &judge, &set, (run, dataset, &lease), &options, chunk_items.max(1), progress).and_then(|judged_now| Ok((judged_now, raise_ambiguities(store, project, run)?)));
    let judged = record_outcome(store, run, judged);
    lease.release(store)?;
    let (judged_now, questions) = judged?;
    Ok(JudgeRunReport { run: store.run(run)?, resumed, judged_now, reused, questions })
}

/// The judge options a judge run was started with.
pub fn run_options(run: &Run) -> Result<JudgeOptions> {
    let invalid = |e: String| PipelineError::Invalid(format!("run {}'s stored options: {e}", run.id));
    let options: JudgeOptions = serde_json::from_value(run.params["options"].clone()).map_err(|e| invalid(e.to_string()))?;
    // Stored by an older build, options past today's bounds fail the run instead of the process.
    options.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(options)
}

/// Copies into `run` the judgments that finished runs with the same dataset and parameters
/// made for checks identical to one of `set`'s (same id, wording, examples and threshold): the
/// judge would answer them the same way. Returns how many were new to the run.
fn reuse_identical_judgments(store: &mut Store, project: &Project, run: &Run, set: &SetVersion) -> Result<usize> {
    let mut reused = 0;
    for earlier in store.runs(project.id)? {
        if earlier.id == run.id || earlier.kind != RunKind::Judge || earlier.status != RunStatus::Done || earlier.dataset != run.dataset || earlier.params != run.params {
            continue;
        }
        let Some(version) = earlier.set_version.filter(|v| Some(*v) != run.set_version) else { continue };
        let old = store.set_version_by_id(version)?;
        let same: Vec<&str> = set.set.checks.iter().filter(|c| old.set.checks.contains(c)).map(|c| c.id.as_str()).collect();
        if same.is_empty() {
            continue;
        }
        let judgments: Vec<_> = store.judgments(earlier.id)?.into_iter().filter(|j| same.contains(&j.check_id.as_str())).collect();
        reused += store.insert_judgments(run.id, &judgments)?;
    }
    Ok(reused)
}

/// Judges the pending pairs of `run` (whose set and dataset are `set` and `dataset`).
fn judge_pending(
    store: &mut Store,
    judge: &crate::backend::Role,
    set: &SetVersion,
    (run, dataset, lease): (RunId, DatasetId, &RunLease),
    options: &JudgeOptions,
    chunk_items: usize,
    progress: Progress,
) -> Result<usize> {
    let pending = store.pending_pairs(run)?;
    let total = store.run(run)?.progress_total as usize;
    let already = total - pending.len();
    let items: HashMap<String, JudgeItem> = store.items(dataset)?.iter().filter_map(|i| i.to_judge_item().map(|j| (j.id.clone(), j))).collect();
    let checks: HashMap<&str, &Check> = set.set.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut judged = 0;
    for chunk in chunks(&pending, chunk_items) {
        lease.renew(store)?;
        let chunk_items: Vec<JudgeItem> =
            chunk.items.iter().map(|key| items.get(*key).cloned().ok_or_else(|| PipelineError::Invalid(format!("item '{key}' has no output to judge")))).collect::<Result<_>>()?;
        let chunk_checks: Vec<Check> = chunk.checks.iter().map(|c| (*checks[c]).clone()).collect();
        let before = already + judged;
        let per_item = judge.judge(&chunk_items, &chunk_checks, options, &mut |done| progress("judging", before + done, total))?;
        let judgments: Vec<_> = per_item.into_iter().flatten().collect();
        judged += store.insert_judgments(run, &judgments)?;
        progress("judging", already + judged, total);
    }
    Ok(judged)
}

/// Consecutive items with the same pending checks, at most `size` items each.
struct Chunk<'a> {
    items: Vec<&'a str>,
    checks: Vec<&'a str>,
}

fn chunks(pending: &[PendingPair], size: usize) -> Vec<Chunk<'_>> {
    let mut per_item: Vec<(&str, Vec<&str>)> = Vec::new();
    for p in pending {
        match per_item.last_mut() {
            Some((key, checks)) if *key == p.item_key => checks.push(&p.check),
            _ => per_item.push((&p.item_key, vec![&p.check])),
        }
    }
    let mut out: Vec<Chunk> = Vec::new();
    for (item, checks) in per_item {
        match out.last_mut() {
            Some(c) if c.checks == checks && c.items.len() < size => c.items.push(item),
            _ => out.push(Chunk { items: vec![item], checks }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_store::ItemId;

    fn pair(item: &str, check: &str) -> PendingPair {
        PendingPair { item: ItemId(0), item_key: item.into(), check: check.into() }
    }

    #[test]
    fn chunks_group_items_with_the_same_pending_checks() {
        let pending = vec![pair("a", "c2"), pair("b", "c1"), pair("b", "c2"), pair("c", "c1"), pair("c", "c2"), pair("d", "c1"), pair("d", "c2")];
        let chunks = chunks(&pending, 2);
        let shape: Vec<(Vec<&str>, Vec<&str>)> = chunks.into_iter().map(|c| (c.items, c.checks)).collect();
        assert_eq!(shape, vec![(vec!["a"], vec!["c2"]), (vec!["b", "c"], vec!["c1", "c2"]), (vec!["d"], vec!["c1", "c2"])]);
    }
}
