//! Ambiguities become questions for the expert: judgments whose samples flip, whose P(PASS)
//! sits near the check's threshold, or on which judge models disagree (another finished run
//! of the same set and dataset with a different judge). The most ambiguous are asked first;
//! a pair that already has a question is not asked again.

use crate::error::Result;
use crate::report::other_judges;
use assay_core::{Judgment, Verdict};
use assay_store::{NewQuestion, Project, RunId, Store};
use std::collections::{HashMap, HashSet};

/// P(PASS) this close to the threshold makes a judgment ambiguous.
pub const NEAR_THRESHOLD: f32 = 0.1;
/// Most questions one run raises: the expert's time is the scarce resource.
pub const MAX_QUESTIONS_PER_RUN: usize = 20;
/// Fewest questions a run raises when it has judgments not yet asked about: without clear
/// ambiguities, the least confident decisions are still where a label teaches the most.
pub const MIN_QUESTIONS_PER_RUN: usize = 3;

/// Raises the run's ambiguous judgments as questions; returns how many were added.
pub fn raise_ambiguities(store: &mut Store, project: &Project, run: RunId) -> Result<usize> {
    let this = store.run(run)?;
    let (Some(set_id), Some(dataset)) = (this.set_version, this.dataset) else { return Ok(0) };
    let set = store.set_version_by_id(set_id)?;
    let thresholds: HashMap<&str, f32> = set.set.checks.iter().map(|c| (c.id.as_str(), c.threshold())).collect();
    let items: HashMap<String, assay_store::ItemId> = store.items(dataset)?.into_iter().map(|i| (i.fields.key, i.id)).collect();
    let judgments = store.judgments(run)?;
    let others = other_judges(store, project, &this)?;
    let asked: HashSet<(Option<assay_store::ItemId>, Option<String>)> = store.questions(project.id, None)?.into_iter().map(|q| (q.asked.item, q.asked.check)).collect();
    let question = |item, j: &Judgment, why| NewQuestion {
        item: Some(item),
        check: Some(j.check_id.clone()),
        why,
        options: vec!["PASS".into(), "FAIL".into(), "the check is unclear here".into()],
        proposed_check: None,
    };
    let unasked: Vec<(assay_store::ItemId, &Judgment, f32)> = judgments
        .iter()
        .filter_map(|j| {
            let item = *items.get(&j.item_id)?;
            (!asked.contains(&(Some(item), Some(j.check_id.clone())))).then(|| (item, j, thresholds.get(j.check_id.as_str()).copied().unwrap_or(0.5)))
        })
        .collect();
    let mut candidates: Vec<(f32, NewQuestion)> =
        unasked.iter().filter_map(|&(item, j, threshold)| ambiguity(j, threshold, others.get(&(j.item_id.clone(), j.check_id.clone()))).map(|(score, why)| (score, question(item, j, why)))).collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut questions: Vec<NewQuestion> = candidates.into_iter().take(MAX_QUESTIONS_PER_RUN).map(|(_, q)| q).collect();
    if questions.len() < MIN_QUESTIONS_PER_RUN {
        let mut least_confident: Vec<_> = unasked.iter().filter(|(item, j, _)| !questions.iter().any(|q| q.item == Some(*item) && q.check.as_deref() == Some(&j.check_id))).collect();
        least_confident.sort_by(|a, b| (a.1.p_pass - a.2).abs().total_cmp(&(b.1.p_pass - b.2).abs()));
        for &&(item, j, threshold) in least_confident.iter().take(MIN_QUESTIONS_PER_RUN - questions.len()) {
            questions.push(question(item, j, format!("Judged {}: one of this run's least confident decisions (P(PASS) = {:.2}, threshold {threshold:.2}).", j.verdict, j.p_pass)));
        }
    }
    store.add_questions(project.id, &questions)?;
    Ok(questions.len())
}

/// How ambiguous a judgment is (higher is more) and why, or `None` if it is clear.
fn ambiguity(j: &Judgment, threshold: f32, others: Option<&Vec<(String, Verdict)>>) -> Option<(f32, String)> {
    let mut reasons = Vec::new();
    let mut score: f32 = 0.0;
    let disagreeing: Vec<&str> = others.into_iter().flatten().filter(|(_, v)| *v != j.verdict).map(|(judge, _)| judge.as_str()).collect();
    if !disagreeing.is_empty() {
        reasons.push(format!("judges disagree ({} says {}, {} the opposite)", "this run's judge", j.verdict, disagreeing.join(", ")));
        score += 2.0;
    }
    if let Some(flips) = j.flip_rate.filter(|f| *f > 0.0) {
        reasons.push(format!("{:.0}% of the sampled verdicts flip", 100.0 * flips));
        score += 1.0 + flips;
    }
    let distance = (j.p_pass - threshold).abs();
    if distance < NEAR_THRESHOLD {
        reasons.push(format!("P(PASS) = {:.2} sits near the threshold {threshold:.2}", j.p_pass));
        score += 1.0 - distance / NEAR_THRESHOLD;
    }
    (!reasons.is_empty()).then(|| (score, format!("Judged {}: {}.", j.verdict, reasons.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgment(p: f32, flip: Option<f32>) -> Judgment {
        Judgment { flip_rate: flip, ..crate::scripted_judgment("i", "c", p) }
    }

    #[test]
    fn clear_judgments_raise_nothing_and_ambiguous_ones_say_why() {
        assert!(ambiguity(&judgment(0.97, None), 0.5, None).is_none());
        let (near, why) = ambiguity(&judgment(0.52, None), 0.5, None).unwrap();
        assert!(why.contains("near the threshold"), "{why}");
        let (flips, why) = ambiguity(&judgment(0.9, Some(0.25)), 0.5, None).unwrap();
        assert!(why.contains("25%"), "{why}");
        let others = vec![("big-judge".to_string(), Verdict::Fail)];
        let (disagree, why) = ambiguity(&judgment(0.9, None), 0.5, Some(&others)).unwrap();
        assert!(why.contains("big-judge"), "{why}");
        assert!(disagree > flips && flips > near - 1.0);
    }
}
