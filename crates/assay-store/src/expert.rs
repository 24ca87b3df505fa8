//! What the expert contributes: PASS/FAIL labels per (item, check), whole-output scores,
//! questions the system raises about ambiguous cases, and the rulings that answer them.
//! Labels name checks by id (not by version), so they hold across evaluator-set versions.

use crate::columns::{json_column, optional_json_column, verdict_column, verdict_text};
use crate::error::{foreign_key_error, OptionalRow};
use crate::text_enum::text_enum;
use crate::{DatasetId, ItemId, ProjectId, QuestionId, Result, Store, StoreError};
use assay_core::{Check, Verdict};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// The expert's verdict of one check on one item; setting it again replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckLabel {
    pub item: ItemId,
    pub check: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub note: String,
    /// Who gave it (a reviewer name); empty when not said.
    #[serde(default)]
    pub rater: String,
    /// When it was set; empty until stored.
    #[serde(default)]
    pub created_at: String,
}

/// The expert's score of a whole output; setting it again replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreLabel {
    pub item: ItemId,
    pub score: f64,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionStatus {
    Open,
    Answered,
}
text_enum!(QuestionStatus { Open => "open", Answered => "answered" });

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewQuestion {
    /// The item the question is about; none for questions about the checks themselves.
    pub item: Option<ItemId>,
    pub check: Option<String>,
    /// Why the case is ambiguous (judges disagree, samples flip, p_pass near the threshold...).
    pub why: String,
    /// The answers the expert is offered.
    pub options: Vec<String>,
    /// A check the question proposes; a ruling "add ..." adopts it at the next refinement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_check: Option<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ruling {
    pub text: String,
    pub created_at: String,
    /// Who gave it (a reviewer name); empty when not said.
    #[serde(default)]
    pub rater: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: QuestionId,
    pub project: ProjectId,
    #[serde(flatten)]
    pub asked: NewQuestion,
    pub status: QuestionStatus,
    pub ruling: Option<Ruling>,
    pub created_at: String,
}

/// Sets a check label, replacing an earlier one of the same (item, check).
const UPSERT_CHECK_LABEL: &str = "INSERT INTO check_labels (item_id, check_key, verdict, note, rater) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (item_id, check_key) DO UPDATE SET verdict = excluded.verdict, note = excluded.note, rater = excluded.rater, created_at = excluded.created_at";

const QUESTION_COLUMNS: &str = "q.id, q.project_id, q.item_id, q.check_key, q.why, q.options, q.status, q.created_at, r.text, r.created_at, q.proposed_check, r.rater";

fn question_from_row(r: &Row) -> rusqlite::Result<Question> {
    let ruling_text: Option<String> = r.get(8)?;
    Ok(Question {
        id: r.get(0)?,
        project: r.get(1)?,
        asked: NewQuestion {
            item: r.get(2)?,
            check: r.get(3)?,
            why: r.get(4)?,
            options: json_column(r, 5)?,
            proposed_check: optional_json_column(r, 10)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(e)))?,
        },
        status: r.get(6)?,
        created_at: r.get(7)?,
        ruling: ruling_text.map(|text| Ok::<_, rusqlite::Error>(Ruling { text, created_at: r.get(9)?, rater: r.get(11)? })).transpose()?,
    })
}

fn check_label_from_row(r: &Row) -> rusqlite::Result<CheckLabel> {
    Ok(CheckLabel { item: r.get(0)?, check: r.get(1)?, verdict: verdict_column(r, 2)?, note: r.get(3)?, rater: r.get(4)?, created_at: r.get(5)? })
}

/// Inserts one question inside the caller's transaction.
pub(crate) fn insert_question(tx: &rusqlite::Transaction, project: ProjectId, q: &NewQuestion) -> Result<QuestionId> {
    if q.why.trim().is_empty() {
        return Err(StoreError::Invalid("a question must say why the case is ambiguous".into()));
    }
    let options = serde_json::to_string(&q.options).expect("strings serialise");
    let proposed = q.proposed_check.as_ref().map(|c| serde_json::to_string(c).expect("checks serialise"));
    tx.execute("INSERT INTO questions (project_id, item_id, check_key, why, options, proposed_check) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![project, q.item, q.check, q.why, options, proposed])
        .map_err(|e| foreign_key_error(e, || format!("item {:?}", q.item)))?;
    Ok(QuestionId(tx.last_insert_rowid()))
}

impl Store {
    /// Records check labels in one transaction, replacing earlier labels of the same pairs.
    pub fn set_check_labels(&mut self, labels: &[CheckLabel]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare(UPSERT_CHECK_LABEL)?;
            for l in labels {
                upsert.execute(params![l.item, l.check, verdict_text(l.verdict), l.note, l.rater]).map_err(|e| foreign_key_error(e, || format!("item {}", l.item)))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records whole-output scores in one transaction, replacing earlier scores of the items.
    pub fn set_score_labels(&mut self, labels: &[ScoreLabel]) -> Result<()> {
        if let Some(l) = labels.iter().find(|l| !l.score.is_finite()) {
            return Err(StoreError::Invalid(format!("item {}: score {} is not a number", l.item, l.score)));
        }
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare(
                "INSERT INTO score_labels (item_id, score, note) VALUES (?1, ?2, ?3)
                 ON CONFLICT (item_id) DO UPDATE SET score = excluded.score, note = excluded.note, created_at = excluded.created_at",
            )?;
            for l in labels {
                upsert.execute(params![l.item, l.score, l.note]).map_err(|e| foreign_key_error(e, || format!("item {}", l.item)))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The check labels of the dataset's items, by item then check id.
    pub fn check_labels(&self, dataset: DatasetId) -> Result<Vec<CheckLabel>> {
        let mut stmt = self.conn.prepare(
            "SELECT l.item_id, l.check_key, l.verdict, l.note, l.rater, l.created_at FROM check_labels l JOIN items i ON i.id = l.item_id
             WHERE i.dataset_id = ?1 ORDER BY l.item_id, l.check_key",
        )?;
        let rows = stmt.query_map([dataset], check_label_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The labels of one item, by check id.
    pub fn item_check_labels(&self, item: ItemId) -> Result<Vec<CheckLabel>> {
        let mut stmt = self.conn.prepare("SELECT item_id, check_key, verdict, note, rater, created_at FROM check_labels WHERE item_id = ?1 ORDER BY check_key")?;
        let rows = stmt.query_map([item], check_label_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Removes the expert's label of `check` on `item` (an undo); whether there was one.
    pub fn delete_check_label(&mut self, item: ItemId, check: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM check_labels WHERE item_id = ?1 AND check_key = ?2", params![item, check])? > 0)
    }

    pub fn score_labels(&self, dataset: DatasetId) -> Result<Vec<ScoreLabel>> {
        let mut stmt = self.conn.prepare("SELECT l.item_id, l.score, l.note FROM score_labels l JOIN items i ON i.id = l.item_id WHERE i.dataset_id = ?1 ORDER BY l.item_id")?;
        let rows = stmt.query_map([dataset], |r| Ok(ScoreLabel { item: r.get(0)?, score: r.get(1)?, note: r.get(2)? }))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Raises questions for the expert in one transaction; returns their ids in order.
    pub fn add_questions(&mut self, project: ProjectId, questions: &[NewQuestion]) -> Result<Vec<QuestionId>> {
        self.project(project)?;
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(questions.len());
        {
            for q in questions {
                ids.push(insert_question(&tx, project, q)?);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn question(&self, id: QuestionId) -> Result<Question> {
        self.conn
            .query_row(&format!("SELECT {QUESTION_COLUMNS} FROM questions q LEFT JOIN rulings r ON r.question_id = q.id WHERE q.id = ?1"), [id], question_from_row)
            .or_not_found(|| format!("question {id}"))
    }

    /// The project's questions, oldest first; only those with `status` when given.
    pub fn questions(&self, project: ProjectId, status: Option<QuestionStatus>) -> Result<Vec<Question>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {QUESTION_COLUMNS} FROM questions q LEFT JOIN rulings r ON r.question_id = q.id
             WHERE q.project_id = ?1 AND (?2 IS NULL OR q.status = ?2) ORDER BY q.id"
        ))?;
        let rows = stmt.query_map(params![project, status], question_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records the expert's ruling on an open question; a question is answered once.
    pub fn answer_question(&mut self, id: QuestionId, ruling: &str) -> Result<Question> {
        self.answer_question_with_label(id, ruling, None, "")
    }

    /// Takes back the ruling on a question (an undo), which is open again. The label its answer
    /// recorded, if any, stays: labels have their own undo.
    pub fn reopen_question(&mut self, id: QuestionId) -> Result<Question> {
        let tx = self.conn.transaction()?;
        let status: Option<QuestionStatus> = tx.query_row("SELECT status FROM questions WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        match status {
            None => return Err(StoreError::not_found(format!("question {id}"))),
            Some(QuestionStatus::Open) => return Err(StoreError::Conflict(format!("question {id} is not answered"))),
            Some(QuestionStatus::Answered) => {}
        }
        tx.execute("DELETE FROM rulings WHERE question_id = ?1", [id])?;
        tx.execute("UPDATE questions SET status = 'open' WHERE id = ?1", [id])?;
        tx.commit()?;
        self.question(id)
    }

    /// Records the expert's ruling on an open question and, when `label` is given, that
    /// verdict as the expert's label of the question's check on its item (with the ruling as
    /// its note), in one transaction, both recorded as given by `rater`. A label needs a
    /// question about one check on one item.
    pub fn answer_question_with_label(&mut self, id: QuestionId, ruling: &str, label: Option<Verdict>, rater: &str) -> Result<Question> {
        if ruling.trim().is_empty() {
            return Err(StoreError::Invalid("a ruling cannot be blank".into()));
        }
        let tx = self.conn.transaction()?;
        let asked: Option<(QuestionStatus, Option<ItemId>, Option<String>)> =
            tx.query_row("SELECT status, item_id, check_key FROM questions WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        let (item, check) = match asked {
            None => return Err(StoreError::not_found(format!("question {id}"))),
            Some((QuestionStatus::Answered, ..)) => return Err(StoreError::Conflict(format!("question {id} is already answered"))),
            Some((QuestionStatus::Open, item, check)) => (item, check),
        };
        tx.execute("INSERT INTO rulings (question_id, text, rater) VALUES (?1, ?2, ?3)", params![id, ruling, rater])?;
        tx.execute("UPDATE questions SET status = 'answered' WHERE id = ?1", [id])?;
        if let Some(verdict) = label {
            let (Some(item), Some(check)) = (item, check) else {
                return Err(StoreError::Invalid(format!("question {id} is not about one check on one item, so a label cannot apply")));
            };
            tx.execute(UPSERT_CHECK_LABEL, params![item, check, verdict_text(verdict), ruling, rater])?;
        }
        tx.commit()?;
        self.question(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn labels_are_replaced_not_repeated() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", Some("x")), item("b", Some("y"))]).unwrap();
        let items = store.items(d.id).unwrap();
        let label = |i: usize, check: &str, verdict| CheckLabel { item: items[i].id, check: check.into(), verdict, note: String::new(), rater: "ana".into(), created_at: String::new() };
        store.set_check_labels(&[label(0, "k", Verdict::Pass), label(1, "k", Verdict::Fail)]).unwrap();
        store.set_check_labels(&[label(0, "k", Verdict::Fail)]).unwrap();
        let stored = |labels: Vec<CheckLabel>| labels.into_iter().map(|l| (l.created_at.is_empty(), CheckLabel { created_at: String::new(), ..l })).collect::<Vec<_>>();
        assert_eq!(stored(store.check_labels(d.id).unwrap()), vec![(false, label(0, "k", Verdict::Fail)), (false, label(1, "k", Verdict::Fail))]);
        // An undo removes one label; a second undo of the same finds nothing.
        assert!(store.delete_check_label(items[1].id, "k").unwrap());
        assert!(!store.delete_check_label(items[1].id, "k").unwrap());
        assert_eq!(stored(store.item_check_labels(items[0].id).unwrap()), vec![(false, label(0, "k", Verdict::Fail))]);
        store.set_check_labels(&[label(1, "k", Verdict::Fail)]).unwrap();
        assert!(matches!(store.set_check_labels(&[label(0, "j", Verdict::Pass), CheckLabel { item: ItemId(999), ..label(0, "k", Verdict::Pass) }]), Err(StoreError::NotFound { .. })));
        assert_eq!(store.check_labels(d.id).unwrap().len(), 2, "the failed batch added nothing");
        store.set_score_labels(&[ScoreLabel { item: items[1].id, score: 3.0, note: "weak".into() }]).unwrap();
        store.set_score_labels(&[ScoreLabel { item: items[1].id, score: 4.0, note: String::new() }]).unwrap();
        assert_eq!(store.score_labels(d.id).unwrap(), vec![ScoreLabel { item: items[1].id, score: 4.0, note: String::new() }]);
        assert!(matches!(store.set_score_labels(&[ScoreLabel { item: items[1].id, score: f64::NAN, note: String::new() }]), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn questions_are_answered_once() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", Some("x"))]).unwrap();
        let item_id = store.items(d.id).unwrap()[0].id;
        let asked = NewQuestion {
            item: Some(item_id),
            check: Some("no_diagnosis".into()),
            why: "p_pass 0.52 sits at the threshold".into(),
            options: vec!["PASS".into(), "FAIL".into()],
            proposed_check: Some(check("cited", "Does it cite a source?")),
        };
        let about_checks = NewQuestion { item: None, check: None, why: "checks a and b contradict".into(), ..Default::default() };
        let ids = store.add_questions(p.id, &[asked.clone(), about_checks]).unwrap();
        assert_eq!(store.questions(p.id, Some(QuestionStatus::Open)).unwrap().len(), 2);
        let answered = store.answer_question(ids[0], "Listing insulin does not count as inferring diabetes.").unwrap();
        assert_eq!((answered.status, answered.asked, answered.ruling.unwrap().text.as_str()), (QuestionStatus::Answered, asked, "Listing insulin does not count as inferring diabetes."));
        assert!(matches!(store.answer_question(ids[0], "again"), Err(StoreError::Conflict(_))));
        assert!(matches!(store.answer_question(ids[1], " "), Err(StoreError::Invalid(_))));
        assert!(matches!(store.answer_question(QuestionId(99), "x"), Err(StoreError::NotFound { .. })));
        // A label needs a question about one check on one item; refused, nothing is recorded.
        assert!(matches!(store.answer_question_with_label(ids[1], "they do", Some(Verdict::Pass), "ana"), Err(StoreError::Invalid(_))));
        let open = store.questions(p.id, Some(QuestionStatus::Open)).unwrap();
        assert_eq!((open.len(), open[0].id, open[0].ruling.is_none()), (1, ids[1], true));
        assert_eq!(store.questions(p.id, None).unwrap().len(), 2);
        let about_pair = NewQuestion { item: Some(item_id), check: Some("k".into()), why: "p_pass 0.49".into(), ..Default::default() };
        let id = store.add_questions(p.id, &[about_pair]).unwrap()[0];
        let answered = store.answer_question_with_label(id, "it passes", Some(Verdict::Pass), "ana").unwrap();
        assert_eq!(answered.ruling.unwrap().rater, "ana");
        let labels = store.check_labels(d.id).unwrap();
        assert_eq!(labels, vec![CheckLabel { item: item_id, check: "k".into(), verdict: Verdict::Pass, note: "it passes".into(), rater: "ana".into(), created_at: labels[0].created_at.clone() }]);
        // Undone, the question is open again and can be answered anew; twice is a conflict.
        let reopened = store.reopen_question(id).unwrap();
        assert_eq!((reopened.status, reopened.ruling), (QuestionStatus::Open, None));
        assert!(matches!(store.reopen_question(id), Err(StoreError::Conflict(_))));
        assert_eq!(store.answer_question(id, "it fails").unwrap().ruling.unwrap().text, "it fails");
    }
}
