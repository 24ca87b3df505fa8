//! Expert labels as files and requests: JSON lines of `{"item", "check", "verdict", "note"?}`
//! (a PASS/FAIL label of one check on one item) or `{"item", "score", "note"?}` (a score of
//! the whole output), items named by their key in the dataset. Read all or nothing.

use crate::error::{PipelineError, Result};
use assay_core::Verdict;
use assay_store::{CheckLabel, Item, ScoreLabel};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRecord {
    pub item: String,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub note: String,
    /// Who gave it (a reviewer name).
    #[serde(default)]
    pub rater: String,
}

/// Labels for `items` (a dataset's), refusing an unknown item or a record that is neither a
/// verdict nor a score; `line` names the record (from 1) in errors.
pub fn labels_of(records: &[LabelRecord], items: &[Item]) -> Result<(Vec<CheckLabel>, Vec<ScoreLabel>)> {
    let ids: HashMap<&str, assay_store::ItemId> = items.iter().map(|i| (i.fields.key.as_str(), i.id)).collect();
    let (mut checks, mut scores) = (Vec::new(), Vec::new());
    for (n, r) in records.iter().enumerate() {
        let bad = |why: String| PipelineError::Invalid(format!("label {}: {why}", n + 1));
        let item = *ids.get(r.item.as_str()).ok_or_else(|| assay_store::StoreError::NotFound { what: format!("label {}: item '{}' of the dataset", n + 1, r.item) })?;
        match (&r.check, r.verdict, r.score) {
            (Some(check), Some(verdict), None) if !check.trim().is_empty() => {
                checks.push(CheckLabel { item, check: check.clone(), verdict, note: r.note.clone(), rater: r.rater.clone(), created_at: String::new() })
            }
            (None, None, Some(score)) if score.is_finite() => scores.push(ScoreLabel { item, score, note: r.note.clone() }),
            _ => return Err(bad("give either \"check\" and \"verdict\" (PASS or FAIL), or a finite \"score\"".into())),
        }
    }
    Ok((checks, scores))
}

/// Reads JSON lines of label records; blank lines are skipped, errors name the line.
pub fn parse_label_lines(text: &str) -> Result<Vec<LabelRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| PipelineError::Invalid(format!("line {}: {e}", i + 1)))?);
    }
    if out.is_empty() {
        return Err(PipelineError::Invalid("no labels in the file".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_store::{DatasetId, ItemId, NewItem};

    #[test]
    fn reads_verdicts_and_scores_and_names_bad_lines() {
        let items = vec![Item { id: ItemId(4), dataset: DatasetId(1), fields: NewItem { key: "a".into(), input: "x".into(), ..Default::default() } }];
        let records = parse_label_lines("{\"item\": \"a\", \"check\": \"c1\", \"verdict\": \"FAIL\"}\n\n{\"item\": \"a\", \"score\": 3}\n").unwrap();
        let (checks, scores) = labels_of(&records, &items).unwrap();
        assert_eq!((checks[0].item, checks[0].verdict, scores[0].score), (ItemId(4), Verdict::Fail, 3.0));
        assert!(parse_label_lines("{\"item\": \"a\"}\n{oops").unwrap_err().to_string().contains("line 2"));
        let unknown = parse_label_lines("{\"item\": \"zz\", \"score\": 1}").unwrap();
        assert!(labels_of(&unknown, &items).unwrap_err().to_string().contains("item 'zz' of the dataset not found"));
        let neither = parse_label_lines("{\"item\": \"a\", \"check\": \"c1\"}").unwrap();
        assert!(labels_of(&neither, &items).is_err());
    }
}
