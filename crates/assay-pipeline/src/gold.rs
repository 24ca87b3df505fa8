//! Gold outputs (`assay optimise`, `assay critique`): an optimise run evolves the best output
//! of each item of a dataset against an evaluator-set version (`optimise::evolve`) and stores
//! it, with its lineage, as the item's gold output under that version. A run interrupted at
//! any point is found again by its set, dataset, models and options, and optimises only the
//! items that have no gold output yet.
//!
//! The expert critiques gold outputs: a rejected one that passes every check shows the set
//! misses something, so the note and the output go through the check writer, and the check it
//! proposes is raised as a question; a ruling "add ..." adopts it at the next refinement.

use crate::backend::{Backends, Role};
use crate::check_writer::{check_id, critique_request, fallback_check, parse_check};
use crate::config::ProjectConfig;
use crate::error::{PipelineError, Result};
use crate::lease::RunLease;
use crate::optimise::{best_of_n, evolve, fittest, Candidate, GenerationEvent, OptimiseOptions, Task};
use crate::{record_outcome, stable_seed};
use assay_core::Check;
use assay_store::{Dataset, GoldOutput, GoldOutputId, GoldStatus, NewGoldOutput, NewQuestion, Project, QuestionId, Run, RunId, RunKind, RunStatus, SetVersion, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many of a dataset's items an optimise run takes when not told (the first ones).
pub const DEFAULT_OPTIMISE_ITEMS: usize = 10;

/// What an optimise run is asked for; stored in the run's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimiseRunOptions {
    #[serde(flatten)]
    pub search: OptimiseOptions,
    /// Optimise only the dataset's first `items` items (all when absent).
    pub items: Option<usize>,
    /// Also sample best-of-N with the same number of judge evaluations per item.
    pub compare: bool,
}

/// Progress of an optimise run, as the CLI prints it and `/v1/optimise/{id}/events` streams it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OptimiseEvent {
    /// A generation of one item's search was evaluated.
    Generation {
        item: String,
        /// 1-based position of the item among the run's items.
        position: usize,
        items: usize,
        #[serde(flatten)]
        progress: GenerationEvent,
    },
    /// An item's gold output is stored; `stored` counts the run's gold outputs so far.
    Gold { item: String, position: usize, items: usize, stored: usize, passes: usize, checks: usize, score: f32, evaluations: usize, best_of_n: Option<BaselineScore> },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BaselineScore {
    pub passes: usize,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimiseRunReport {
    pub run: Run,
    /// Whether an interrupted run was picked up rather than a new one started.
    pub resumed: bool,
    /// Items optimised by this call (the rest were stored before).
    pub optimised_now: usize,
    pub gold: Vec<GoldOutput>,
    /// Means over the run's gold outputs: passes and sum of P(PASS).
    pub mean_passes: f64,
    pub mean_score: f64,
    /// The same means for best-of-N, when compared.
    pub best_of_n: Option<(f64, f64)>,
}

/// The optimise run for `set` on `dataset` with these options and the project's generator
/// and judge: an unfinished one with the same parameters to resume, or a new queued one.
pub fn start_optimise_run(store: &mut Store, backends: &Backends, project: &Project, set: &SetVersion, dataset: &Dataset, options: &OptimiseRunOptions) -> Result<(Run, bool)> {
    options.search.validate()?;
    if options.items == Some(0) {
        return Err(PipelineError::Invalid("optimise at least one item".into()));
    }
    if set.set.checks.is_empty() {
        return Err(assay_core::InputError::NoChecks.into());
    }
    let (generator, judge) = roles(backends, project)?;
    let params = json!({"generator": generator.describe(), "judge": judge.describe(), "options": options});
    Ok(store.resumable_run(project.id, &assay_store::NewRun { kind: RunKind::Optimise, set_version: Some(set.id), dataset: Some(dataset.id), params })?)
}

fn roles(backends: &Backends, project: &Project) -> Result<(Role, Role)> {
    let config = ProjectConfig::of(project)?;
    Ok((backends.role(&config.roles.generator)?, backends.role(&config.roles.judge)?))
}

/// Optimises the run's items that have no gold output yet, storing each as it is found; the
/// run ends done or failed.
pub fn run_optimisation(store: &mut Store, backends: &Backends, project: &Project, run: RunId, events: &mut dyn FnMut(&OptimiseEvent)) -> Result<OptimiseRunReport> {
    let this = store.run(run)?;
    let (RunKind::Optimise, Some(set), Some(dataset)) = (this.kind, this.set_version, this.dataset) else {
        return Err(PipelineError::Invalid(format!("run {run} is a {} run, not an optimise run", this.kind)));
    };
    let options: OptimiseRunOptions = serde_json::from_value(this.params["options"].clone()).map_err(|e| PipelineError::Invalid(format!("run {run}'s stored options: {e}")))?;
    let set = store.set_version_by_id(set)?;
    let lease = RunLease::claim(store, run)?;
    let resumed = this.status != RunStatus::Queued;
    store.set_run_status(run, RunStatus::Running, None)?;
    let optimised = optimise_pending(store, backends, project, (run, dataset, &lease), &set, &options, events);
    let optimised_now = record_outcome(store, run, optimised);
    lease.release(store)?;
    let optimised_now = optimised_now?;
    let gold = store.run_gold_outputs(run)?;
    let mean = |f: &dyn Fn(&GoldOutput) -> f64| gold.iter().map(f).sum::<f64>() / gold.len().max(1) as f64;
    let baselines: Vec<Candidate> = gold.iter().filter_map(|g| g.found.best_of_n.clone().and_then(|b| serde_json::from_value(b).ok())).collect();
    let best_of_n = (options.compare && !baselines.is_empty()).then(|| {
        let n = baselines.len() as f64;
        (baselines.iter().map(|b| b.passes as f64).sum::<f64>() / n, baselines.iter().map(|b| b.score() as f64).sum::<f64>() / n)
    });
    Ok(OptimiseRunReport {
        run: store.run(run)?,
        resumed,
        optimised_now,
        mean_passes: mean(&|g| g.found.passes as f64),
        mean_score: mean(&|g| g.found.p_pass.iter().map(|&p| p as f64).sum()),
        best_of_n,
        gold,
    })
}

/// Optimises the items of `run` (on `dataset`) that have no gold output; returns how many.
fn optimise_pending(
    store: &mut Store,
    backends: &Backends,
    project: &Project,
    (run, dataset, lease): (RunId, assay_store::DatasetId, &RunLease),
    set: &SetVersion,
    options: &OptimiseRunOptions,
    events: &mut dyn FnMut(&OptimiseEvent),
) -> Result<usize> {
    let (generator, judge) = roles(backends, project)?;
    let mut items = store.items(dataset)?;
    items.truncate(options.items.unwrap_or(usize::MAX));
    if items.is_empty() {
        return Err(PipelineError::Invalid("the dataset has no items to optimise".into()));
    }
    let done: Vec<_> = store.run_gold_outputs(run)?.into_iter().map(|g| g.found.item).collect();
    let total = items.len();
    store.set_run_progress(run, done.len() as u64, total as u64)?;
    let mut optimised = 0;
    for (n, item) in items.iter().enumerate().filter(|(_, i)| !done.contains(&i.id)) {
        lease.renew(store)?;
        let (key, position) = (item.fields.key.as_str(), n + 1);
        let task = Task { generator: &generator, judge: &judge, prompt: &project.generation_prompt, input: &item.fields.input, context: item.fields.context.as_deref(), checks: &set.set.checks };
        let mut evolution = evolve(&task, &options.search, &mut |progress| events(&OptimiseEvent::Generation { item: key.to_string(), position, items: total, progress: progress.clone() }))?;
        let baseline = options.compare.then(|| best_of_n(&task, evolution.evaluations, &options.search)).transpose()?;
        // The expert's rejections stand: an output rejected under this version is not gold
        // again (a rerun of the same search finds it again), unless nothing else was found.
        let rejected = store.rejected_outputs(set.id, item.id)?;
        let candidates = &evolution.candidates;
        if let Some(chosen) = fittest(candidates, (0..candidates.len()).filter(|&i| !rejected.contains(&candidates[i].text))) {
            evolution.best = chosen;
        }
        let best = evolution.best();
        store.insert_gold_output(
            run,
            &NewGoldOutput {
                item: item.id,
                output: best.text.clone(),
                p_pass: best.p_pass.clone(),
                passes: best.passes,
                evaluations: evolution.evaluations,
                lineage: serde_json::to_value(&evolution).expect("candidates serialise"),
                best_of_n: baseline.as_ref().map(|b| serde_json::to_value(b).expect("candidates serialise")),
            },
        )?;
        optimised += 1;
        store.set_run_progress(run, (done.len() + optimised) as u64, total as u64)?;
        events(&OptimiseEvent::Gold {
            item: key.to_string(),
            position,
            items: total,
            stored: done.len() + optimised,
            passes: best.passes,
            checks: set.set.checks.len(),
            score: best.score(),
            evaluations: evolution.evaluations,
            best_of_n: baseline.map(|b| BaselineScore { passes: b.passes, score: b.score() }),
        });
    }
    Ok(optimised)
}

/// What a critique did.
#[derive(Debug, Clone, Serialize)]
pub struct Critique {
    pub gold: GoldOutput,
    /// The check the check writer proposed, when the rejected output passed every check.
    pub candidate_check: Option<Check>,
    /// The question that proposes it.
    pub question: Option<QuestionId>,
    /// Whether the check writer's answer was unreadable, so the check was built from the note.
    pub from_note: bool,
}

/// Most tokens of the check writer's answer to a critique.
const CRITIQUE_TOKENS: usize = 160;

/// Rejects a gold output of `project` with the expert's `note`. When it passes every check of
/// its version, the check writer turns note and output into a candidate check, raised as a
/// question (with the rejection, in one transaction).
pub fn critique(store: &mut Store, backends: &Backends, project: &Project, gold: GoldOutputId, note: &str, seed: u64) -> Result<Critique> {
    let found = store.gold_output(gold)?;
    if store.run(found.run)?.project != project.id {
        return Err(assay_store::StoreError::NotFound { what: format!("gold output {gold} of project '{}'", project.name) }.into());
    }
    if found.status == GoldStatus::Rejected {
        return Err(assay_store::StoreError::Conflict(format!("gold output {gold} is already rejected")).into());
    }
    if note.trim().is_empty() {
        return Err(PipelineError::Invalid("a critique needs a note saying what is wrong".into()));
    }
    let set = store.set_version_by_id(found.set_version)?;
    let item = store.item(found.found.item)?;
    let mut proposal = None;
    if found.found.passes == set.set.checks.len() {
        let config = ProjectConfig::of(project)?;
        let writer = backends.role(&config.roles.check_writer)?;
        let request = critique_request(&project.generation_prompt, &item.fields.input, &found.found.output, note.trim(), CRITIQUE_TOKENS, stable_seed(seed, &["critique", &gold.to_string()]));
        let answer = writer.chat(&[request], &mut |_| {})?.remove(0);
        let prefix = format!("g{gold}");
        let (check, from_note) = match answer.ok().as_deref().and_then(parse_check) {
            Some((question, pass_criteria, fail_examples)) => (Check { id: check_id(&prefix, &question), name: String::new(), question, pass_criteria, fail_examples, threshold: None }, false),
            None => (fallback_check(check_id(&prefix, note), &[note.trim()]), true),
        };
        let question = NewQuestion {
            item: Some(item.id),
            check: None,
            why: format!(
                "The expert rejected the gold output of item '{}', which passes every check of v{}: \"{}\". Proposed check '{}': {}",
                item.fields.key,
                set.number,
                note.trim(),
                check.id,
                check.question
            ),
            options: vec!["add the check".into(), "no new check needed".into()],
            proposed_check: Some(check),
        };
        proposal = Some((question, from_note));
    }
    let (gold, question) = store.reject_gold_output(gold, note, proposal.as_ref().map(|(q, _)| q))?;
    Ok(Critique { gold, from_note: proposal.as_ref().is_some_and(|(_, f)| *f), candidate_check: proposal.and_then(|(q, _)| q.proposed_check), question })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimise::tests::{checks, Counting};
    use assay_core::EvaluatorSet;
    use assay_store::{NewItem, NewProject};
    use std::sync::Arc;

    fn options(items: usize) -> OptimiseRunOptions {
        OptimiseRunOptions { search: OptimiseOptions { generations: 10, population: 4, budget: 40, seed: 2, max_tokens: 8, rationales: false }, items: Some(items), compare: true }
    }

    /// A project of `n` items ("Give number i.") and a version of `checks` scripted checks, in a
    /// fresh store, with the scripted backend.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        backends: Backends,
        project: Project,
        dataset: Dataset,
        set: SetVersion,
    }

    fn fixture(n: usize, checks_in_set: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("assay.db")).unwrap();
        let project = store.create_project(&NewProject { name: "p".into(), generation_prompt: "Count.".into(), ..Default::default() }).unwrap();
        let items: Vec<NewItem> = (0..n).map(|i| NewItem { key: format!("k{i}"), input: format!("Give number {i}."), ..Default::default() }).collect();
        let dataset = store.import_dataset(project.id, "d", "", &items).unwrap();
        let set = store.create_set_version(project.id, &EvaluatorSet { version: None, checks: checks(checks_in_set) }, "scripted").unwrap();
        Fixture { _dir: dir, store, backends: Backends::new(Arc::new(Counting)), project, dataset, set }
    }

    #[test]
    fn an_interrupted_run_resumes_with_the_items_it_has_no_gold_for() {
        let Fixture { mut store, backends, project, dataset, set, .. } = fixture(4, 3);
        let (run, resumed) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(3)).unwrap();
        assert!(!resumed);
        // As if killed after the first item: its gold output stored, the run left running.
        store.set_run_status(run.id, RunStatus::Running, None).unwrap();
        let first = store.items(dataset.id).unwrap()[0].id;
        store
            .insert_gold_output(
                run.id,
                &NewGoldOutput {
                    item: first,
                    output: "7".into(),
                    p_pass: vec![0.9; 3],
                    passes: 3,
                    evaluations: 1,
                    lineage: json!({"candidates": [], "best": 0, "evaluations": 1, "generations": 0}),
                    best_of_n: None,
                },
            )
            .unwrap();

        let (again, resumed) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(3)).unwrap();
        assert_eq!((again.id, resumed), (run.id, true));
        let mut events = Vec::new();
        let report = run_optimisation(&mut store, &backends, &project, run.id, &mut |e| events.push(e.clone())).unwrap();
        assert_eq!((report.resumed, report.optimised_now, report.gold.len(), report.run.status), (true, 2, 3, RunStatus::Done));
        assert_eq!(report.gold[0].found.output, "7", "the stored gold output is kept");
        let golds: Vec<&str> = events.iter().filter_map(|e| if let OptimiseEvent::Gold { item, .. } = e { Some(item.as_str()) } else { None }).collect();
        assert_eq!(golds, ["k1", "k2"], "only the items without a gold output; the fourth is beyond --items");
        assert!(report.gold[1..].iter().all(|g| g.found.passes == 3 && g.found.best_of_n.is_some()), "the scripted searches reach every check");
        // A finished run is not resumed: the same request starts a new one.
        let (fresh, resumed) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(3)).unwrap();
        assert!(fresh.id != run.id && !resumed);
    }

    #[test]
    fn a_rejected_output_is_not_gold_again_when_the_search_finds_it_again() {
        let Fixture { mut store, backends, project, dataset, set, .. } = fixture(1, 3);
        let (first, _) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(1)).unwrap();
        let gold = run_optimisation(&mut store, &backends, &project, first.id, &mut |_| {}).unwrap().gold.remove(0);
        critique(&mut store, &backends, &project, gold.id, "not this one", 0).unwrap();
        let (second, _) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(1)).unwrap();
        let again = run_optimisation(&mut store, &backends, &project, second.id, &mut |_| {}).unwrap().gold.remove(0);
        let lineage: crate::optimise::Evolution = serde_json::from_value(again.found.lineage.clone()).unwrap();
        assert!(lineage.candidates.iter().any(|c| c.text == gold.found.output), "the same search found it again");
        assert_ne!(again.found.output, gold.found.output);
        assert_eq!(lineage.best().text, again.found.output, "the lineage names the chosen output");
    }

    #[test]
    fn a_critique_of_an_output_that_fails_checks_proposes_nothing() {
        let Fixture { mut store, backends, project, dataset, set, .. } = fixture(1, 2);
        let (run, _) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options(1)).unwrap();
        store.set_run_status(run.id, RunStatus::Running, None).unwrap();
        let item = store.items(dataset.id).unwrap()[0].id;
        let gold = store.insert_gold_output(run.id, &NewGoldOutput { item, output: "1".into(), p_pass: vec![0.9, 0.1], passes: 1, evaluations: 2, lineage: json!({}), best_of_n: None }).unwrap();
        assert!(matches!(critique(&mut store, &backends, &project, gold.id, "", 0), Err(PipelineError::Invalid(_))));
        let done = critique(&mut store, &backends, &project, gold.id, "too small", 0).unwrap();
        assert_eq!((done.candidate_check, done.question, done.gold.status), (None, None, GoldStatus::Rejected));
        assert!(store.questions(project.id, None).unwrap().is_empty());
    }
}
