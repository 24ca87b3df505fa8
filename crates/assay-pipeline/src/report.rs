//! Reports (`assay report`): how good an evaluator-set version's checks are, from a judge
//! run's stored judgments, per check and overall:
//! - consistency: flip rate of sampled verdicts, and disagreement with other judge models
//!   (other finished runs of the same set and dataset);
//! - separation: P(PASS) on known-good vs known-bad outputs (the expert's labels of the check,
//!   or else the expert's scores of whole outputs, or else the strongest vs the weakest
//!   discovery generator), AUROC, and the fraction of clear decisions;
//! - rationale cohesion: spread of the embeddings of a check's FAIL rationales;
//! - agreement with expert labels: accuracy, Cohen's kappa, FAIL precision and recall, a
//!   threshold calibrated on the labels, and Spearman of item totals against the expert's;
//! - calibration of P(PASS) on labelled items: a reliability diagram and the expected
//!   calibration error (ECE);
//! - SVG plots of the above.

use crate::backend::Backends;
use crate::config::ProjectConfig;
use crate::error::{PipelineError, Result};
use crate::plots::{bars_svg, reliability_svg, separation_svg, write_plot};
use assay_core::metrics::{agreement, auroc, calibrate_threshold, clear_fraction, embedding_spread, mean, reliability, spearman, Agreement, Calibration, Reliability};
use assay_core::{Judgment, Verdict};
use assay_store::{ItemId, Project, Run, RunId, RunKind, RunStatus, SetVersion, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// P(PASS) below this or above 1 - this counts as a clear decision.
pub const CLEAR_MARGIN: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeparationBasis {
    /// Outputs the expert labelled PASS vs FAIL on this check.
    ExpertLabels,
    /// Outputs the expert scored above vs below the middle of their scores (a whole-output
    /// judgment: a bad output fails some check, not necessarily this one).
    ExpertScores,
    /// Outputs of the strongest vs the weakest discovery generator.
    Generators,
}

#[derive(Debug, Clone, Serialize)]
pub struct Separation {
    pub basis: SeparationBasis,
    pub good: Vec<f64>,
    pub bad: Vec<f64>,
    pub auroc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub id: String,
    pub judged: usize,
    pub pass_rate: f64,
    pub mean_p_pass: f64,
    pub mean_off_format: f64,
    pub clear_fraction: Option<f64>,
    /// Mean fraction of sampled verdicts that disagree with the overall verdict.
    pub flip_rate: Option<f64>,
    /// Fraction of shared items on which another judge model's verdict differs.
    pub judge_disagreement: Option<f64>,
    pub separation: Option<Separation>,
    /// Mean cosine distance of FAIL rationales to their centroid (lower is more cohesive).
    pub cohesion: Option<f64>,
    pub agreement: Option<Agreement>,
    pub calibration: Option<Calibration>,
    /// P(PASS) against the expert's PASS rate on labelled items.
    pub reliability: Option<Reliability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub project: String,
    pub set: u32,
    pub run: RunId,
    pub run_status: RunStatus,
    pub dataset: String,
    pub judge: String,
    pub items: usize,
    pub checks: Vec<CheckReport>,
    /// All labelled (item, check) pairs together.
    pub agreement: Option<Agreement>,
    /// P(PASS) against the expert's PASS rate, all labelled pairs together.
    pub reliability: Option<Reliability>,
    /// Spearman of item totals (passes) against expert score labels, or else against the
    /// expert's PASS count over the labelled checks.
    pub total_spearman: Option<f64>,
    /// How many of the dataset's reference statements (items' `reference.must_have`) some
    /// check of the set covers.
    pub reference_recovery: Option<ReferenceRecovery>,
    pub plots: Vec<PathBuf>,
}

/// Reference statements (e.g. K-QA's physician-written must-haves) against the set's checks:
/// a statement is recovered when some check's text is at least `RECOVERED_SIMILARITY` cosine
/// similar to it.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceRecovery {
    pub statements: usize,
    pub recovered: usize,
    pub similarity: f32,
}

pub const RECOVERED_SIMILARITY: f32 = 0.6;

fn reference_recovery(backends: &Backends, config: &ProjectConfig, set: &SetVersion, items: &[assay_store::Item]) -> Result<Option<ReferenceRecovery>> {
    // Discovery's outputs copy their input's reference: count each statement once.
    let statements: Vec<String> = items
        .iter()
        .filter_map(|i| i.fields.reference.as_ref()?["must_have"].as_array().cloned())
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if statements.is_empty() {
        return Ok(None);
    }
    let embedder = backends.role(&config.roles.embedder)?;
    let references = embedder.embed(&statements)?;
    let checks = embedder.embed(&set.set.checks.iter().map(crate::static_analysis::check_text).collect::<Vec<_>>())?;
    let recovered = references.iter().filter(|r| checks.iter().any(|c| crate::taxonomy::cosine(r, c) >= RECOVERED_SIMILARITY)).count();
    Ok(Some(ReferenceRecovery { statements: statements.len(), recovered, similarity: RECOVERED_SIMILARITY }))
}

/// Of the judge runs `wanted` keeps, the latest finished one, else the latest of any status.
pub fn latest_judge_run(runs: &[Run], wanted: impl Fn(&Run) -> bool) -> Option<&Run> {
    runs.iter().filter(|r| r.kind == RunKind::Judge && wanted(r)).max_by_key(|r| (r.status == RunStatus::Done, r.id.0))
}

/// The judge run a report reads: `run` if given (it must judge `set`), else the set's latest
/// finished judge run, else its latest judge run of any status.
pub fn report_run(store: &Store, project: &Project, set: &SetVersion, run: Option<RunId>) -> Result<Run> {
    if let Some(id) = run {
        let run = store.run(id)?;
        if run.project != project.id || run.kind != RunKind::Judge || run.set_version != Some(set.id) {
            return Err(assay_store::StoreError::NotFound { what: format!("judge run {id} of v{} of project '{}'", set.number, project.name) }.into());
        }
        return Ok(run);
    }
    latest_judge_run(&store.runs(project.id)?, |r| r.set_version == Some(set.id)).cloned().ok_or_else(|| {
        assay_store::StoreError::NoneYet(format!("v{} of project '{}' has no judge run yet (start one with `assay run --project {} --set {}`)", set.number, project.name, project.name, set.number))
            .into()
    })
}

/// The middle of the expert's scores ((lowest + highest) / 2): outputs above it the expert
/// scored high, below it low, on it neither. Separation, the notes on missed outputs and the
/// probe split the expert's outputs by the same line.
#[derive(Debug, Clone, Copy)]
pub struct ScoreMiddle(f64);

impl ScoreMiddle {
    /// `None` when there are no scores.
    pub fn of(scores: impl IntoIterator<Item = f64>) -> Option<Self> {
        let (lo, hi) = scores.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(s), hi.max(s)));
        (lo <= hi).then_some(Self((lo + hi) / 2.0))
    }

    /// Whether `score` is on the high side; `None` on the middle itself.
    pub fn high(self, score: f64) -> Option<bool> {
        (score != self.0).then_some(score > self.0)
    }
}

pub fn report(store: &Store, backends: &Backends, project: &Project, set: &SetVersion, run: &Run, plots_dir: Option<&Path>) -> Result<SetReport> {
    let dataset_id = run.dataset.ok_or_else(|| PipelineError::Invalid(format!("run {} has no dataset", run.id)))?;
    let dataset = store.dataset(dataset_id)?;
    let items = store.items(dataset_id)?;
    let item_ids: HashMap<&str, ItemId> = items.iter().map(|i| (i.fields.key.as_str(), i.id)).collect();
    let ranks: HashMap<&str, i64> = items.iter().filter_map(|i| Some((i.fields.key.as_str(), i.fields.metadata.as_ref()?["rank"].as_i64()?))).collect();
    let judgments = store.judgments(run.id)?;
    let check_labels = store.check_labels(dataset_id)?;
    let labels: HashMap<(ItemId, &str), Verdict> = check_labels.iter().map(|l| ((l.item, l.check.as_str()), l.verdict)).collect();
    let scores: HashMap<ItemId, f64> = store.score_labels(dataset_id)?.into_iter().map(|s| (s.item, s.score)).collect();
    let middle = ScoreMiddle::of(scores.values().copied());
    let others = other_judges(store, project, run)?;
    let by_check: BTreeMap<&str, Vec<&Judgment>> = set.set.checks.iter().map(|c| (c.id.as_str(), judgments.iter().filter(|j| j.check_id == c.id).collect())).collect();

    let config = ProjectConfig::of(project)?;
    let cohesion = rationale_cohesion(backends, &config, &by_check)?;
    let (strongest, weakest) = (ranks.values().min().copied(), ranks.values().max().copied());
    let mut checks = Vec::new();
    for c in &set.set.checks {
        let mine = &by_check[c.id.as_str()];
        let p: Vec<f64> = mine.iter().map(|j| j.p_pass as f64).collect();
        let n = mine.len().max(1) as f64;
        let labelled: Vec<(&Judgment, Verdict)> = mine.iter().filter_map(|j| Some((*j, *labels.get(&(*item_ids.get(j.item_id.as_str())?, c.id.as_str()))?))).collect();
        let judge_pass: Vec<bool> = labelled.iter().map(|(j, _)| j.verdict == Verdict::Pass).collect();
        let expert_pass: Vec<bool> = labelled.iter().map(|(_, v)| *v == Verdict::Pass).collect();
        let labelled_p: Vec<f64> = labelled.iter().map(|(j, _)| j.p_pass as f64).collect();
        let separation = {
            let split = |good: &dyn Fn(&Judgment) -> Option<bool>| {
                let (mut g, mut b) = (Vec::new(), Vec::new());
                for j in mine {
                    match good(j) {
                        Some(true) => g.push(j.p_pass as f64),
                        Some(false) => b.push(j.p_pass as f64),
                        None => {}
                    }
                }
                (g, b)
            };
            let (good, bad) = split(&|j| labels.get(&(*item_ids.get(j.item_id.as_str())?, c.id.as_str())).map(|v| *v == Verdict::Pass));
            let scored = || {
                let middle = middle?;
                let (good, bad) = split(&|j| middle.high(*scores.get(item_ids.get(j.item_id.as_str())?)?));
                (!good.is_empty() && !bad.is_empty()).then(|| Separation { auroc: auroc(&good, &bad), good, bad, basis: SeparationBasis::ExpertScores })
            };
            if !good.is_empty() && !bad.is_empty() {
                Some(Separation { auroc: auroc(&good, &bad), good, bad, basis: SeparationBasis::ExpertLabels })
            } else if let Some(by_scores) = scored() {
                Some(by_scores)
            } else if strongest != weakest {
                let (good, bad) = split(&|j| match ranks.get(j.item_id.as_str()) {
                    Some(r) if Some(*r) == strongest => Some(true),
                    Some(r) if Some(*r) == weakest => Some(false),
                    _ => None,
                });
                Some(Separation { auroc: auroc(&good, &bad), good, bad, basis: SeparationBasis::Generators })
            } else {
                None
            }
        };
        let flips: Vec<f64> = mine.iter().filter_map(|j| j.flip_rate.map(f64::from)).collect();
        checks.push(CheckReport {
            id: c.id.clone(),
            judged: mine.len(),
            pass_rate: mine.iter().filter(|j| j.verdict == Verdict::Pass).count() as f64 / n,
            mean_p_pass: mean(&p).unwrap_or(f64::NAN),
            mean_off_format: mine.iter().map(|j| j.off_format_mass as f64).sum::<f64>() / n,
            clear_fraction: clear_fraction(&p, CLEAR_MARGIN, 1.0 - CLEAR_MARGIN),
            flip_rate: mean(&flips),
            judge_disagreement: disagreement(mine, &others),
            separation,
            cohesion: cohesion.get(c.id.as_str()).copied(),
            agreement: agreement(&judge_pass, &expert_pass),
            calibration: calibrate_threshold(&labelled_p, &expert_pass),
            reliability: reliability(&labelled_p, &expert_pass),
        });
    }

    // Overall agreement over every labelled pair, and Spearman of totals.
    let (mut all_judge, mut all_expert, mut all_p) = (Vec::new(), Vec::new(), Vec::new());
    // item -> (judge passes, judge passes on labelled checks, expert passes, labelled checks)
    let mut totals: BTreeMap<&str, (f64, f64, f64, usize)> = BTreeMap::new();
    for j in &judgments {
        let entry = totals.entry(j.item_id.as_str()).or_default();
        let pass = j.verdict == Verdict::Pass;
        entry.0 += f64::from(u8::from(pass));
        if let Some(v) = item_ids.get(j.item_id.as_str()).and_then(|id| labels.get(&(*id, j.check_id.as_str()))) {
            all_judge.push(pass);
            all_expert.push(*v == Verdict::Pass);
            all_p.push(j.p_pass as f64);
            entry.1 += f64::from(u8::from(pass));
            entry.2 += f64::from(u8::from(*v == Verdict::Pass));
            entry.3 += 1;
        }
    }
    let total_spearman = if !scores.is_empty() {
        let pairs: Vec<(f64, f64)> = totals.iter().filter_map(|(item, t)| Some((t.0, *scores.get(item_ids.get(item)?)?))).collect();
        spearman(&pairs.iter().map(|p| p.0).collect::<Vec<_>>(), &pairs.iter().map(|p| p.1).collect::<Vec<_>>())
    } else {
        let labelled: Vec<_> = totals.values().filter(|t| t.3 > 0).collect();
        spearman(&labelled.iter().map(|t| t.1).collect::<Vec<_>>(), &labelled.iter().map(|t| t.2).collect::<Vec<_>>())
    };
    let mut report = SetReport {
        project: project.name.clone(),
        set: set.number,
        run: run.id,
        run_status: run.status,
        dataset: dataset.name,
        judge: run.params["judge"].as_str().unwrap_or("?").to_string(),
        items: totals.len(),
        checks,
        agreement: agreement(&all_judge, &all_expert),
        reliability: reliability(&all_p, &all_expert),
        total_spearman,
        reference_recovery: reference_recovery(backends, &config, set, &items)?,
        plots: Vec::new(),
    };
    if let Some(dir) = plots_dir {
        report.plots = write_plots(&report, dir)?;
    }
    Ok(report)
}

/// The verdicts other judge models gave in finished runs of the same set and dataset:
/// (item, check) -> (judge, verdict).
pub(crate) type OtherJudges = HashMap<(String, String), Vec<(String, Verdict)>>;

pub(crate) fn other_judges(store: &Store, project: &Project, run: &Run) -> Result<OtherJudges> {
    let mut others = OtherJudges::new();
    for other in store.runs(project.id)? {
        if other.id != run.id
            && other.kind == RunKind::Judge
            && other.status == RunStatus::Done
            && other.set_version == run.set_version
            && other.dataset == run.dataset
            && other.params["judge"] != run.params["judge"]
        {
            let judge = other.params["judge"].as_str().unwrap_or("another judge").to_string();
            for j in store.judgments(other.id)? {
                others.entry((j.item_id, j.check_id)).or_default().push((judge.clone(), j.verdict));
            }
        }
    }
    Ok(others)
}

/// The rationales behind a judgment's FAIL verdicts: its sampled ones that ended in FAIL, or
/// its single rationale when the verdict is FAIL.
pub(crate) fn fail_rationales(j: &Judgment) -> Vec<&str> {
    let all: Vec<&str> = if j.samples.is_empty() {
        j.rationale.as_deref().filter(|_| j.verdict == Verdict::Fail).into_iter().collect()
    } else {
        j.samples.iter().filter(|s| s.verdict == Verdict::Fail).map(|s| s.rationale.as_str()).collect()
    };
    all.into_iter().filter(|r| !r.trim().is_empty()).collect()
}

fn disagreement(mine: &[&Judgment], others: &OtherJudges) -> Option<f64> {
    let (mut compared, mut differ) = (0usize, 0usize);
    for j in mine {
        for (_, v) in others.get(&(j.item_id.clone(), j.check_id.clone())).into_iter().flatten() {
            compared += 1;
            differ += usize::from(*v != j.verdict);
        }
    }
    (compared > 0).then(|| differ as f64 / compared as f64)
}

/// Spread of each check's FAIL rationales (rationale mode only), embedded in one call.
fn rationale_cohesion(backends: &Backends, config: &ProjectConfig, by_check: &BTreeMap<&str, Vec<&Judgment>>) -> Result<HashMap<String, f64>> {
    let mut texts = Vec::new();
    let mut owners = Vec::new();
    for (check, judgments) in by_check {
        for j in judgments {
            for r in fail_rationales(j) {
                texts.push(r.to_string());
                owners.push(*check);
            }
        }
    }
    if texts.is_empty() {
        return Ok(HashMap::new());
    }
    let vectors = backends.role(&config.roles.embedder)?.embed(&texts)?;
    let mut per_check: HashMap<&str, Vec<Vec<f32>>> = HashMap::new();
    for (owner, v) in owners.into_iter().zip(vectors) {
        per_check.entry(owner).or_default().push(v);
    }
    Ok(per_check.into_iter().filter_map(|(c, vs)| Some((c.to_string(), embedding_spread(&vs)?))).collect())
}

fn file_name(check: &str) -> String {
    check.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// One plot of a report: its file name, title, the SVG, and the numbers it shows (the text
/// alternative the workbench puts beside it).
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    pub file: String,
    pub title: String,
    pub svg: String,
    pub values: Vec<(String, f64)>,
}

/// The report's plots: a separation histogram and a reliability diagram per check that has
/// them (and one of all labelled pairs), bars per check of pass rate, flip rate, kappa, AUROC and
/// ECE (each only when some check has the number).
pub fn render_plots(report: &SetReport) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    for c in &report.checks {
        if let Some(s) = &c.separation {
            let basis = match s.basis {
                SeparationBasis::ExpertLabels => "expert PASS vs FAIL",
                SeparationBasis::ExpertScores => "expert's high vs low output scores",
                SeparationBasis::Generators => "strongest vs weakest generator",
            };
            let title = format!("{}: P(PASS), {basis}", c.id);
            let values = vec![("good outputs".to_string(), s.good.len() as f64), ("bad outputs".to_string(), s.bad.len() as f64), ("AUROC".to_string(), s.auroc.unwrap_or(f64::NAN))];
            plots.push(Plot { file: format!("separation-{}.svg", file_name(&c.id)), svg: separation_svg(&title, &s.good, &s.bad)?, title, values });
        }
    }
    let mut reliability_plot = |file: String, title: String, r: &Reliability| -> Result<()> {
        let mut values = vec![("labelled judgments".to_string(), r.n as f64), ("ECE".to_string(), r.ece)];
        for b in &r.bins {
            let bin = format!("P(PASS) {:.1}-{:.1}", b.lo, b.hi);
            values.extend([(format!("{bin}: judgments"), b.n as f64), (format!("{bin}: mean P(PASS)"), b.mean_p_pass), (format!("{bin}: expert PASS rate"), b.observed_pass_rate)]);
        }
        plots.push(Plot { file, svg: reliability_svg(&title, &r.bins)?, title, values });
        Ok(())
    };
    for c in &report.checks {
        if let Some(r) = &c.reliability {
            reliability_plot(format!("reliability-{}.svg", file_name(&c.id)), format!("{}: P(PASS) vs expert PASS rate (ECE {:.3})", c.id, r.ece), r)?;
        }
    }
    if let Some(r) = &report.reliability {
        reliability_plot("reliability-all.svg".to_string(), format!("v{}: P(PASS) vs expert PASS rate, all checks (ECE {:.3})", report.set, r.ece), r)?;
    }
    let bars = |f: &dyn Fn(&CheckReport) -> Option<f64>| -> Vec<(String, f64)> { report.checks.iter().filter_map(|c| Some((c.id.clone(), f(c)?))).collect() };
    let mut chart = |file: &str, title: String, y: &str, values: Vec<(String, f64)>, range: (f64, f64)| -> Result<()> {
        if !values.is_empty() {
            plots.push(Plot { file: file.to_string(), svg: bars_svg(&title, y, &values, range)?, title, values });
        }
        Ok(())
    };
    chart("pass-rates.svg", format!("v{}: pass rate per check", report.set), "pass rate", bars(&|c| Some(c.pass_rate)), (0.0, 1.0))?;
    chart("flip-rates.svg", format!("v{}: flip rate of sampled verdicts", report.set), "flip rate", bars(&|c| c.flip_rate), (0.0, 1.0))?;
    chart("agreement-kappa.svg", format!("v{}: Cohen's kappa against expert labels", report.set), "kappa", bars(&|c| c.agreement.and_then(|a| a.kappa)), (-1.0, 1.0))?;
    chart("separation-auroc.svg", format!("v{}: AUROC of P(PASS), good vs bad outputs", report.set), "AUROC", bars(&|c| c.separation.as_ref().and_then(|s| s.auroc)), (0.0, 1.0))?;
    chart("calibration-ece.svg", format!("v{}: expected calibration error of P(PASS)", report.set), "ECE", bars(&|c| c.reliability.as_ref().map(|r| r.ece)), (0.0, 1.0))?;
    Ok(plots)
}

fn write_plots(report: &SetReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| PipelineError::Io { what: format!("creating {}", dir.display()), source })?;
    let mut written = Vec::new();
    for plot in render_plots(report)? {
        let path = dir.join(&plot.file);
        write_plot(&path, &plot.svg)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::ScoreMiddle;

    #[test]
    fn the_middle_of_the_scores_splits_them_into_high_and_low_and_leaves_itself_out() {
        assert!(ScoreMiddle::of([]).is_none());
        let middle = ScoreMiddle::of([1.0, 5.0, 2.0, 3.0]).unwrap();
        assert_eq!([1.0, 2.0, 3.0, 5.0].map(|s| middle.high(s)), [Some(false), Some(false), None, Some(true)]);
        assert_eq!(ScoreMiddle::of([4.0]).unwrap().high(4.0), None);
    }
}
