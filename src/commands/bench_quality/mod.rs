//! `assay bench quality`: how well an evaluator set agrees with the expert's labels on held-out
//! items, for each dataset of `../shared/data` and four ways of getting the set:
//! (a) one holistic check, (b) a generic set of five, (c) the set discovery writes from the
//! train split, (d) that set after each round of the loop with an expert simulated from the
//! train split's labels (run on train, label, answer the questions, refine).
//!
//! The simulated expert labels what a label of a whole output says: a good output passes every
//! check (a PASS label per check), and every output gets a score (1 good, 0 bad). A bad output
//! fails *some* check, but the dataset does not say which, so its checks go unlabelled and the
//! questions about them stay open; refinement sees bad outputs through the scores.
//! One more row, "c weighted", measures a lever without a model call: (c)'s test judgments
//! scored with each check weighted by how well it separated good from bad train outputs.
//! With `--few-shot` the simulated expert also shows the judge two train outputs it judged (one
//! accepted, one rejected, of one group) in the judge prompt's shared instructions: the loop's
//! train runs and the probe judge with them, a "c few-shot" row judges (c) on test with them, and
//! every figure on train leaves those two outputs out (the judge has seen their verdicts; "c
//! weighted" then takes its weights from the few-shot train run). Each kept (d) version is judged
//! on test twice: as a set ("d round N", what the loop hands on) and with the examples the loop
//! judged with ("d few-shot round N").
//!
//! The expert keeps a refined version only when it ranks the train outputs strictly better
//! than the version before (the headline figure on train); otherwise the loop stops there.
//! The log says on what share of resampled train splits it is better: on 15-40 train outputs
//! a higher figure can be noise.
//! Test splits are small, so every headline figure comes with a bootstrap interval, and the
//! last kept (d) with the share of resamples on which it beats each baseline.
//!
//! Everything happens in a scratch store (`--work-dir`), never the user's database. The test
//! split is its own dataset: its labels stay in this process and score the test runs; none
//! reaches the store, and the questions its runs raise are never answered.

mod bootstrap;
mod datasets;

use crate::options::{BenchQualityArgs, GlobalOptions};
use anyhow::{Context, Result};
use assay_core::metrics::{agreement, auroc, mean, pairwise_accuracy, spearman};
use assay_core::{Check, EvaluatorSet, JudgeOptions, JudgedExample, Verdict};
use assay_pipeline::labels::{labels_of, LabelRecord};
use assay_pipeline::refine::refine;
use assay_pipeline::simulated_expert::answer_from_labels;
use assay_pipeline::{discover, run_judging, start_judge_run, Backends, DiscoverOptions, GeneratorConfig, ProjectConfig, PromptVariant, RoleModel, Roles};
use assay_store::{Dataset, NewProject, Project, RunId, SetVersion, Store};
use bootstrap::{headline, resample, Unit};
use datasets::{Benchmark, LabelledItem, Metric};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

/// What one way of getting a set scores on the test split.
#[derive(Debug, Serialize)]
struct ConditionResult {
    condition: String,
    version: u32,
    checks: usize,
    /// LLMBar: the labelled better output of a test pair scores higher (ties half).
    pairwise_accuracy: Option<f64>,
    /// AUROC of an output's score (mean P(PASS) over the checks), acceptable vs not.
    auroc: Option<f64>,
    /// Kappa and accuracy of "every check passes" against the expert's verdict.
    kappa: Option<f64>,
    accuracy: Option<f64>,
    /// Mean score of acceptable minus unacceptable outputs.
    separation: Option<f64>,
    /// K-QA: Spearman of an answer's score against its must-have statement recall.
    recall_spearman: Option<f64>,
    /// Mean flip rate of sampled verdicts (with --samples > 1).
    flip_rate: Option<f64>,
    pass_rate: f64,
    /// 95% bootstrap interval of the headline figure (pairwise accuracy, else AUROC).
    interval: Option<[f64; 2]>,
    /// Wall time to make the set (discovery, a loop round) and judge the test split.
    seconds: f64,
    /// What the headline figure is computed over (resampled for `interval`).
    #[serde(skip)]
    units: Vec<Unit>,
}

#[derive(Debug, Serialize)]
struct DatasetResult {
    dataset: String,
    metric: Metric,
    train_items: usize,
    test_items: usize,
    conditions: Vec<ConditionResult>,
    /// The last kept (d) against each other set: the share of resamples where (d) is higher.
    loop_beats: Vec<(String, f64)>,
}

/// Bootstrap resamples of the test split behind `interval` and `loop_beats`.
const RESAMPLES: usize = 2000;

fn check(id: &str, question: &str, pass_criteria: &str) -> Check {
    Check { id: id.into(), name: String::new(), question: question.into(), pass_criteria: pass_criteria.into(), fail_examples: Vec::new(), threshold: None }
}

/// (a): one check that asks the whole question.
fn holistic() -> Result<EvaluatorSet> {
    Ok(EvaluatorSet::new(
        Some("holistic".into()),
        vec![check("acceptable", "Is the output a correct, complete and appropriate response to the input?", "PASS only if an expert would accept the output as it is.")],
    )?)
}

/// (b): five checks any task could start from.
fn generic_five() -> Result<EvaluatorSet> {
    Ok(EvaluatorSet::new(
        Some("generic-five".into()),
        vec![
            check("follows_instructions", "Does the output do what the input asks, following every explicit instruction?", "Every instruction in the input is followed."),
            check("correct", "Is every factual, clinical or logical statement in the output correct?", "Nothing stated is wrong."),
            check("complete", "Does the output cover everything the input asks for?", "No requested part is missing."),
            check("relevant", "Does the output stay on what the input asks, without irrelevant content?", "Everything in the output serves the request."),
            check("clear", "Is the output clear, well organised and in the requested format?", "A reader can use it as it is."),
        ],
    )?)
}

pub fn run(global: &GlobalOptions, args: &BenchQualityArgs) -> Result<()> {
    let scratch;
    let dir = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            scratch = tempfile::tempdir().context("creating a scratch folder")?;
            scratch.path().to_path_buf()
        }
    };
    let db = dir.join(format!("quality-{}.db", std::process::id()));
    let mut store = Store::open(&db).with_context(|| format!("opening the scratch store {}", db.display()))?;
    let backends = super::backends(global)?;
    let options = args.options.judge_options();
    options.validate()?;
    if !(args.test_share > 0.0 && args.test_share < 1.0) {
        anyhow::bail!("--test-share must be between 0 and 1 (exclusive), not {}", args.test_share);
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for name in &args.datasets {
        let bench = datasets::load(name, &args.data, args.items, args.split_seed, args.test_share)?;
        eprintln!("{}: {} train and {} test outputs (split seed {}), judge {}", bench.name, bench.train.len(), bench.test.len(), args.split_seed, args.judge);
        let result = bench_dataset(&mut store, &backends, args, &options, &bench).with_context(|| format!("the quality benchmark on {}", bench.name))?;
        eprint!("{}", table(&result));
        results.push(result);
    }
    eprintln!("done in {:.0}s; scratch store {}", started.elapsed().as_secs_f64(), if args.work_dir.is_some() { db.display().to_string() } else { "removed".into() });
    let json = serde_json::json!({"judge": args.judge, "split_seed": args.split_seed, "test_share": args.test_share, "rounds": args.rounds, "options": options, "datasets": results});
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

fn bench_dataset(store: &mut Store, backends: &Backends, args: &BenchQualityArgs, options: &JudgeOptions, bench: &Benchmark) -> Result<DatasetResult> {
    let lm = RoleModel::local(&args.judge);
    let config = ProjectConfig {
        roles: Roles { generator: lm.clone(), annotator: lm.clone(), judge: lm.clone(), embedder: RoleModel::local(&args.embed_model), check_writer: lm },
        generators: vec![GeneratorConfig { name: "careful".into(), model: None, temperature: 0.2, variant: PromptVariant::AsWritten, max_tokens: args.generator_tokens }],
        answer_tokens: ProjectConfig::default().answer_tokens,
    };
    let name = format!("quality-{}-{}", bench.name, store.projects()?.len());
    let project = store.create_project(&NewProject { name, task: bench.task.into(), generation_prompt: bench.prompt.into(), config: serde_json::to_value(&config)?, ..Default::default() })?;
    let items = |split: &[LabelledItem]| split.iter().map(|i| i.item.clone()).collect::<Vec<_>>();
    let train = store.import_dataset(project.id, "train", "assay bench quality", &items(&bench.train))?;
    let test = store.import_dataset(project.id, "test", "assay bench quality", &items(&bench.test))?;
    let mut conditions = Vec::new();
    let bench_set = |store: &mut Store, conditions: &mut Vec<ConditionResult>, condition: &str, set: &SetVersion, options: &JudgeOptions, since: Instant| -> Result<Judged> {
        eprintln!("  ({condition}) v{}: {} checks", set.number, set.set.checks.len());
        let (_, judged) = judge(store, backends, &project, set, &test, options)?;
        conditions.push(score(condition, set, &judged, &bench.test, bench.metric, None, since.elapsed().as_secs_f64()));
        Ok(judged)
    };

    let since = Instant::now();
    let a = store.create_set_version(project.id, &holistic()?, "(a) one holistic check")?;
    bench_set(store, &mut conditions, "a holistic", &a, options, since)?;
    let since = Instant::now();
    let b = store.create_set_version(project.id, &generic_five()?, "(b) five generic checks")?;
    bench_set(store, &mut conditions, "b generic", &b, options, since)?;

    let since = Instant::now();
    let mut line = super::ProgressLine::new();
    let found = discover(store, backends, &project, &train, &DiscoverOptions { checks: args.checks, seed: args.split_seed }, &mut |stage, done, total| line.update(stage, done, total));
    line.finish();
    let mut set = store.set_version(project.id, found?.set_version)?;
    let discovered = bench_set(store, &mut conditions, "c discovered", &set, options, since)?;
    // Few-shot: the loop's train runs and probes judge with the examples; figures on train leave
    // their items out.
    let examples = if args.few_shot { few_shot_examples(&bench.train, args.split_seed) } else { Vec::new() };
    let shown: Vec<&str> = examples.iter().filter_map(|e| e.item.as_deref()).collect();
    let scored_train: Vec<LabelledItem> = bench.train.iter().filter(|i| !shown.contains(&i.item.key.as_str())).cloned().collect();
    let loop_options = &JudgeOptions { examples: examples.clone(), ..options.clone() };
    if !examples.is_empty() {
        bench_set(store, &mut conditions, "c few-shot", &set, loop_options, Instant::now())?;
    }

    // The train run of the set in hand and its units (what its headline figure is over):
    // refinement reads that run's report (the set's latest run is the test split's, which has no
    // labels in the store).
    let mut on_train: Option<(RunId, Vec<Unit>)> = None;
    for round in 1..=args.rounds {
        let since = Instant::now();
        let records = simulated_labels(&bench.train, &set.set.checks);
        let (labels, scores) = labels_of(&records, &store.items(train.id)?)?;
        store.set_check_labels(&labels)?;
        store.set_score_labels(&scores)?;
        let (train_run, train_units) = match on_train.take() {
            Some(on_train) => on_train,
            None => {
                let (run, judged_train) = judge(store, backends, &project, &set, &train, loop_options)?;
                let weights = separation_weights(&set.set.checks, &judged_train, &scored_train);
                conditions.push(score("c weighted", &set, &discovered, &bench.test, bench.metric, weights.as_ref(), 0.0));
                (run, units(&judged_train, &scored_train, bench.metric, None))
            }
        };
        let answered = answer_from_labels(store, &project, &train, &records, SIMULATED)?;
        let mut line = super::ProgressLine::new();
        let refined = refine(store, backends, &project, &set, Some(train_run), args.split_seed, &mut |stage, done, total| line.update(stage, done, total));
        line.finish();
        let refined = refined?;
        eprintln!("  round {round}: {} question(s) answered; refine: {}", answered.answered.len(), refined.changes.iter().map(|c| format!("{} {}", c.action, c.check)).collect::<Vec<_>>().join(", "));
        for p in &refined.probed {
            eprintln!("  round {round}: {p}");
        }
        let Some(to) = refined.to else {
            eprintln!("  round {round}: refine made no new version; the loop stops");
            break;
        };
        let refined = store.set_version(project.id, to)?;
        let (refined_run, judged_train) = judge(store, backends, &project, &refined, &train, loop_options)?;
        let refined_units = units(&judged_train, &scored_train, bench.metric, None);
        let (figure, train_figure) = (headline(&refined_units), headline(&train_units));
        let better = resample(&[refined_units.clone(), train_units], RESAMPLES, args.split_seed).higher[0][1];
        let shown = |f: Option<f64>| f.map_or("-".to_string(), |f| format!("{f:.3}"));
        let compared = format!("{} vs {}; better on {:.0}% of resampled train splits", shown(figure), shown(train_figure), 100.0 * better);
        if figure.unwrap_or(f64::NEG_INFINITY) <= train_figure.unwrap_or(f64::NEG_INFINITY) {
            eprintln!("  round {round}: v{} does not rank the train outputs better than v{} ({compared}); the expert keeps v{} and the loop stops", refined.number, set.number, set.number);
            break;
        }
        eprintln!("  round {round}: v{} ranks the train outputs better than v{} ({compared})", refined.number, set.number);
        set = refined;
        on_train = Some((refined_run, refined_units));
        bench_set(store, &mut conditions, &format!("d round {round}"), &set, options, since)?;
        if !examples.is_empty() {
            bench_set(store, &mut conditions, &format!("d few-shot round {round}"), &set, loop_options, Instant::now())?;
        }
    }
    let resampled = resample(&conditions.iter().map(|c| c.units.clone()).collect::<Vec<_>>(), RESAMPLES, args.split_seed);
    for (c, interval) in conditions.iter_mut().zip(&resampled.interval) {
        c.interval = *interval;
    }
    let last = conditions.len() - 1;
    let loop_beats = if conditions[last].condition.starts_with('d') {
        conditions.iter().enumerate().filter(|(_, c)| !c.condition.starts_with('d')).map(|(i, c)| (c.condition.clone(), resampled.higher[last][i])).collect()
    } else {
        Vec::new()
    };
    Ok(DatasetResult { dataset: bench.name.into(), metric: bench.metric, train_items: bench.train.len(), test_items: bench.test.len(), conditions, loop_beats })
}

const SIMULATED: &str = "simulated-expert";

/// The few-shot examples the simulated expert shows the judge: one accepted and one rejected
/// train output of one group (an LLMBar pair, a K-QA question, a MEDEC case), else of two, the
/// groups taken in an order fixed by `seed`.
fn few_shot_examples(train: &[LabelledItem], seed: u64) -> Vec<JudgedExample> {
    let mut groups: Vec<&str> = train.iter().map(|i| i.group.as_str()).collect();
    groups.sort_by_key(|g| (assay_pipeline::stable_seed(seed, &["few-shot", g]), *g));
    groups.dedup();
    let first = |group: Option<&str>, good: bool| train.iter().find(|i| i.good == good && group.is_none_or(|g| i.group == g));
    let pair = groups.iter().find_map(|&g| first(Some(g), true).zip(first(Some(g), false))).or_else(|| first(None, true).zip(first(None, false)));
    let example =
        |i: &LabelledItem| JudgedExample { item: Some(i.item.key.clone()), input: i.item.input.clone(), output: i.item.output.clone().unwrap_or_default(), accepted: i.good, note: i.note.clone() };
    pair.map(|(good, bad)| vec![example(good), example(bad)]).unwrap_or_default()
}

/// What the simulated expert records for `checks` on the train split (see the module overview):
/// a PASS label on every check of a good output, and a score of every output.
fn simulated_labels(train: &[LabelledItem], checks: &[Check]) -> Vec<LabelRecord> {
    let record = |i: &LabelledItem, check: Option<&Check>| LabelRecord {
        item: i.item.key.clone(),
        check: check.map(|c| c.id.clone()),
        verdict: check.map(|_| Verdict::Pass),
        score: check.is_none().then_some(if i.good { 1.0 } else { 0.0 }),
        note: i.note.clone(),
        rater: SIMULATED.into(),
    };
    train.iter().flat_map(|i| std::iter::once(record(i, None)).chain(checks.iter().filter(|_| i.good).map(move |c| record(i, Some(c))))).collect()
}

/// Judgments by item key.
type Judged = HashMap<String, Vec<assay_core::Judgment>>;

/// Each check's weight from the train split: 2 AUROC - 1 of its P(PASS) on good vs bad outputs,
/// floored at 0 (a check that ranks them no better than chance counts for nothing); `None`
/// when no check separates them (the plain mean then).
fn separation_weights(checks: &[Check], judged: &Judged, train: &[LabelledItem]) -> Option<HashMap<String, f64>> {
    let p = |i: &LabelledItem, check: &str| judged.get(&i.item.key)?.iter().find(|j| j.check_id == check).map(|j| j.p_pass as f64);
    let (good, bad): (Vec<&LabelledItem>, Vec<&LabelledItem>) = train.iter().partition(|i| i.good);
    let weights: HashMap<String, f64> = checks
        .iter()
        .map(|c| {
            let of = |items: &[&LabelledItem]| items.iter().filter_map(|i| p(i, &c.id)).collect::<Vec<f64>>();
            (c.id.clone(), auroc(&of(&good), &of(&bad)).map_or(0.0, |a| (2.0 * a - 1.0).max(0.0)))
        })
        .collect();
    weights.values().any(|w| *w > 0.0).then_some(weights)
}

/// Judges `dataset` with `set`; the run and its judgments by item key.
fn judge(store: &mut Store, backends: &Backends, project: &Project, set: &SetVersion, dataset: &Dataset, options: &JudgeOptions) -> Result<(RunId, Judged)> {
    let (run, _) = start_judge_run(store, backends, project, set, dataset, options)?;
    let mut line = super::ProgressLine::new();
    let report = run_judging(store, backends, project, run.id, assay_pipeline::DEFAULT_CHUNK_ITEMS, &mut |stage, done, total| line.update(stage, done, total));
    line.finish();
    let report = report?;
    let mut by_item: HashMap<String, Vec<assay_core::Judgment>> = HashMap::new();
    for j in store.judgments(report.run.id)? {
        by_item.entry(j.item_id.clone()).or_default().push(j);
    }
    Ok((report.run.id, by_item))
}

/// The test split's figures for one set; an output's score is the mean P(PASS) of its checks,
/// weighted by `weights` (check id -> weight; a check of weight 0 counts for nothing, in the
/// score and in "every check passes").
fn score(condition: &str, set: &SetVersion, judged: &Judged, test: &[LabelledItem], metric: Metric, weights: Option<&HashMap<String, f64>>, seconds: f64) -> ConditionResult {
    let weight = |j: &assay_core::Judgment| weight_of(weights, j);
    let counted: Judged = judged.iter().map(|(k, js)| (k.clone(), js.iter().filter(|j| weight(j) > 0.0).cloned().collect())).collect();
    let none = Vec::new();
    let of = |i: &LabelledItem| counted.get(&i.item.key).unwrap_or(&none);
    let score_of = |i: &LabelledItem| output_score(judged, i, weights);
    let passes = |i: &LabelledItem| !of(i).is_empty() && of(i).iter().all(|j| j.verdict == Verdict::Pass);
    let (good, bad): (Vec<&LabelledItem>, Vec<&LabelledItem>) = test.iter().partition(|i| i.good);
    // An item without judgments (NaN) stays out of the figures rather than voiding them.
    let scores = |items: &[&LabelledItem]| items.iter().map(|i| score_of(i)).filter(|s| !s.is_nan()).collect::<Vec<f64>>();
    let (good_scores, bad_scores) = (scores(&good), scores(&bad));
    let agreed = agreement(&test.iter().map(passes).collect::<Vec<_>>(), &test.iter().map(|i| i.good).collect::<Vec<_>>());
    let units = units(judged, test, metric, weights);
    let pairs: Vec<(f64, f64)> = units.iter().filter_map(|u| if let Unit::Pair { better, worse } = *u { Some((better, worse)) } else { None }).collect();
    let recalls: Vec<(f64, f64)> = test.iter().filter_map(|i| Some((score_of(i), i.recall?))).filter(|(s, _)| !s.is_nan()).collect();
    let all: Vec<&assay_core::Judgment> = test.iter().flat_map(of).collect();
    let flips: Vec<f64> = all.iter().filter_map(|j| j.flip_rate.map(f64::from)).collect();
    ConditionResult {
        condition: condition.into(),
        version: set.number,
        checks: set.set.checks.iter().filter(|c| weights.is_none_or(|w| w.get(&c.id).is_some_and(|w| *w > 0.0))).count(),
        pairwise_accuracy: pairwise_accuracy(&pairs),
        auroc: auroc(&good_scores, &bad_scores),
        kappa: agreed.and_then(|a| a.kappa),
        accuracy: agreed.map(|a| a.accuracy),
        separation: mean(&good_scores).zip(mean(&bad_scores)).map(|(g, b)| g - b),
        recall_spearman: spearman(&recalls.iter().map(|r| r.0).collect::<Vec<_>>(), &recalls.iter().map(|r| r.1).collect::<Vec<_>>()),
        flip_rate: mean(&flips),
        pass_rate: all.iter().filter(|j| j.verdict == Verdict::Pass).count() as f64 / all.len().max(1) as f64,
        interval: None,
        seconds,
        units,
    }
}

/// A check's weight in an output's score: 1, or its entry in `weights` (0 when absent).
fn weight_of(weights: Option<&HashMap<String, f64>>, j: &assay_core::Judgment) -> f64 {
    weights.map_or(1.0, |w| w.get(&j.check_id).copied().unwrap_or(0.0))
}

/// An output's score: the weighted mean P(PASS) of its checks; NaN without a judgment.
fn output_score(judged: &Judged, item: &LabelledItem, weights: Option<&HashMap<String, f64>>) -> f64 {
    let js = judged.get(&item.item.key).map(Vec::as_slice).unwrap_or_default();
    let total: f64 = js.iter().map(|j| weight_of(weights, j)).sum();
    if total > 0.0 {
        js.iter().map(|j| weight_of(weights, j) * j.p_pass as f64).sum::<f64>() / total
    } else {
        f64::NAN
    }
}

/// The headline figure's units of `items`: its pairs (an input's two outputs, in one group)
/// for a pairwise metric, else its outputs.
fn units(judged: &Judged, items: &[LabelledItem], metric: Metric, weights: Option<&HashMap<String, f64>>) -> Vec<Unit> {
    let score = |i: &LabelledItem| output_score(judged, i, weights);
    match metric {
        Metric::Pairwise => items
            .chunks(2)
            .filter(|p| p.len() == 2 && p[0].group == p[1].group)
            .map(|p| {
                let (better, worse) = if p[0].good { (&p[0], &p[1]) } else { (&p[1], &p[0]) };
                Unit::Pair { better: score(better), worse: score(worse) }
            })
            .collect(),
        // Every output, in order, so that sets' units line up for resampling; one without
        // judgments (NaN) stays out of the figure rather than voiding it.
        Metric::Binary => items.iter().map(|i| Unit::Output { score: score(i), good: i.good }).collect(),
    }
}

fn table(r: &DatasetResult) -> String {
    let cell = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut out = format!("{} ({:?}; {} train / {} test outputs)\n", r.dataset, r.metric, r.train_items, r.test_items);
    out.push_str(&format!(
        "  {:<18} {:>3} {:>6} {:>8} {:>6} {:>13} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}\n",
        "set", "v", "checks", "pairwise", "auroc", "95% interval", "kappa", "acc", "sep", "recall", "flip", "pass", "seconds"
    ));
    for c in &r.conditions {
        out.push_str(&format!(
            "  {:<18} {:>3} {:>6} {:>8} {:>6} {:>13} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6.3} {:>7.0}\n",
            c.condition,
            c.version,
            c.checks,
            cell(c.pairwise_accuracy),
            cell(c.auroc),
            c.interval.map_or("-".to_string(), |[low, high]| format!("{low:.2}-{high:.2}")),
            cell(c.kappa),
            cell(c.accuracy),
            cell(c.separation),
            cell(c.recall_spearman),
            cell(c.flip_rate),
            c.pass_rate,
            c.seconds
        ));
    }
    if let Some(last) = r.conditions.last().filter(|_| !r.loop_beats.is_empty()) {
        let beats: Vec<String> = r.loop_beats.iter().map(|(set, share)| format!("{set} {:.0}%", 100.0 * share)).collect();
        out.push_str(&format!("  ({}) above, on resampled test splits: {}\n", last.condition, beats.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_store::NewItem;

    fn labelled(key: &str, group: &str, good: bool) -> LabelledItem {
        let item = NewItem { key: key.into(), input: format!("input of {group}"), output: Some(format!("output {key}")), ..Default::default() };
        LabelledItem { item, group: group.into(), good, note: format!("note on {key}"), recall: None }
    }

    #[test]
    fn few_shot_examples_are_one_accepted_and_one_rejected_output_of_one_group() {
        let train = [labelled("a1", "a", true), labelled("a2", "a", true), labelled("b1", "b", false), labelled("c1", "c", true), labelled("c2", "c", false)];
        let examples = few_shot_examples(&train, 1);
        let keys: Vec<_> = examples.iter().map(|e| (e.item.as_deref().unwrap(), e.accepted)).collect();
        assert_eq!(keys, [("c1", true), ("c2", false)], "group c is the only one with both");
        assert_eq!((examples[1].output.as_str(), examples[1].note.as_str()), ("output c2", "note on c2"));
        // No group holds both: one of each from any group; none without a rejected output.
        let examples = few_shot_examples(&train[..3], 1);
        assert_eq!(examples.iter().map(|e| e.item.as_deref().unwrap()).collect::<Vec<_>>(), ["a1", "b1"]);
        assert!(few_shot_examples(&train[..2], 1).is_empty());
    }
}
