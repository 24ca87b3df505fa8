//! The ruling preview: what a draft ruling on a question would change, before the expert
//! commits it. The ruling is folded into the question's check the way refinement folds it
//! (`refine::fold_ruling`), that one check is judged again on every item of the version's
//! latest judge run (the same judge, the same options), and the verdicts are compared with the
//! run's: which flip, and the check's kappa with the expert's labels before and after (the
//! draft's own label counted as one of them). Nothing is stored.

use crate::backend::Backends;
use crate::config::ProjectConfig;
use crate::error::{PipelineError, Result};
use crate::refine::{fold_ruling, ruling_on_item};
use crate::report::report_run;
use assay_core::metrics::cohen_kappa;
use assay_core::Verdict;
use assay_store::{Project, Question, SetVersion, Store};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub item: String,
    pub before: Verdict,
    pub after: Verdict,
    pub p_pass_before: f32,
    pub p_pass_after: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RulingPreview {
    pub question: i64,
    pub check: String,
    pub set: u32,
    pub run: i64,
    /// Items the check was judged on again.
    pub judged: usize,
    pub flips: Vec<Flip>,
    /// Labelled items of the check (the draft's label included).
    pub labelled: usize,
    pub kappa_before: Option<f64>,
    pub kappa_after: Option<f64>,
}

/// Judges the question's check with `ruling` folded in on the items of the latest judge run of
/// `set`. A question about no check, or about one `set` lacks, has nothing to preview.
pub fn preview_ruling(store: &Store, backends: &Backends, project: &Project, set: &SetVersion, question: &Question, ruling: &str, label: Option<Verdict>) -> Result<RulingPreview> {
    let key = question.asked.check.as_deref().ok_or_else(|| PipelineError::Invalid(format!("question {} is about no single check: its ruling changes no verdict by itself", question.id)))?;
    let check = set.set.checks.iter().find(|c| c.id == key).ok_or_else(|| PipelineError::Invalid(format!("check '{key}' is not in v{}", set.number)))?;
    let run = report_run(store, project, set, None)?;
    let dataset = run.dataset.ok_or_else(|| PipelineError::Invalid(format!("run {} has no dataset", run.id)))?;
    let options = crate::judge_run::run_options(&run)?;
    let mut folded = check.clone();
    fold_ruling(&mut folded, &ruling_on_item(store, question, ruling)?);

    let before: HashMap<String, (Verdict, f32)> = store.judgments(run.id)?.into_iter().filter(|j| j.check_id == key).map(|j| (j.item_id, (j.verdict, j.p_pass))).collect();
    let items: Vec<_> = store.items(dataset)?.into_iter().filter(|i| before.contains_key(&i.fields.key)).collect();
    let judge_items: Vec<_> = items.iter().filter_map(|i| i.to_judge_item()).collect();
    let judge = backends.role(&ProjectConfig::of(project)?.roles.judge)?;
    let after = judge.judge(&judge_items, std::slice::from_ref(&folded), &options, &mut |_| {})?;

    let mut labels: HashMap<String, Verdict> = HashMap::new();
    let keys: HashMap<_, _> = items.iter().map(|i| (i.id, i.fields.key.clone())).collect();
    for l in store.check_labels(dataset)?.into_iter().filter(|l| l.check == key) {
        if let Some(k) = keys.get(&l.item) {
            labels.insert(k.clone(), l.verdict);
        }
    }
    if let (Some(verdict), Some(item)) = (label, question.asked.item) {
        if let Some(k) = keys.get(&item) {
            labels.insert(k.clone(), verdict);
        }
    }
    let mut flips = Vec::new();
    let (mut expert, mut judge_before, mut judge_after) = (Vec::new(), Vec::new(), Vec::new());
    for j in after.into_iter().flatten() {
        let (was, p_was) = before[&j.item_id];
        if let Some(l) = labels.get(&j.item_id) {
            expert.push(*l == Verdict::Pass);
            judge_before.push(was == Verdict::Pass);
            judge_after.push(j.verdict == Verdict::Pass);
        }
        if was != j.verdict {
            flips.push(Flip { item: j.item_id.clone(), before: was, after: j.verdict, p_pass_before: p_was, p_pass_after: j.p_pass });
        }
    }
    Ok(RulingPreview {
        question: question.id.0,
        check: key.to_string(),
        set: set.number,
        run: run.id.0,
        judged: judge_items.len(),
        flips,
        labelled: expert.len(),
        kappa_before: cohen_kappa(&judge_before, &expert),
        kappa_after: cohen_kappa(&judge_after, &expert),
    })
}
