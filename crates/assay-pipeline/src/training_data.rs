//! Training data from a judge run or an optimise run (the evaluator set as a filter and a
//! preference; an optimise run contributes every candidate it evaluated, and a gold output the
//! expert rejected counts as passing nothing):
//! SFT records by rejection sampling (outputs whose share of passed checks reaches a
//! threshold), in the chat `messages` format TRL's SFTTrainer and axolotl's `chat_template`
//! read; DPO pairs per input (the best and the worst output, when their shares of passed
//! checks differ by at least a margin), in TRL's `prompt` / `chosen` / `rejected` format.

use crate::error::{PipelineError, Result};
use crate::optimise::Evolution;
use assay_core::Verdict;
use assay_store::{GoldStatus, Run, RunId, RunKind, Store};
use serde::Serialize;
use std::collections::BTreeMap;

/// One judged output and its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredOutput {
    /// The item's key; for a candidate of an optimise run, `<key>#<candidate id>`.
    pub item: String,
    pub input: String,
    pub context: Option<String>,
    pub output: String,
    pub passed: usize,
    pub checks: usize,
    /// Sum of P(PASS) over the checks: breaks ties between equal pass counts.
    pub p_pass_sum: f32,
}

impl ScoredOutput {
    pub fn share(&self) -> f64 {
        self.passed as f64 / self.checks.max(1) as f64
    }

    fn rank(&self) -> (usize, f32) {
        (self.passed, self.p_pass_sum)
    }

    fn user_message(&self) -> String {
        match &self.context {
            Some(c) => format!("{}\n\nContext:\n{c}", self.input),
            None => self.input.clone(),
        }
    }
}

/// Every scored output of the run: a judge run's fully judged items in item order, or every
/// distinct candidate of an optimise run, by item.
pub fn scored_outputs(store: &Store, run: RunId) -> Result<Vec<ScoredOutput>> {
    let this = store.run(run)?;
    match this.kind {
        RunKind::Judge => judged_outputs(store, &this),
        RunKind::Optimise => candidate_outputs(store, &this),
        kind => Err(PipelineError::Invalid(format!("run {run} is a {kind} run: training data comes from judge or optimise runs"))),
    }
}

fn candidate_outputs(store: &Store, run: &Run) -> Result<Vec<ScoredOutput>> {
    let mut out = Vec::new();
    for gold in store.run_gold_outputs(run.id)? {
        let item = store.item(gold.found.item)?.fields;
        let evolution: Evolution = serde_json::from_value(gold.found.lineage.clone()).map_err(|e| PipelineError::Invalid(format!("gold output {}'s lineage: {e}", gold.id)))?;
        let mut seen = std::collections::HashSet::new();
        for c in evolution.candidates.into_iter().filter(|c| seen.insert(c.text.clone())) {
            // The expert's rejection overrides the judge.
            let rejected = gold.status == GoldStatus::Rejected && c.text == gold.found.output;
            let (passed, p_pass_sum) = if rejected { (0, 0.0) } else { (c.passes, c.score()) };
            out.push(ScoredOutput { item: format!("{}#{}", item.key, c.id), input: item.input.clone(), context: item.context.clone(), output: c.text, passed, checks: c.p_pass.len(), p_pass_sum });
        }
    }
    Ok(out)
}

fn judged_outputs(store: &Store, this: &Run) -> Result<Vec<ScoredOutput>> {
    let run = this.id;
    let dataset = this.dataset.ok_or_else(|| PipelineError::Invalid(format!("run {run} has no dataset")))?;
    let checks = this.set_version.map(|v| store.set_version_by_id(v)).transpose()?.map_or(0, |v| v.set.checks.len());
    let mut per_item: BTreeMap<String, (usize, usize, f32)> = BTreeMap::new();
    for j in store.judgments(run)? {
        let e = per_item.entry(j.item_id).or_default();
        e.0 += usize::from(j.verdict == Verdict::Pass);
        e.1 += 1;
        e.2 += j.p_pass;
    }
    Ok(store
        .items(dataset)?
        .into_iter()
        .filter_map(|i| {
            let (passed, judged, p_pass_sum) = *per_item.get(&i.fields.key)?;
            let output = i.fields.output.filter(|_| judged == checks)?;
            Some(ScoredOutput { item: i.fields.key, input: i.fields.input, context: i.fields.context, output, passed, checks, p_pass_sum })
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SftRecord {
    pub messages: Vec<ChatMessage>,
    /// Where it came from and how it scored (trainers ignore extra fields).
    pub item: String,
    pub score: f64,
}

/// Outputs whose share of passed checks is at least `min_share`, as chat conversations with the
/// task's `system` prompt.
pub fn sft_records(outputs: &[ScoredOutput], system: &str, min_share: f64) -> Vec<SftRecord> {
    outputs
        .iter()
        .filter(|o| o.share() >= min_share)
        .map(|o| SftRecord {
            messages: vec![
                ChatMessage { role: "system", content: system.to_string() },
                ChatMessage { role: "user", content: o.user_message() },
                ChatMessage { role: "assistant", content: o.output.clone() },
            ],
            item: o.item.clone(),
            score: o.share(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpoPair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub chosen_item: String,
    pub rejected_item: String,
    /// Difference of the shares of passed checks.
    pub margin: f64,
}

/// Per input (same text and context) with two or more outputs: the best against the worst,
/// when their shares of passed checks differ by at least `min_margin` (> 0).
pub fn dpo_pairs(outputs: &[ScoredOutput], min_margin: f64) -> Vec<DpoPair> {
    let mut by_input: BTreeMap<(String, Option<String>), Vec<&ScoredOutput>> = BTreeMap::new();
    for o in outputs {
        by_input.entry((o.input.clone(), o.context.clone())).or_default().push(o);
    }
    by_input
        .into_values()
        .filter_map(|group| {
            let best = *group.iter().max_by(|a, b| a.rank().partial_cmp(&b.rank()).unwrap_or(std::cmp::Ordering::Equal))?;
            let worst = *group.iter().min_by(|a, b| a.rank().partial_cmp(&b.rank()).unwrap_or(std::cmp::Ordering::Equal))?;
            let margin = best.share() - worst.share();
            (margin >= min_margin.max(f64::MIN_POSITIVE)).then(|| DpoPair {
                prompt: best.user_message(),
                chosen: best.output.clone(),
                rejected: worst.output.clone(),
                chosen_item: best.item.clone(),
                rejected_item: worst.item.clone(),
                margin,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(item: &str, input: &str, passed: usize, p: f32) -> ScoredOutput {
        ScoredOutput { item: item.into(), input: input.into(), context: None, output: format!("output {item}"), passed, checks: 4, p_pass_sum: p }
    }

    #[test]
    fn sft_keeps_outputs_at_the_threshold_and_dpo_pairs_best_with_worst() {
        let outputs = vec![scored("a1", "A", 4, 3.9), scored("a2", "A", 1, 1.2), scored("a3", "A", 3, 2.0), scored("b1", "B", 2, 2.0), scored("b2", "B", 2, 1.0), scored("c1", "C", 4, 3.0)];
        let sft = sft_records(&outputs, "Be helpful.", 1.0);
        assert_eq!(sft.iter().map(|r| r.item.as_str()).collect::<Vec<_>>(), vec!["a1", "c1"]);
        assert_eq!(sft[0].messages.iter().map(|m| m.role).collect::<Vec<_>>(), vec!["system", "user", "assistant"]);
        let pairs = dpo_pairs(&outputs, 0.25);
        // A: a1 (4/4) over a2 (1/4); B ties on passes (no margin); C has one output.
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].chosen_item.as_str(), pairs[0].rejected_item.as_str(), pairs[0].margin), ("a1", "a2", 0.75));
    }
}
