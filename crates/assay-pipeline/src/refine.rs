//! Refinement (`assay refine`): a new evaluator-set version from what the expert and the
//! latest report say about the current one.
//! - A ruling on a question about a check is folded into that check verbatim (and the check
//!   writer rewrites the question around it, the ruling folded into the rewrite too); a ruling
//!   that says "drop" drops the check, one that says "split" splits it by its FAIL rationales'
//!   clusters (when they form two or more), and one that says "add" on a question proposing a
//!   check (an uncovered prompt constraint, a rejected gold output) adds that check.
//! - Low agreement with expert labels, a high flip rate or poor separation get the check
//!   rewritten, with the problem stated; a better threshold calibrated on labels is adopted.
//! - A check that separates the expert's good and bad outputs the wrong way round (AUROC
//!   under 0.5 on the expert's labels or scores) is dropped: its P(PASS) pulls an output's
//!   score away from the expert's. The best of them stays when every check would go.
//! - FAIL rationales that do not cohere split the check by their clusters (one check per
//!   cluster of two or more rationales), or drop it when they do not cluster and it also
//!   disagrees with the expert or fails to separate.
//! - Outputs the expert scored low that the set scores as high as the median one they scored
//!   high are what no check looks for: the expert's notes on them, clustered by meaning, each become a
//!   new check (at most `MAX_CHECKS_FROM_NOTES`). Notes are about many outputs, so the checks
//!   written from them are about the task, not one input.
//! - New wordings are measured before they are adopted (`probe`): judged on the outputs the
//!   expert scored. Of the `NOTE_CANDIDATES` drafts per cluster of notes (against the notes'
//!   kind of error, and on the task requirement they break), the one that best
//!   separates the expert's high and low scores is added, and only when it separates them
//!   (AUROC at least `POOR_AUROC`): a question whose yes is the bad case, or one about a single
//!   output, shows there. A draft naming what only one of the scored outputs' inputs mentions
//!   (a drug, a figure) is refused unmeasured: it can rank that input's outputs, not others. A
//!   check's new wordings (its rewrite, and the check as it is with the rulings folded in) are
//!   measured as a version would hold them, rulings included: the first that no other, nor the
//!   check as it is, separates better is kept. So the rulings on a check are folded in, all
//!   together, unless the judge then ranks the expert's own outputs worse (the judge reads
//!   criteria text, not intent: a ruling on one item can tilt every verdict).
//!
//! Nothing changes in place: the result is a new version whose reason lists every change.

use crate::backend::{Backends, ChatRequest};
use crate::check_writer::{check_id, cluster_request, parse_check, rewrite_request, task_request};
use crate::config::ProjectConfig;
use crate::error::Result;
use crate::probe::ScoredOutputs;
use crate::report::{fail_rationales, report, report_run, CheckReport, ScoreMiddle, SeparationBasis, SetReport};
use crate::static_analysis::constraint_check;
use crate::taxonomy::{cluster, ErrorPoint};
use crate::{stable_seed, Progress};
use assay_core::metrics::mean;
use assay_core::{Check, EvaluatorSet, Judgment};
use assay_store::{ErrorId, ItemId, Project, QuestionStatus, Run, RunId, SetVersion, Severity, Store};
use serde::Serialize;
use std::collections::HashMap;

/// Kappa under which a check disagrees with the expert (with at least `MIN_LABELS` labels).
pub const LOW_KAPPA: f64 = 0.4;
pub const MIN_LABELS: usize = 4;
pub const HIGH_FLIP_RATE: f64 = 0.2;
pub const POOR_AUROC: f64 = 0.6;
/// AUROC on the expert's labels or scores under which a check ranks outputs the wrong way.
pub const REVERSED_AUROC: f64 = 0.5;
/// Spread of FAIL rationales above which they are taken to point at several criteria.
pub const INCOHERENT_SPREAD: f64 = 0.35;
/// A calibrated threshold is adopted when it raises kappa by at least this much.
pub const CALIBRATION_GAIN: f64 = 0.1;
/// Most checks one refinement adds from the expert's notes on outputs the set misses.
pub const MAX_CHECKS_FROM_NOTES: usize = 2;
/// Checks the writer drafts per cluster of notes: asked for a check against the notes' kind of
/// error and for one on the task requirement they break, each greedily and sampled.
pub const NOTE_CANDIDATES: usize = 4;
/// Sampling temperature of the sampled drafts: varied wording, still on the task.
const CANDIDATE_TEMPERATURE: f32 = 0.8;

/// What one check-writer request of a refinement is for.
enum Purpose {
    /// Rewrite check `i`.
    Rewrite(usize),
    /// Group `g` of check `i`'s FAIL rationales becomes one of the checks it splits into.
    Split(usize, usize),
    /// Group `g` of the expert's notes on missed outputs: one draft of its new check.
    FromNotes(usize),
}

/// A new wording of an existing check; both kinds carry the expert's rulings on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wording {
    /// The check writer's rewrite.
    Rewrite,
    /// The check as it is, with the rulings folded in.
    Folded,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub check: String,
    pub action: &'static str,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefineReport {
    pub from: u32,
    /// The new version; `None` when nothing called for a change.
    pub to: Option<u32>,
    pub changes: Vec<Change>,
    /// Rewrites whose check writer answer was unreadable (the check kept its question; rulings
    /// were still appended).
    pub unreadable_rewrites: usize,
    /// New wordings (drafts from the expert's notes, rewrites), as measured on the outputs the
    /// expert scored (`probe`).
    pub probed: Vec<Probed>,
}

/// A new wording of a check and how well it separates the expert's scored outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Probed {
    pub check: String,
    pub question: String,
    /// AUROC of its P(PASS) on the outputs the expert scored high vs low.
    pub auroc: Option<f64>,
    /// A new wording of an existing check (`None`: a draft from the expert's notes).
    pub wording: Option<Wording>,
    /// The AUROC of the check as it is (a new wording's), on the same outputs.
    pub replaces: Option<f64>,
    /// Expert rulings folded into this wording (a rewrite's, or the check as it is with them).
    pub rulings: usize,
    /// A draft's name or figure that only one of the expert's scored inputs mentions: the draft
    /// is refused unmeasured.
    pub particular: Option<String>,
    pub adopted: bool,
}

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auroc = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{a:.2}"));
        if let Some(word) = &self.particular {
            return write!(f, "not adopted {}: {} (names '{word}', which only one of the expert's scored inputs mentions)", self.check, self.question);
        }
        let what = match self.wording {
            Some(Wording::Rewrite) => format!("the rewrite of {}", self.check),
            Some(Wording::Folded) => format!("{} as it is", self.check),
            None => self.check.clone(),
        };
        let rulings = if self.rulings > 0 { format!(" with {} expert ruling(s) folded in", self.rulings) } else { String::new() };
        write!(f, "{} {what}{rulings}: {} (AUROC {} on the expert's scored outputs", if self.adopted { "adopted" } else { "not adopted" }, self.question, auroc(self.auroc))?;
        if self.wording.is_some() {
            write!(f, "; the check as it was run: {}", auroc(self.replaces))?;
        }
        write!(f, ")")
    }
}

/// What is wrong with one check, gathered before any model call.
#[derive(Default)]
struct Findings {
    rulings: Vec<String>,
    problems: Vec<String>,
    drop: Option<String>,
    threshold: Option<(f32, String)>,
    incoherent: bool,
    /// AUROC under `REVERSED_AUROC` on the expert's labels or scores, and the reason to drop.
    reversed: Option<(f64, String)>,
    /// The expert asked for a split.
    split: bool,
}

/// The FAIL rationales of `check` among `judgments`, clustered by meaning: the groups of two or
/// more (the rest are left out). Two groups or more suggest the check tests several criteria;
/// refinement splits it along them, the workbench's check page shows them.
pub fn fail_rationale_groups(embedder: &crate::Role, judgments: &[Judgment], check: &str) -> Result<Vec<Vec<String>>> {
    let rationales: Vec<String> = judgments.iter().filter(|j| j.check_id == check).flat_map(fail_rationales).map(str::to_string).collect();
    groups_by_meaning(embedder, &rationales)
}

/// `texts` clustered by meaning as discovery clusters errors: the groups of two or more,
/// largest first, each most typical first (the rest are left out).
fn groups_by_meaning(embedder: &crate::Role, texts: &[String]) -> Result<Vec<Vec<String>>> {
    if texts.len() < 2 {
        return Ok(Vec::new());
    }
    let vectors = embedder.embed(texts)?;
    let points: Vec<ErrorPoint> =
        texts.iter().zip(vectors).enumerate().map(|(n, (t, v))| ErrorPoint { id: ErrorId(n as i64), description: t.clone(), severity: Severity::Major, embedding: v }).collect();
    Ok(cluster(&points).leaves.into_iter().filter(|l| l.members.len() >= 2).map(|l| l.members.iter().map(|&m| texts[m].clone()).collect()).collect())
}

/// The expert's notes on the outputs the set misses: outputs the expert scored low (under the
/// middle of their scores, with a note) that the set scores at least as high as the median of
/// the outputs the expert scored high (the median: a few accepted outputs the set scores very
/// high must not hide the rest). Those notes say, in the expert's words, what no check of the
/// set looks for.
fn missed_notes(store: &Store, run: &Run, judgments: &[Judgment]) -> Result<Vec<String>> {
    let Some(dataset) = run.dataset else { return Ok(Vec::new()) };
    let keys: HashMap<ItemId, String> = store.items(dataset)?.into_iter().map(|i| (i.id, i.fields.key)).collect();
    let scores = store.score_labels(dataset)?;
    let Some(middle) = ScoreMiddle::of(scores.iter().map(|s| s.score)) else { return Ok(Vec::new()) };
    let mut by_item: HashMap<&str, Vec<f64>> = HashMap::new();
    for j in judgments {
        by_item.entry(j.item_id.as_str()).or_default().push(j.p_pass as f64);
    }
    let set_score = |item: ItemId| keys.get(&item).and_then(|key| mean(by_item.get(key.as_str())?));
    let mut accepted: Vec<f64> = scores.iter().filter(|s| middle.high(s.score) == Some(true)).filter_map(|s| set_score(s.item)).collect();
    if accepted.is_empty() {
        return Ok(Vec::new());
    }
    accepted.sort_by(f64::total_cmp);
    let bar = (accepted[(accepted.len() - 1) / 2] + accepted[accepted.len() / 2]) / 2.0;
    Ok(scores.iter().filter(|s| middle.high(s.score) == Some(false) && !s.note.trim().is_empty() && set_score(s.item).is_some_and(|p| p >= bar)).map(|s| s.note.trim().to_string()).collect())
}

/// Folds an expert's ruling into a check's pass criteria, verbatim, so the judge reads the
/// expert's own words. Refinement and the ruling preview (`preview.rs`) fold the same way.
pub fn fold_ruling(check: &mut Check, ruling: &str) {
    check.pass_criteria = format!("{}\nExpert ruling: {ruling}", check.pass_criteria).trim_start().to_string();
}

/// `check` with every one of the expert's `rulings` folded in, in order.
fn with_rulings(mut check: Check, rulings: &[String]) -> Check {
    for ruling in rulings {
        fold_ruling(&mut check, ruling);
    }
    check
}

/// A ruling as refinement folds it: with the item it was given on.
pub fn ruling_on_item(store: &Store, question: &assay_store::Question, ruling: &str) -> Result<String> {
    let on = question.asked.item.map(|item| store.item(item).map(|i| format!(" (on item '{}')", i.fields.key))).transpose()?.unwrap_or_default();
    Ok(format!("{ruling}{on}"))
}

/// Refines `set` from the answered questions and the report of `run` (default: the set's latest
/// finished judge run; without one, from the rulings alone).
pub fn refine(store: &mut Store, backends: &Backends, project: &Project, set: &SetVersion, run: Option<RunId>, seed: u64, progress: Progress) -> Result<RefineReport> {
    let config = ProjectConfig::of(project)?;
    let run = match run {
        Some(id) => Some(report_run(store, project, set, Some(id))?),
        None => report_run(store, project, set, None).ok(),
    };
    let report: Option<SetReport> = run.as_ref().map(|r| report(store, backends, project, set, r, None)).transpose()?;
    let judgments: Vec<Judgment> = match &run {
        Some(r) => store.judgments(r.id)?,
        None => Vec::new(),
    };
    let questions = store.questions(project.id, Some(QuestionStatus::Answered))?;
    let mut changes = Vec::new();
    let mut findings: Vec<Findings> = set.set.checks.iter().map(|_| Findings::default()).collect();
    let mut added = Vec::new();
    for q in &questions {
        let ruling = q.ruling.as_ref().map(|r| r.text.trim()).unwrap_or_default();
        match q.asked.check.as_deref().and_then(|key| set.set.checks.iter().position(|c| c.id == key)) {
            Some(i) if !set.set.checks[i].pass_criteria.contains(ruling) => {
                let f = &mut findings[i];
                if ruling.to_lowercase().starts_with("drop") {
                    f.drop = Some(format!("the expert ruled: {ruling}"));
                } else if ruling.to_lowercase().starts_with("split") {
                    f.split = true;
                } else {
                    f.rulings.push(ruling_on_item(store, q, ruling)?);
                }
            }
            Some(_) => {}
            None if q.asked.check.is_none() && ruling.to_lowercase().starts_with("add") => {
                // Questions stored before schema v2 name an uncovered constraint in quotes
                // instead of proposing its check.
                let proposed = q.asked.proposed_check.clone().or_else(|| quoted(&q.asked.why).map(|c| constraint_check(check_id(&format!("p{}", q.id), c), c)));
                if let Some(check) = proposed.filter(|p| !set.set.checks.iter().chain(&added).any(|c| c.id == p.id)) {
                    changes.push(Change { check: check.id.clone(), action: "added", why: format!("the expert adopted the check question {} proposed: {ruling}", q.id) });
                    added.push(check);
                }
            }
            None => {}
        }
    }
    if let Some(report) = &report {
        for (f, c) in findings.iter_mut().zip(&report.checks) {
            diagnose(f, c);
        }
    }
    for f in findings.iter_mut().filter(|f| f.split) {
        f.incoherent = true;
    }
    drop_reversed(&mut findings);

    // Splits: FAIL rationales of incoherent checks, clustered.
    let writer = backends.role(&config.roles.check_writer)?;
    let mut split_into: Vec<Option<Vec<Vec<String>>>> = vec![None; findings.len()];
    let embedder = backends.role(&config.roles.embedder)?;
    for (i, f) in findings.iter().enumerate() {
        if !f.incoherent || f.drop.is_some() {
            continue;
        }
        let groups = fail_rationale_groups(&embedder, &judgments, &set.set.checks[i].id)?;
        if groups.len() >= 2 {
            split_into[i] = Some(groups);
        }
    }
    for (f, split) in findings.iter_mut().zip(&split_into) {
        if f.incoherent && split.is_none() && f.drop.is_none() && !f.problems.is_empty() {
            f.drop = Some(format!("its FAIL rationales do not cohere or cluster, and {}", f.problems.join("; ")));
        }
    }

    // What the set misses, from the expert's notes: one check per cluster of notes (cross-output
    // by construction), or one for all of them when they do not cluster.
    let notes = match &run {
        Some(r) => missed_notes(store, r, &judgments)?,
        None => Vec::new(),
    };
    let mut note_groups = groups_by_meaning(&embedder, &notes)?;
    if note_groups.is_empty() && notes.len() >= 2 {
        note_groups.push(notes.clone());
    }
    note_groups.truncate(MAX_CHECKS_FROM_NOTES);

    // One batch of model calls: rewrites, split checks, checks from the expert's notes.
    let prompt = &project.generation_prompt;
    let mut requests: Vec<ChatRequest> = Vec::new();
    let mut purposes: Vec<Purpose> = Vec::new();
    for (i, (c, f)) in set.set.checks.iter().zip(&findings).enumerate() {
        if f.drop.is_some() {
            continue;
        }
        match &split_into[i] {
            Some(groups) => {
                for (g, group) in groups.iter().enumerate() {
                    let texts: Vec<&str> = group.iter().map(String::as_str).take(8).collect();
                    requests.push(cluster_request(prompt, &texts, config.answer_tokens, stable_seed(seed, &["split", &c.id, &g.to_string()])));
                    purposes.push(Purpose::Split(i, g));
                }
            }
            None if !f.rulings.is_empty() || !f.problems.is_empty() => {
                let problem = if f.problems.is_empty() { "the expert's rulings below are not yet part of it".to_string() } else { f.problems.join("; ") };
                requests.push(rewrite_request(prompt, c, &problem, &f.rulings, config.answer_tokens, stable_seed(seed, &["rewrite", &c.id])));
                purposes.push(Purpose::Rewrite(i));
            }
            None => {}
        }
    }
    for (g, group) in note_groups.iter().enumerate() {
        let texts: Vec<&str> = group.iter().map(String::as_str).take(8).collect();
        for draft in 0..NOTE_CANDIDATES {
            let draft_seed = stable_seed(seed, &["notes", &g.to_string(), &draft.to_string()]);
            let mut request = if draft % 2 == 0 { cluster_request(prompt, &texts, config.answer_tokens, draft_seed) } else { task_request(prompt, &texts, config.answer_tokens, draft_seed) };
            if draft >= 2 {
                request.params.temperature = CANDIDATE_TEMPERATURE;
            }
            requests.push(request);
            purposes.push(Purpose::FromNotes(g));
        }
    }
    let answers = writer.chat(&requests, &mut |done| progress("rewriting checks", done, requests.len()))?;
    let mut unreadable = 0;
    let mut rewritten: Vec<Option<Check>> = vec![None; findings.len()];
    let mut splits: Vec<Vec<Check>> = vec![Vec::new(); findings.len()];
    let mut drafts: Vec<(usize, Check)> = Vec::new();
    for (purpose, answer) in purposes.into_iter().zip(answers) {
        let parsed = answer.ok().as_deref().and_then(parse_check);
        unreadable += usize::from(parsed.is_none());
        match purpose {
            Purpose::Split(i, g) => {
                let old = &set.set.checks[i];
                let examples: Vec<String> = split_into[i].as_ref().map(|gs| gs[g].iter().take(3).cloned().collect()).unwrap_or_default();
                let (question, criteria, fail_examples) =
                    parsed.unwrap_or_else(|| (format!("{} (in particular: {})", old.question, examples.first().cloned().unwrap_or_default()), old.pass_criteria.clone(), examples.clone()));
                splits[i].push(Check { id: format!("{}-{}", old.id, (b'a' + g as u8) as char), name: old.name.clone(), question, pass_criteria: criteria, fail_examples, threshold: old.threshold });
            }
            Purpose::Rewrite(i) => {
                let Some((question, pass_criteria, examples)) = parsed else { continue };
                let old = &set.set.checks[i];
                let fail_examples = if examples.is_empty() { old.fail_examples.clone() } else { examples };
                rewritten[i] = Some(with_rulings(Check { question, pass_criteria, fail_examples, ..old.clone() }, &findings[i].rulings));
            }
            // An unreadable answer adds nothing: a check built from the notes themselves would
            // ask about one output's particulars.
            Purpose::FromNotes(g) => {
                let Some((question, pass_criteria, fail_examples)) = parsed else { continue };
                let id = check_id(&format!("n{}", set.number + 1), &question);
                if set.set.checks.iter().chain(&added).chain(drafts.iter().map(|(_, c)| c)).any(|c| c.question == question || c.id == id) {
                    continue;
                }
                drafts.push((g, Check { id, name: String::new(), question, pass_criteria, fail_examples, threshold: None }));
            }
        }
    }

    // Per check, its new wordings, most changed first: the check writer's rewrite, then the check
    // as it is with the expert's rulings folded in (both carry the rulings, so what is measured
    // is what a version would hold).
    let wordings: Vec<Vec<(Wording, Check)>> = set
        .set
        .checks
        .iter()
        .zip(&findings)
        .zip(&split_into)
        .zip(rewritten)
        .map(|(((old, f), split), rewrite)| {
            let folded = (!f.rulings.is_empty() && f.drop.is_none() && split.is_none()).then(|| with_rulings(old.clone(), &f.rulings));
            rewrite.map(|c| (Wording::Rewrite, c)).into_iter().chain(folded.map(|c| (Wording::Folded, c))).collect()
        })
        .collect();
    // The wording each check keeps (`None`: as it is) and what the measurement says about it.
    let mut kept: Vec<Option<Check>> = vec![None; findings.len()];
    let mut measured: Vec<Vec<String>> = vec![Vec::new(); findings.len()];

    // New wordings, measured on the expert's scored outputs (with the run's judge options):
    // per cluster of notes, the draft that separates them best, if it separates them; per check,
    // the first of its wordings that no other (the check as it is included) separates better.
    let mut probed = Vec::new();
    if let Some(run) = &run {
        let scored = ScoredOutputs::of_run(store, run)?;
        // A draft about one input's particulars is refused before it is measured.
        let (particular, general): (Vec<_>, Vec<_>) = std::mem::take(&mut drafts).into_iter().map(|(g, c)| (scored.particular(&c), g, c)).partition(|(p, _, _)| p.is_some());
        probed.extend(particular.into_iter().map(|(particular, _, c)| Probed {
            check: c.id,
            question: c.question,
            auroc: None,
            wording: None,
            replaces: None,
            rulings: 0,
            particular,
            adopted: false,
        }));
        drafts = general.into_iter().map(|(_, g, c)| (g, c)).collect();
        let new: Vec<Check> = drafts.iter().map(|(_, c)| c.clone()).chain(wordings.iter().flatten().map(|(_, c)| c.clone())).collect();
        let auroc = scored.probe(&backends.role(&config.roles.judge)?, &new, progress)?;
        let (of_drafts, mut of_wordings) = auroc.split_at(drafts.len());
        for (g, group) in note_groups.iter().enumerate() {
            let best = (0..drafts.len()).filter(|&d| drafts[d].0 == g).max_by(|&a, &b| of_drafts[a].unwrap_or(f64::MIN).total_cmp(&of_drafts[b].unwrap_or(f64::MIN)));
            let Some(best) = best.filter(|&d| of_drafts[d].is_some_and(|a| a >= POOR_AUROC)) else { continue };
            let check = drafts[best].1.clone();
            changes.push(Change {
                check: check.id.clone(),
                action: "added",
                why: format!(
                    "the set scores {} output(s) the expert rejected as high as those they accepted; the expert's note on one: {}; it separates the expert's scored outputs (AUROC {:.2})",
                    group.len(),
                    group[0],
                    of_drafts[best].unwrap_or(f64::NAN)
                ),
            });
            added.push(check);
        }
        probed.extend(drafts.iter().zip(of_drafts).map(|((_, c), auroc)| Probed {
            check: c.id.clone(),
            question: c.question.clone(),
            auroc: *auroc,
            wording: None,
            replaces: None,
            rulings: 0,
            particular: None,
            adopted: added.iter().any(|a| a.id == c.id),
        }));
        for (i, (old, these)) in set.set.checks.iter().zip(&wordings).enumerate() {
            if these.is_empty() {
                continue;
            }
            let (aurocs, rest) = of_wordings.split_at(these.len());
            of_wordings = rest;
            let was = scored.auroc_of(&judgments, &old.id);
            let chosen = kept_wording(&[aurocs, &[was]].concat());
            let rulings = findings[i].rulings.len();
            for (w, ((kind, wording), &auroc)) in these.iter().zip(aurocs).enumerate() {
                probed.push(Probed { check: wording.id.clone(), question: wording.question.clone(), auroc, wording: Some(*kind), replaces: was, rulings, particular: None, adopted: w == chosen });
            }
            measured[i] = measured_wording(these, aurocs, was, chosen, rulings);
            kept[i] = these.get(chosen).map(|(_, c)| c.clone());
        }
    } else {
        // Nothing to measure on: the rewrite, or the rulings folded into the check as it is.
        for (k, these) in kept.iter_mut().zip(&wordings) {
            *k = these.first().map(|(_, c)| c.clone());
        }
    }

    let mut checks = Vec::new();
    for (i, (old, f)) in set.set.checks.iter().zip(findings).enumerate() {
        if let Some(why) = f.drop {
            changes.push(Change { check: old.id.clone(), action: "dropped", why });
            continue;
        }
        if !splits[i].is_empty() {
            let ids: Vec<&str> = splits[i].iter().map(|c| c.id.as_str()).collect();
            changes.push(Change { check: old.id.clone(), action: "split", why: format!("its FAIL rationales form {} clusters: now {}", ids.len(), ids.join(", ")) });
            checks.append(&mut splits[i]);
            continue;
        }
        let mut check = kept[i].take().unwrap_or_else(|| old.clone());
        let mut why: Vec<String> = f.problems.clone();
        why.append(&mut measured[i]);
        if run.is_none() && !f.rulings.is_empty() {
            why.push(format!("{} expert ruling(s) folded in", f.rulings.len()));
        }
        if let Some((t, reason)) = f.threshold {
            check.threshold = Some(t);
            why.push(reason);
        }
        if check != *old {
            changes.push(Change { check: old.id.clone(), action: "rewritten", why: why.join("; ") });
        }
        checks.push(check);
    }
    checks.extend(added);
    if changes.is_empty() || checks.is_empty() {
        return Ok(RefineReport { from: set.number, to: None, changes: if checks.is_empty() { changes } else { Vec::new() }, unreadable_rewrites: unreadable, probed });
    }
    let reason = format!("refined from v{}: {}", set.number, changes.iter().map(|c| format!("{} {} ({})", c.check, c.action, c.why)).collect::<Vec<_>>().join("; "));
    let version = store.create_set_version(project.id, &EvaluatorSet::new(None, checks)?, &reason)?;
    Ok(RefineReport { from: set.number, to: Some(version.number), changes, unreadable_rewrites: unreadable, probed })
}

/// Which of a check's wordings refinement keeps, given each one's AUROC on the expert's scored
/// outputs, most changed first and the check as it is last: the first that no other separates
/// better (an unmeasured one is never beaten and never beats).
fn kept_wording(aurocs: &[Option<f64>]) -> usize {
    let beaten = |a: Option<f64>| aurocs.iter().any(|o| matches!((o, a), (Some(o), Some(a)) if *o > a));
    (0..aurocs.len()).find(|&i| !beaten(aurocs[i])).unwrap_or(aurocs.len() - 1)
}

/// What the measurement of a check's new wordings (`wordings`, AUROC each; `was`: the check as
/// it is) says about the one kept (`chosen`; past the wordings: the check as it is).
fn measured_wording(wordings: &[(Wording, Check)], aurocs: &[Option<f64>], was: Option<f64>, chosen: usize, rulings: usize) -> Vec<String> {
    let a = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    let mut why = Vec::new();
    for (w, ((kind, _), &auroc)) in wordings.iter().zip(aurocs).enumerate() {
        why.push(match (kind, w == chosen) {
            (Wording::Rewrite, true) => format!("the new wording separates the expert's scored outputs at AUROC {} (was {})", a(auroc), a(was)),
            (Wording::Rewrite, false) => format!("the check writer's rewrite is not adopted (AUROC {} on the expert's scored outputs, {} as it is)", a(auroc), a(was)),
            (Wording::Folded, true) => format!("{rulings} expert ruling(s) folded in (AUROC {} with them, {} without)", a(auroc), a(was)),
            (Wording::Folded, false) if chosen == wordings.len() => {
                format!("{rulings} expert ruling(s) not folded in: with them the check separates the expert's scored outputs worse (AUROC {}, {} without)", a(auroc), a(was))
            }
            (Wording::Folded, false) => continue,
        });
    }
    if matches!(wordings.get(chosen), Some((Wording::Rewrite, _))) && rulings > 0 {
        why.push(format!("{rulings} expert ruling(s) folded in"));
    }
    why
}

/// Problems the report shows for one check.
fn diagnose(f: &mut Findings, c: &CheckReport) {
    if let Some(a) = c.agreement.filter(|a| a.n >= MIN_LABELS) {
        // Against an expert of one verdict kappa is 0 whatever the judge does: accuracy says it.
        let expert_pass = a.confusion.both_pass + a.confusion.expert_only_pass;
        let one_verdict = expert_pass == 0 || expert_pass == a.n;
        match a.kappa.filter(|_| !one_verdict) {
            Some(k) if k < LOW_KAPPA => f.problems.push(format!("low agreement with the expert (kappa {k:.2} on {} labels)", a.n)),
            None if a.accuracy < 0.8 => f.problems.push(format!("low agreement with the expert (accuracy {:.2} on {} labels)", a.accuracy, a.n)),
            _ => {}
        }
        if let Some(cal) = c.calibration {
            if cal.kappa.unwrap_or(f64::MIN) >= a.kappa.unwrap_or(f64::MIN / 2.0) + CALIBRATION_GAIN {
                f.threshold = Some((cal.threshold as f32, format!("threshold {:.3} calibrated on {} labels (kappa {:.2})", cal.threshold, a.n, cal.kappa.unwrap_or(f64::NAN))));
            }
        }
    }
    if let Some(flips) = c.flip_rate.filter(|r| *r > HIGH_FLIP_RATE) {
        f.problems.push(format!("sampled verdicts flip {:.0}% of the time", 100.0 * flips));
    }
    if let Some(s) = &c.separation {
        if let Some(auroc) = s.auroc.filter(|a| *a < POOR_AUROC && s.good.len() >= 2 && s.bad.len() >= 2) {
            f.problems.push(format!("poor separation of good and bad outputs (AUROC {auroc:.2})"));
            let by_expert = matches!(s.basis, SeparationBasis::ExpertLabels | SeparationBasis::ExpertScores);
            if by_expert && auroc < REVERSED_AUROC && s.good.len() + s.bad.len() >= MIN_LABELS {
                f.reversed = Some((auroc, format!("it ranks the expert's {} good and {} bad outputs the wrong way round (AUROC {auroc:.2})", s.good.len(), s.bad.len())));
            }
        }
    }
    f.incoherent = c.cohesion.is_some_and(|s| s > INCOHERENT_SPREAD);
}

/// Marks reversed checks to drop, keeping the least reversed one when no other check would
/// stay (a set needs a check, and the loop a next version to judge).
fn drop_reversed(findings: &mut [Findings]) {
    if findings.iter().all(|f| f.drop.is_some() || f.reversed.is_some()) {
        let auroc = |f: &Findings| f.reversed.as_ref().map_or(f64::INFINITY, |r| r.0);
        if let Some(best) = findings.iter_mut().filter(|f| f.drop.is_none()).max_by(|a, b| auroc(a).total_cmp(&auroc(b))) {
            best.reversed = None;
        }
    }
    for f in findings {
        if let Some((_, why)) = f.reversed.take() {
            f.drop.get_or_insert(why);
        }
    }
}

/// The text between the first and the last double quote of `s`.
fn quoted(s: &str) -> Option<&str> {
    let (start, end) = (s.find('"')?, s.rfind('"')?);
    (end > start + 1).then(|| &s[start + 1..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Separation;

    fn judged(auroc: f64, basis: SeparationBasis) -> CheckReport {
        CheckReport {
            id: "c".into(),
            judged: 8,
            pass_rate: 0.5,
            mean_p_pass: 0.5,
            mean_off_format: 0.0,
            clear_fraction: None,
            flip_rate: None,
            judge_disagreement: None,
            separation: Some(Separation { basis, good: vec![0.5; 4], bad: vec![0.5; 4], auroc: Some(auroc) }),
            cohesion: None,
            agreement: None,
            calibration: None,
            reliability: None,
        }
    }

    fn diagnosed(auroc: f64, basis: SeparationBasis) -> Findings {
        let mut f = Findings::default();
        diagnose(&mut f, &judged(auroc, basis));
        f
    }

    #[test]
    fn only_the_experts_good_and_bad_outputs_can_reverse_a_check() {
        for basis in [SeparationBasis::ExpertLabels, SeparationBasis::ExpertScores] {
            let f = diagnosed(0.3, basis);
            assert!(f.reversed.as_ref().is_some_and(|r| r.0 == 0.3 && r.1.contains("4 good and 4 bad")), "{basis:?}");
            assert_eq!(f.problems.len(), 1, "a reversed check is also poorly separating");
        }
        // Discovery generators are a proxy: poor separation there asks for a rewrite only.
        assert!(diagnosed(0.3, SeparationBasis::Generators).reversed.is_none());
        // Poor but not reversed: rewritten, kept.
        let weak = diagnosed(0.55, SeparationBasis::ExpertScores);
        assert!(weak.reversed.is_none() && weak.problems.len() == 1);
    }

    /// A scripted backend: every check of an output gets the P(PASS) its text holds (one minus
    /// it for a check asking whether the output *uses* commas: yes is the bad case; 0.5 for one
    /// asking whether it is polite, or with "noise" in its criteria), notes embed by the problem
    /// they name (commas or not), and the check writer, keeping what it was asked, answers
    /// "Does the output <verb> commas?" with its greedy verb or, when sampling, its sampled verb.
    struct Notes {
        asked: std::sync::Mutex<Vec<String>>,
        verbs: [&'static str; 2],
    }

    impl Notes {
        fn drafting(greedy: &'static str, sampled: &'static str) -> Self {
            Self { asked: Default::default(), verbs: [greedy, sampled] }
        }
    }

    impl crate::backend::Backend for Notes {
        fn chat(&self, _: &str, requests: &[ChatRequest], _: &mut dyn FnMut(usize)) -> Result<Vec<crate::backend::Completion>> {
            self.asked.lock().unwrap().extend(requests.iter().map(|r| r.messages[1].content.clone()));
            let draft = |r: &ChatRequest| {
                let verb = self.verbs[usize::from(r.params.temperature > 0.0)];
                Ok(format!(r#"{{"question": "Does the output {verb} commas?", "pass_criteria": "", "fail_examples": []}}"#))
            };
            Ok(requests.iter().map(draft).collect())
        }

        fn judge(&self, _: &str, items: &[assay_core::JudgeItem], checks: &[Check], _: &assay_core::JudgeOptions, _: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
            let judgment = |item: &assay_core::JudgeItem, c: &Check| {
                let p: f32 = item.output.parse().unwrap();
                let p = if c.question.contains("use commas") {
                    1.0 - p
                } else if c.question.contains("polite") || c.pass_criteria.contains("noise") {
                    0.5
                } else {
                    p
                };
                crate::scripted_judgment(&item.id, &c.id, p)
            };
            Ok(items.iter().map(|i| checks.iter().map(|c| judgment(i, c)).collect()).collect())
        }

        fn embed(&self, _: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|t| if t.contains("comma") { vec![1.0, 0.0] } else { vec![0.0, 1.0] }).collect())
        }
    }

    /// Seven outputs of three inputs (P(PASS) in their text), judged by a set of one check, and
    /// the expert's score and note on each.
    struct Judged {
        _dir: tempfile::TempDir,
        store: Store,
        project: Project,
        set: SetVersion,
        run: RunId,
        scores: Vec<assay_store::ScoreLabel>,
    }

    /// Four outputs the expert accepts, three they reject; with a check whose P(PASS) is the
    /// output's number, the set scores two of the rejected ones as high as the median accepted
    /// one (`notes` on them: about commas; one accepted output above them all must not hide
    /// them), the third low.
    fn seven_outputs(backends: &Backends, question: &str, notes: [&str; 3]) -> Judged {
        seven_outputs_judged_with(backends, question, notes, &assay_core::JudgeOptions::default())
    }

    fn seven_outputs_judged_with(backends: &Backends, question: &str, notes: [&str; 3], options: &assay_core::JudgeOptions) -> Judged {
        use assay_store::{NewItem, NewProject, ScoreLabel};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("assay.db")).unwrap();
        let project = store.create_project(&NewProject { name: "p".into(), generation_prompt: "Answer in lowercase, without commas.".into(), ..Default::default() }).unwrap();
        let outputs = [
            ("a", "0.9", 1.0, "fine"),
            ("b", "0.9", 1.0, "fine"),
            ("c", "0.9", 1.0, "fine"),
            ("g", "1.0", 1.0, "fine"),
            ("d", "0.9", 0.0, notes[0]),
            ("e", "0.9", 0.0, notes[1]),
            ("f", "0.1", 0.0, notes[2]),
        ];
        let inputs = ["Say hi.", "Say hi to Alice.", "Say bye."];
        let items: Vec<NewItem> =
            outputs.iter().enumerate().map(|(n, (k, o, _, _))| NewItem { key: k.to_string(), input: inputs[n % 3].into(), output: Some(o.to_string()), ..Default::default() }).collect();
        let dataset = store.import_dataset(project.id, "d", "", &items).unwrap();
        let check = Check { id: "c0".into(), name: String::new(), question: question.into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None };
        let set = store.create_set_version(project.id, &EvaluatorSet::new(None, vec![check]).unwrap(), "scripted").unwrap();
        let (run, _) = crate::start_judge_run(&mut store, backends, &project, &set, &dataset, options).unwrap();
        crate::run_judging(&mut store, backends, &project, run.id, 8, &mut |_, _, _| {}).unwrap();
        let ids = store.items(dataset.id).unwrap();
        let scores = ids.iter().zip(&outputs).map(|(i, (_, _, score, note))| ScoreLabel { item: i.id, score: *score, note: note.to_string() }).collect();
        Judged { _dir: dir, store, project, set, run: run.id, scores }
    }

    #[test]
    fn notes_on_outputs_the_set_misses_become_the_draft_that_separates_the_experts_scores() {
        let notes = std::sync::Arc::new(Notes::drafting("use", "avoid"));
        let backends = Backends::new(notes.clone());
        let Judged { mut store, project, set, run, scores, .. } = seven_outputs(&backends, "Is it a greeting?", ["it uses commas", "a comma splice", "not lowercase"]);

        // Without the expert's scores nothing is missed.
        assert_eq!(refine(&mut store, &backends, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap().to, None);

        store.set_score_labels(&scores).unwrap();
        // Only drafts whose yes is the bad case: measured, none is added.
        let reversed = Backends::new(std::sync::Arc::new(Notes::drafting("use", "use")));
        let report = refine(&mut store, &reversed, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
        assert_eq!((report.to, report.changes.len()), (None, 0), "{:?}", report.changes);
        assert_eq!(report.probed.len(), 1, "identical drafts are judged once");
        assert!(!report.probed[0].adopted && report.probed[0].auroc == Some(0.25), "{:?}", report.probed);

        let report = refine(&mut store, &backends, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        let added = &report.changes[0];
        assert_eq!((added.action, added.check.as_str()), ("added", "n2-avoid-commas"));
        assert!(added.why.contains("2 output(s)") && added.why.contains("AUROC 0.75"), "{}", added.why);
        let measured: Vec<(&str, Option<f64>, bool)> = report.probed.iter().map(|c| (c.question.as_str(), c.auroc, c.adopted)).collect();
        assert_eq!(measured, [("Does the output use commas?", Some(0.25), false), ("Does the output avoid commas?", Some(0.75), true)]);
        let v2 = store.set_version(project.id, report.to.unwrap()).unwrap();
        assert_eq!(v2.set.checks.iter().map(|c| c.question.as_str()).collect::<Vec<_>>(), ["Is it a greeting?", "Does the output avoid commas?"]);

        // Every draft was asked from the notes on both missed outputs, and nothing of the one the
        // set caught.
        let asked = notes.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), NOTE_CANDIDATES);
        assert_eq!(asked.iter().filter(|a| a.contains("Which requirement of the task instructions")).count(), NOTE_CANDIDATES / 2, "half the drafts are on the task's requirement");
        assert!(asked.iter().all(|a| a.contains("it uses commas") && a.contains("a comma splice") && !a.contains("not lowercase")), "{asked:?}");

        // A run of another set is refused rather than read.
        let other = store.create_set_version(project.id, &EvaluatorSet::new(None, v2.set.checks[1..].to_vec()).unwrap(), "another").unwrap();
        assert!(refine(&mut store, &backends, &project, &other, Some(run), 0, &mut |_, _, _| {}).is_err());
    }

    #[test]
    fn the_outputs_the_judged_examples_show_stay_out_of_the_probe() {
        let example = |item: &str, input: &str, accepted: bool| assay_core::JudgedExample { item: Some(item.into()), input: input.into(), output: "0.5".into(), accepted, note: String::new() };
        let options = assay_core::JudgeOptions { examples: vec![example("g", "Say hi.", true), example("f", "Greet Bob.", false)], ..Default::default() };
        let backends = Backends::new(std::sync::Arc::new(Notes::drafting("use", "use")));
        let Judged { mut store, run, scores, .. } = seven_outputs_judged_with(&backends, "Is it a greeting?", [""; 3], &options);
        store.set_score_labels(&scores).unwrap();
        let run = store.run(run).unwrap();
        let scored = crate::probe::ScoredOutputs::of_run(&store, &run).unwrap();
        let check = |question: &str| Check { id: "x".into(), name: String::new(), question: question.into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None };
        // Accepted a, b, c (0.9) against rejected d, e (0.9): g (1.0) and f (0.1) would make it 0.75.
        assert_eq!(scored.probe(&backends.role(&crate::RoleModel::local("judge")).unwrap(), &[check("Is it a greeting?")], &mut |_, _, _| {}).unwrap(), [Some(0.5)]);
        // An example's input counts among the inputs a check can be particular to.
        assert_eq!(scored.particular(&check("Does it greet Bob by name?")).as_deref(), Some("Bob"));
    }

    #[test]
    fn a_rewrite_is_adopted_only_when_it_separates_the_experts_scores_no_worse() {
        // A check at P(PASS) 0.5 on every output separates nothing (AUROC 0.5): rewritten. No
        // notes, so nothing is drafted from them.
        let Judged { mut store, project, set, run, scores, .. } = seven_outputs(&Backends::new(std::sync::Arc::new(Notes::drafting("use", "use"))), "Is it polite?", [""; 3]);
        store.set_score_labels(&scores).unwrap();

        let worse = Backends::new(std::sync::Arc::new(Notes::drafting("use", "use")));
        let report = refine(&mut store, &worse, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
        assert_eq!((report.to, report.changes.len()), (None, 0), "the check keeps its wording: {:?}", report.changes);
        let measured: Vec<(&str, Option<f64>, Option<f64>, bool)> = report.probed.iter().map(|p| (p.check.as_str(), p.auroc, p.replaces, p.adopted)).collect();
        assert_eq!(measured, [("c0", Some(0.25), Some(0.5), false)]);
        assert_eq!(report.probed[0].to_string(), "not adopted the rewrite of c0: Does the output use commas? (AUROC 0.25 on the expert's scored outputs; the check as it was run: 0.50)");

        let better = Backends::new(std::sync::Arc::new(Notes::drafting("avoid", "avoid")));
        let report = refine(&mut store, &better, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        assert_eq!(report.changes[0].action, "rewritten");
        assert!(report.changes[0].why.contains("AUROC 0.75 (was 0.50)"), "{}", report.changes[0].why);
        let v2 = store.set_version(project.id, report.to.unwrap()).unwrap();
        assert_eq!(v2.set.checks[0].question, "Does the output avoid commas?");
    }

    #[test]
    fn a_ruling_is_folded_in_unless_the_check_then_separates_the_experts_scores_worse() {
        // As run, "Is it a greeting?" ranks the expert's scores at AUROC 0.75; the check writer's
        // rewrite ("... use commas?") at 0.25; with a criterion that reads as noise, the check ranks
        // them at 0.5.
        let refined = |rulings: &[&str]| {
            let backends = Backends::new(std::sync::Arc::new(Notes::drafting("use", "use")));
            let Judged { _dir, mut store, project, set, run, scores } = seven_outputs(&backends, "Is it a greeting?", [""; 3]);
            store.set_score_labels(&scores).unwrap();
            let item = store.items(store.run(run).unwrap().dataset.unwrap()).unwrap()[0].id;
            for ruling in rulings {
                let ask = assay_store::NewQuestion { item: Some(item), check: Some("c0".into()), why: "near the threshold".into(), ..Default::default() };
                let q = store.add_questions(project.id, &[ask]).unwrap()[0];
                store.answer_question(q, ruling).unwrap();
            }
            let report = refine(&mut store, &backends, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
            let version = report.to.map(|v| store.set_version(project.id, v).unwrap().set.checks);
            (report, version)
        };

        let (report, version) = refined(&["PASS: a greeting in any words", "PASS: treat it as noise"]);
        let measured: Vec<_> = report.probed.iter().map(|p| (p.question.as_str(), p.auroc, p.replaces, p.rulings, p.adopted)).collect();
        assert_eq!(measured, [("Does the output use commas?", Some(0.25), Some(0.75), 2, false), ("Is it a greeting?", Some(0.5), Some(0.75), 2, false)]);
        assert_eq!((version, report.changes.len()), (None, 0), "the check stays as it is: {:?}", report.changes);
        assert_eq!(
            report.probed[1].to_string(),
            "not adopted c0 as it is with 2 expert ruling(s) folded in: Is it a greeting? (AUROC 0.50 on the expert's scored outputs; the check as it was run: 0.75)"
        );

        // A ruling that does not tilt the judge is folded into the check as it is (its rewrite
        // still ranks worse).
        let (report, version) = refined(&["PASS: a greeting in any words"]);
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        let why = &report.changes[0].why;
        assert!(why.contains("rewrite is not adopted (AUROC 0.25") && why.contains("1 expert ruling(s) folded in (AUROC 0.75 with them, 0.75 without)"), "{why}");
        let check = &version.unwrap()[0];
        assert_eq!((check.question.as_str(), check.pass_criteria.as_str()), ("Is it a greeting?", "Expert ruling: PASS: a greeting in any words (on item 'a')"));
    }

    #[test]
    fn kept_wording_is_the_first_no_other_separates_better() {
        assert_eq!(kept_wording(&[Some(0.7), Some(0.7), Some(0.6)]), 0, "ties go to the most changed");
        assert_eq!(kept_wording(&[Some(0.6), Some(0.7), Some(0.7)]), 1);
        assert_eq!(kept_wording(&[Some(0.6), Some(0.5), Some(0.7)]), 2, "the check as it is");
        assert_eq!(kept_wording(&[None, None, Some(0.7)]), 0, "unmeasured: as before the probe");
    }

    #[test]
    fn a_draft_naming_what_only_one_input_mentions_is_refused_unmeasured() {
        let backends = Backends::new(std::sync::Arc::new(Notes::drafting("greet Alice without", "avoid")));
        let Judged { mut store, project, set, run, scores, .. } = seven_outputs(&backends, "Is it a greeting?", ["it uses commas", "a comma splice", "not lowercase"]);
        store.set_score_labels(&scores).unwrap();
        let report = refine(&mut store, &backends, &project, &set, Some(run), 0, &mut |_, _, _| {}).unwrap();
        let measured: Vec<(&str, Option<f64>, Option<&str>, bool)> = report.probed.iter().map(|p| (p.question.as_str(), p.auroc, p.particular.as_deref(), p.adopted)).collect();
        assert_eq!(measured, [("Does the output greet Alice without commas?", None, Some("Alice"), false), ("Does the output avoid commas?", Some(0.75), None, true)]);
        assert!(report.probed[0].to_string().ends_with("(names 'Alice', which only one of the expert's scored inputs mentions)"), "{}", report.probed[0]);
    }

    #[test]
    fn labels_of_one_verdict_are_read_by_accuracy_not_kappa() {
        // The expert passed all 10 outputs, the judge 9: kappa is 0, agreement is fine.
        let mut report = judged(0.7, SeparationBasis::ExpertScores);
        let judge: Vec<bool> = (0..10).map(|i| i > 0).collect();
        report.agreement = assay_core::metrics::agreement(&judge, &[true; 10]);
        assert_eq!(report.agreement.as_ref().unwrap().kappa, Some(0.0));
        let mut f = Findings::default();
        diagnose(&mut f, &report);
        assert!(f.problems.is_empty() && f.threshold.is_none(), "{:?}", f.problems);
        // The judge failing 3 of them is low agreement, said as accuracy.
        let judge: Vec<bool> = (0..10).map(|i| i > 2).collect();
        report.agreement = assay_core::metrics::agreement(&judge, &[true; 10]);
        let mut f = Findings::default();
        diagnose(&mut f, &report);
        assert_eq!(f.problems, ["low agreement with the expert (accuracy 0.70 on 10 labels)"]);
    }

    #[test]
    fn reversed_checks_are_dropped_but_never_the_last_one() {
        let reversed = |auroc: f64| Findings { reversed: Some((auroc, format!("reversed at {auroc}"))), ..Default::default() };
        let mut some = vec![reversed(0.2), Findings::default(), reversed(0.4)];
        drop_reversed(&mut some);
        assert_eq!(some.iter().map(|f| f.drop.clone()).collect::<Vec<_>>(), vec![Some("reversed at 0.2".into()), None, Some("reversed at 0.4".into())]);

        let mut all = vec![reversed(0.2), reversed(0.45), Findings { drop: Some("the expert ruled: drop".into()), ..Default::default() }, reversed(0.1)];
        drop_reversed(&mut all);
        assert_eq!(all.iter().map(|f| f.drop.is_none()).collect::<Vec<_>>(), vec![false, true, false, false], "the least reversed check stays");
        assert_eq!(all[2].drop.as_deref(), Some("the expert ruled: drop"));
    }
}
