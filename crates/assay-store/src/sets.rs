//! Evaluator-set versions: immutable, numbered per project (1, 2, ...), each with its parent,
//! the reason it was made, and the content hash of its checks (`EvaluatorSet::content_hash`),
//! and the diff between any two. The schema's triggers refuse any update or delete.

use crate::columns::json_column;
use crate::error::OptionalRow;
use crate::{Project, ProjectId, Result, SetVersionId, Store, StoreError};
use assay_core::{Check, EvaluatorSet};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetVersion {
    pub id: SetVersionId,
    pub project: ProjectId,
    /// 1 for a project's first set, then one more for each new version.
    pub number: u32,
    /// The version this one was made from.
    pub parent: Option<u32>,
    pub content_hash: String,
    pub reason: String,
    pub created_at: String,
    /// The checks, labelled "v<number>".
    pub set: EvaluatorSet,
}

/// What changed from one version to another, by check id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetDiff {
    pub from: u32,
    pub to: u32,
    pub added: Vec<Check>,
    pub removed: Vec<Check>,
    pub changed: Vec<CheckChange>,
    /// The checks both versions share are in a different order (which changes the hash).
    pub order_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckChange {
    pub id: String,
    /// Names of the fields that differ: name, question, pass_criteria, fail_examples, threshold.
    pub fields: Vec<String>,
    pub before: Check,
    pub after: Check,
}

impl SetDiff {
    pub fn between(from: &SetVersion, to: &SetVersion) -> Self {
        let find = |checks: &[Check], id: &str| checks.iter().find(|c| c.id == id).cloned();
        let (old, new) = (&from.set.checks, &to.set.checks);
        let added = new.iter().filter(|c| find(old, &c.id).is_none()).cloned().collect();
        let removed = old.iter().filter(|c| find(new, &c.id).is_none()).cloned().collect();
        let changed = new
            .iter()
            .filter_map(|after| {
                let before = find(old, &after.id)?;
                let fields: Vec<String> = [
                    ("name", before.name != after.name),
                    ("question", before.question != after.question),
                    ("pass_criteria", before.pass_criteria != after.pass_criteria),
                    ("fail_examples", before.fail_examples != after.fail_examples),
                    ("threshold", before.threshold != after.threshold),
                ]
                .into_iter()
                .filter(|(_, differs)| *differs)
                .map(|(field, _)| field.to_string())
                .collect();
                (!fields.is_empty()).then(|| CheckChange { id: after.id.clone(), fields, before, after: after.clone() })
            })
            .collect();
        let shared = |a: &[Check], b: &[Check]| a.iter().filter(|c| find(b, &c.id).is_some()).map(|c| c.id.clone()).collect::<Vec<_>>();
        let order_changed = shared(old, new) != shared(new, old);
        Self { from: from.number, to: to.number, added, removed, changed, order_changed }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && !self.order_changed
    }
}

const VERSION_COLUMNS: &str = "v.id, v.project_id, v.number, (SELECT number FROM set_versions WHERE id = v.parent_id), v.content_hash, v.reason, v.created_at";

fn check_from_row(r: &Row) -> rusqlite::Result<Check> {
    Ok(Check { id: r.get(0)?, name: r.get(1)?, question: r.get(2)?, pass_criteria: r.get(3)?, fail_examples: json_column(r, 4)?, threshold: r.get::<_, Option<f64>>(5)?.map(|t| t as f32) })
}

impl Store {
    /// Stores `set` as the project's next version, with the latest as parent. Refused when the
    /// checks are invalid or identical to the latest version's (nothing would change).
    pub fn create_set_version(&mut self, project: ProjectId, set: &EvaluatorSet, reason: &str) -> Result<SetVersion> {
        let set = EvaluatorSet::new(None, set.checks.clone()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("a new evaluator-set version needs a reason".into()));
        }
        self.project(project)?;
        let hash = set.content_hash();
        // IMMEDIATE: the number is read and taken under one write lock.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest: Option<(SetVersionId, u32, String)> =
            tx.query_row("SELECT id, number, content_hash FROM set_versions WHERE project_id = ?1 ORDER BY number DESC LIMIT 1", [project], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        if let Some((_, number, latest_hash)) = &latest {
            if *latest_hash == hash {
                return Err(StoreError::Conflict(format!("the checks are identical to version {number}; no new version made")));
            }
        }
        let number = latest.as_ref().map_or(1, |l| l.1 + 1);
        tx.execute("INSERT INTO set_versions (project_id, number, parent_id, content_hash, reason) VALUES (?1, ?2, ?3, ?4, ?5)", params![project, number, latest.map(|l| l.0), hash, reason])?;
        let id = SetVersionId(tx.last_insert_rowid());
        {
            let mut insert = tx.prepare(
                "INSERT INTO checks (set_version_id, position, key, name, question, pass_criteria, fail_examples, threshold)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (position, c) in set.checks.iter().enumerate() {
                let examples = serde_json::to_string(&c.fail_examples).expect("strings serialise");
                insert.execute(params![id, position, c.id, c.name, c.question, c.pass_criteria, examples, c.threshold.map(f64::from)])?;
            }
        }
        tx.commit()?;
        self.set_version_by_id(id)
    }

    pub fn set_version_by_id(&self, id: SetVersionId) -> Result<SetVersion> {
        let mut v = self
            .conn
            .query_row(&format!("SELECT {VERSION_COLUMNS} FROM set_versions v WHERE v.id = ?1"), [id], |r| {
                Ok(SetVersion {
                    id: r.get(0)?,
                    project: r.get(1)?,
                    number: r.get(2)?,
                    parent: r.get(3)?,
                    content_hash: r.get(4)?,
                    reason: r.get(5)?,
                    created_at: r.get(6)?,
                    set: EvaluatorSet { version: None, checks: vec![] },
                })
            })
            .or_not_found(|| format!("evaluator-set version id {id}"))?;
        let mut stmt = self.conn.prepare("SELECT key, name, question, pass_criteria, fail_examples, threshold FROM checks WHERE set_version_id = ?1 ORDER BY position")?;
        let checks = stmt.query_map([id], check_from_row)?.collect::<rusqlite::Result<_>>()?;
        v.set = EvaluatorSet { version: Some(format!("v{}", v.number)), checks };
        Ok(v)
    }

    /// Version `number` of the project's evaluator set.
    pub fn set_version(&self, project: ProjectId, number: u32) -> Result<SetVersion> {
        let id: SetVersionId = self
            .conn
            .query_row("SELECT id FROM set_versions WHERE project_id = ?1 AND number = ?2", params![project, number], |r| r.get(0))
            .or_not_found(|| format!("evaluator-set version {number}"))?;
        self.set_version_by_id(id)
    }

    pub fn latest_set_version(&self, project: ProjectId) -> Result<Option<SetVersion>> {
        let id: Option<SetVersionId> = self.conn.query_row("SELECT id FROM set_versions WHERE project_id = ?1 ORDER BY number DESC LIMIT 1", [project], |r| r.get(0)).optional()?;
        id.map(|id| self.set_version_by_id(id)).transpose()
    }

    /// Version `number` of the project's evaluator set, or with none its latest: the default
    /// of every command and route that works on a version.
    pub fn set_version_or_latest(&self, project: &Project, number: Option<u32>) -> Result<SetVersion> {
        match number {
            Some(n) => self.set_version(project.id, n).map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::not_found(format!("evaluator-set version v{n} of project '{}'", project.name)),
                other => other,
            }),
            None => self.latest_set_version(project.id)?.ok_or_else(|| StoreError::NoneYet(format!("project '{}' has no evaluator set yet", project.name))),
        }
    }

    /// All of the project's versions, oldest first.
    pub fn set_versions(&self, project: ProjectId) -> Result<Vec<SetVersion>> {
        let ids: Vec<SetVersionId> = self.conn.prepare("SELECT id FROM set_versions WHERE project_id = ?1 ORDER BY number")?.query_map([project], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.set_version_by_id(id)).collect()
    }

    /// What changed from version `from` to version `to` of the project's set.
    pub fn set_diff(&self, project: ProjectId, from: u32, to: u32) -> Result<SetDiff> {
        Ok(SetDiff::between(&self.set_version(project, from)?, &self.set_version(project, to)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn versions_are_numbered_hashed_and_chained() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let v1_set = EvaluatorSet::new(Some("mine".into()), vec![check("a", "Is it short?"), check("b", "Is it polite?")]).unwrap();
        let v1 = store.create_set_version(p.id, &v1_set, "imported").unwrap();
        assert_eq!((v1.number, v1.parent), (1, None));
        assert_eq!(v1.set.checks, v1_set.checks);
        assert_eq!(v1.content_hash, v1_set.content_hash());
        assert_eq!(v1.set.content_hash(), v1.content_hash, "the stored checks hash to the stored hash");
        let err = store.create_set_version(p.id, &v1_set, "again").unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("version 1")), "{err}");
        let mut b = check("b", "Is it polite and kind?");
        b.threshold = Some(0.7);
        let v2 = store.create_set_version(p.id, &EvaluatorSet::new(None, vec![b, check("c", "Is it true?")]).unwrap(), "rulings").unwrap();
        assert_eq!((v2.number, v2.parent, v2.reason.as_str()), (2, Some(1), "rulings"));
        assert_eq!(store.latest_set_version(p.id).unwrap(), Some(v2.clone()));
        assert_eq!(store.set_versions(p.id).unwrap(), vec![v1, v2]);
        assert!(matches!(store.set_version(p.id, 3), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.create_set_version(p.id, &EvaluatorSet { version: None, checks: vec![] }, "x"), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn stored_versions_cannot_be_changed() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let v1 = store.create_set_version(p.id, &EvaluatorSet::new(None, vec![check("a", "Is it short?")]).unwrap(), "first").unwrap();
        for sql in ["UPDATE set_versions SET reason = 'edited'", "DELETE FROM set_versions", "UPDATE checks SET question = 'Is it long?'", "DELETE FROM checks"] {
            let err = store.conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("immutable"), "{sql}: {err}");
        }
        assert_eq!(store.set_version(p.id, 1).unwrap(), v1);
    }

    #[test]
    fn diff_lists_added_removed_and_changed_fields() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let set = |checks| EvaluatorSet::new(None, checks).unwrap();
        store.create_set_version(p.id, &set(vec![check("a", "A?"), check("b", "B?"), check("c", "C?")]), "first").unwrap();
        let mut b = check("b", "B, really?");
        b.fail_examples = vec!["no".into()];
        store.create_set_version(p.id, &set(vec![check("a", "A?"), b.clone(), check("d", "D?")]), "second").unwrap();
        let diff = store.set_diff(p.id, 1, 2).unwrap();
        assert_eq!(diff.added, vec![check("d", "D?")]);
        assert_eq!(diff.removed, vec![check("c", "C?")]);
        assert_eq!(diff.changed.len(), 1);
        assert_eq!((diff.changed[0].id.as_str(), diff.changed[0].fields.clone()), ("b", vec!["question".to_string(), "fail_examples".to_string()]));
        assert_eq!(diff.changed[0].after, b);
        assert!(!diff.order_changed && !diff.is_empty());
        let back = store.set_diff(p.id, 2, 1).unwrap();
        assert_eq!((back.added.len(), back.removed.len(), back.changed.len()), (1, 1, 1));
        assert!(store.set_diff(p.id, 1, 1).unwrap().is_empty());
        store.create_set_version(p.id, &set(vec![b, check("a", "A?"), check("d", "D?")]), "reordered").unwrap();
        let reordered = store.set_diff(p.id, 2, 3).unwrap();
        assert!(reordered.order_changed && reordered.added.is_empty() && reordered.changed.is_empty());
    }
}
