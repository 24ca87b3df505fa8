//! Gold outputs: the fittest output an optimise run found for one item under one
//! evaluator-set version, with the lineage of every candidate it evaluated. One per (run,
//! item), so an interrupted optimise run resumes with the items that have none. The expert
//! may reject a gold output with a note; the rejection and the question it raises are written
//! together.

use crate::columns::{json_column, optional_json_column};
use crate::error::{foreign_key_error, OptionalRow};
use crate::expert::insert_question;
use crate::text_enum::text_enum;
use crate::{GoldOutputId, ItemId, NewQuestion, QuestionId, Result, RunId, RunKind, SetVersionId, Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoldStatus {
    Gold,
    Rejected,
}
text_enum!(GoldStatus { Gold => "gold", Rejected => "rejected" });

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewGoldOutput {
    pub item: ItemId,
    pub output: String,
    /// P(PASS) per check, in the version's check order.
    pub p_pass: Vec<f32>,
    pub passes: usize,
    /// Candidate evaluations the search spent on the item.
    pub evaluations: usize,
    /// Every candidate evaluated, with origin, parents and scores.
    pub lineage: serde_json::Value,
    /// The best-of-N baseline on the same budget, when it was compared.
    pub best_of_n: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldOutput {
    pub id: GoldOutputId,
    pub run: RunId,
    pub set_version: SetVersionId,
    #[serde(flatten)]
    pub found: NewGoldOutput,
    pub status: GoldStatus,
    /// The expert's note, when rejected.
    pub critique: Option<String>,
    pub created_at: String,
}

const GOLD_COLUMNS: &str = "id, run_id, set_version_id, item_id, output, p_pass, passes, evaluations, lineage, best_of_n, status, critique, created_at";

fn gold_from_row(r: &Row) -> rusqlite::Result<GoldOutput> {
    Ok(GoldOutput {
        id: r.get(0)?,
        run: r.get(1)?,
        set_version: r.get(2)?,
        found: NewGoldOutput {
            item: r.get(3)?,
            output: r.get(4)?,
            p_pass: json_column(r, 5)?,
            passes: r.get(6)?,
            evaluations: r.get(7)?,
            lineage: json_column(r, 8)?,
            best_of_n: optional_json_column(r, 9)?,
        },
        status: r.get(10)?,
        critique: r.get(11)?,
        created_at: r.get(12)?,
    })
}

impl Store {
    /// Stores the gold output of one item of an optimise run (which names the set version and
    /// the dataset). Storing an item's gold output a second time is a no-op returning the first.
    pub fn insert_gold_output(&mut self, run: RunId, gold: &NewGoldOutput) -> Result<GoldOutput> {
        let this = self.run(run)?;
        let (RunKind::Optimise, Some(version), Some(dataset)) = (this.kind, this.set_version, this.dataset) else {
            return Err(StoreError::Invalid(format!("run {run} is a {} run, not an optimise run of a set version on a dataset", this.kind)));
        };
        let checks = self.set_version_by_id(version)?.set.checks.len();
        if gold.p_pass.len() != checks || gold.passes > checks || gold.evaluations == 0 {
            return Err(StoreError::Invalid(format!("a gold output needs one P(PASS) per check ({checks}), at most that many passes and at least one evaluation")));
        }
        if self.item(gold.item)?.dataset != dataset {
            return Err(StoreError::Invalid(format!("item {} is not in the run's dataset", gold.item)));
        }
        let json = |v: &serde_json::Value| v.to_string();
        self.conn
            .execute(
                "INSERT INTO gold_outputs (run_id, set_version_id, item_id, output, p_pass, passes, evaluations, lineage, best_of_n)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (run_id, item_id) DO NOTHING",
                params![
                    run,
                    version,
                    gold.item,
                    gold.output,
                    serde_json::to_string(&gold.p_pass).expect("numbers serialise"),
                    gold.passes,
                    gold.evaluations,
                    json(&gold.lineage),
                    gold.best_of_n.as_ref().map(json)
                ],
            )
            .map_err(|e| foreign_key_error(e, || format!("item {}", gold.item)))?;
        self.conn.query_row(&format!("SELECT {GOLD_COLUMNS} FROM gold_outputs WHERE run_id = ?1 AND item_id = ?2"), params![run, gold.item], gold_from_row).map_err(Into::into)
    }

    pub fn gold_output(&self, id: GoldOutputId) -> Result<GoldOutput> {
        self.conn.query_row(&format!("SELECT {GOLD_COLUMNS} FROM gold_outputs WHERE id = ?1"), [id], gold_from_row).or_not_found(|| format!("gold output {id}"))
    }

    /// The gold outputs an optimise run stored, in item order.
    pub fn run_gold_outputs(&self, run: RunId) -> Result<Vec<GoldOutput>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {GOLD_COLUMNS} FROM gold_outputs WHERE run_id = ?1 ORDER BY item_id"))?;
        let rows = stmt.query_map([run], gold_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The newest gold output of each item under a set version, in item order.
    pub fn gold_outputs(&self, version: SetVersionId) -> Result<Vec<GoldOutput>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {GOLD_COLUMNS} FROM gold_outputs WHERE id IN (SELECT max(id) FROM gold_outputs WHERE set_version_id = ?1 GROUP BY item_id) ORDER BY item_id"))?;
        let rows = stmt.query_map([version], gold_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The outputs the expert rejected for `item` under `version`.
    pub fn rejected_outputs(&self, version: SetVersionId, item: ItemId) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT output FROM gold_outputs WHERE set_version_id = ?1 AND item_id = ?2 AND status = 'rejected' ORDER BY id")?;
        let rows = stmt.query_map(params![version, item], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Rejects a gold output with the expert's note and, when given, raises `question` (about
    /// it) in the same transaction. A gold output is rejected once.
    pub fn reject_gold_output(&mut self, id: GoldOutputId, note: &str, question: Option<&NewQuestion>) -> Result<(GoldOutput, Option<QuestionId>)> {
        if note.trim().is_empty() {
            return Err(StoreError::Invalid("a critique needs a note saying what is wrong".into()));
        }
        // IMMEDIATE: two critiques at once queue for the write lock, and the second finds the
        // output rejected (a conflict) instead of failing to upgrade a read.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<(GoldStatus, crate::ProjectId)> =
            tx.query_row("SELECT g.status, r.project_id FROM gold_outputs g JOIN runs r ON r.id = g.run_id WHERE g.id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let project = match found {
            None => return Err(StoreError::not_found(format!("gold output {id}"))),
            Some((GoldStatus::Rejected, _)) => return Err(StoreError::Conflict(format!("gold output {id} is already rejected"))),
            Some((GoldStatus::Gold, project)) => project,
        };
        tx.execute("UPDATE gold_outputs SET status = 'rejected', critique = ?2 WHERE id = ?1", params![id, note.trim()])?;
        let question = question.map(|q| insert_question(&tx, project, q)).transpose()?;
        tx.commit()?;
        Ok((self.gold_output(id)?, question))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{NewRun, QuestionStatus};

    fn gold(item: ItemId, output: &str, passes: usize) -> NewGoldOutput {
        NewGoldOutput { item, output: output.into(), p_pass: vec![0.9, 0.2], passes, evaluations: 4, lineage: serde_json::json!([{"id": 0}]), best_of_n: None }
    }

    #[test]
    fn gold_outputs_are_kept_per_run_and_item_and_rejected_once() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", None), item("b", None)]).unwrap();
        let other = store.import_dataset(p.id, "other", "", &[item("c", None)]).unwrap();
        let items = store.items(d.id).unwrap();
        let v = store.create_set_version(p.id, &assay_core::EvaluatorSet { version: None, checks: vec![check("x", "X?"), check("y", "Y?")] }, "first").unwrap();
        let optimise = |store: &mut Store| store.create_run(p.id, &NewRun { kind: RunKind::Optimise, set_version: Some(v.id), dataset: Some(d.id), params: serde_json::json!({}) }).unwrap();
        let (first, second) = (optimise(&mut store), optimise(&mut store));
        let stored = store.insert_gold_output(first.id, &gold(items[0].id, "one", 1)).unwrap();
        assert_eq!(store.insert_gold_output(first.id, &gold(items[0].id, "again", 2)).unwrap(), stored, "a second insert is a no-op");
        store.insert_gold_output(second.id, &gold(items[0].id, "newer", 2)).unwrap();
        store.insert_gold_output(second.id, &gold(items[1].id, "b's", 0)).unwrap();
        let outputs: Vec<String> = store.gold_outputs(v.id).unwrap().into_iter().map(|g| g.found.output).collect();
        assert_eq!(outputs, vec!["newer", "b's"], "the newest per item");
        assert_eq!(store.run_gold_outputs(first.id).unwrap().len(), 1);
        // Refused: an item of another dataset, a wrong number of scores, a judge run.
        let foreign = store.items(other.id).unwrap()[0].id;
        assert!(matches!(store.insert_gold_output(first.id, &gold(foreign, "x", 0)), Err(StoreError::Invalid(_))));
        assert!(matches!(store.insert_gold_output(first.id, &NewGoldOutput { p_pass: vec![0.5], ..gold(items[1].id, "x", 0) }), Err(StoreError::Invalid(_))));

        let question = NewQuestion { item: Some(items[0].id), why: "rejected although it passes".into(), proposed_check: Some(check("new", "New?")), ..Default::default() };
        assert!(matches!(store.reject_gold_output(stored.id, "  ", Some(&question)), Err(StoreError::Invalid(_))));
        let (rejected, asked) = store.reject_gold_output(stored.id, "too vague", Some(&question)).unwrap();
        assert_eq!((rejected.status, rejected.critique.as_deref()), (GoldStatus::Rejected, Some("too vague")));
        let open = store.questions(p.id, Some(QuestionStatus::Open)).unwrap();
        assert_eq!((open.len(), Some(open[0].id), open[0].asked.proposed_check.as_ref().map(|c| c.id.as_str())), (1, asked, Some("new")));
        assert!(matches!(store.reject_gold_output(stored.id, "again", Some(&question)), Err(StoreError::Conflict(_))));
        assert_eq!(store.questions(p.id, None).unwrap().len(), 1, "the refused rejection raised nothing");
        assert!(matches!(store.reject_gold_output(GoldOutputId(99), "x", None), Err(StoreError::NotFound { .. })));
        assert_eq!(store.rejected_outputs(v.id, items[0].id).unwrap(), vec!["one"]);
        assert!(store.rejected_outputs(v.id, items[1].id).unwrap().is_empty());
    }
}
