//! Runs (discovery, judge, refine, optimise) with status and progress, and the judgments a
//! judge run produces. A judgment is unique per (run, item, check): a run killed at any point
//! resumes by asking `pending_pairs` what is missing, and inserting a judgment twice is a no-op.

use crate::columns::{json_column, verdict_column, verdict_text};
use crate::error::OptionalRow;
use crate::text_enum::text_enum;
use crate::{DatasetId, ItemId, ProjectId, Result, RunId, SetVersionId, Store, StoreError};
use assay_core::Judgment;
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Discovery,
    Judge,
    Refine,
    Optimise,
}
text_enum!(RunKind { Discovery => "discovery", Judge => "judge", Refine => "refine", Optimise => "optimise" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
}
text_enum!(RunStatus { Queued => "queued", Running => "running", Done => "done", Failed => "failed" });

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    pub kind: RunKind,
    /// The evaluator-set version judged (required for judge runs).
    pub set_version: Option<SetVersionId>,
    /// The dataset worked on (required for judge runs).
    pub dataset: Option<DatasetId>,
    /// Everything else the run was asked for (judge model, samples, ...); a JSON object.
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub project: ProjectId,
    pub kind: RunKind,
    pub status: RunStatus,
    pub set_version: Option<SetVersionId>,
    pub dataset: Option<DatasetId>,
    pub params: serde_json::Value,
    /// For judge runs: judgments stored, out of items x checks.
    pub progress_done: u64,
    pub progress_total: u64,
    /// Why the run failed.
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An (item, check) of a judge run that has no judgment yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPair {
    pub item: ItemId,
    /// The item's id in its dataset (`Judgment::item_id`).
    pub item_key: String,
    /// The check's id in the set (`Judgment::check_id`).
    pub check: String,
}

const RUN_COLUMNS: &str = "id, project_id, kind, status, set_version_id, dataset_id, params, progress_done, progress_total, error, created_at, updated_at";

fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        project: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        set_version: r.get(4)?,
        dataset: r.get(5)?,
        params: json_column(r, 6)?,
        progress_done: r.get(7)?,
        progress_total: r.get(8)?,
        error: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

const JUDGMENT_SELECT: &str = "SELECT i.key, c.key, j.verdict, j.p_pass, j.logprob_pass, j.logprob_fail, j.off_format_mass, j.rationale, j.samples, j.flip_rate
     FROM judgments j JOIN items i ON i.id = j.item_id JOIN checks c ON c.id = j.check_id";

fn judgment_from_row(r: &rusqlite::Row) -> rusqlite::Result<Judgment> {
    Ok(Judgment {
        item_id: r.get(0)?,
        check_id: r.get(1)?,
        verdict: verdict_column(r, 2)?,
        p_pass: r.get::<_, f64>(3)? as f32,
        logprob_pass: r.get::<_, f64>(4)? as f32,
        logprob_fail: r.get::<_, f64>(5)? as f32,
        off_format_mass: r.get::<_, f64>(6)? as f32,
        rationale: r.get(7)?,
        samples: match r.get::<_, Option<String>>(8)? {
            Some(json) => serde_json::from_str(&json).map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e)))?,
            None => Vec::new(),
        },
        flip_rate: r.get::<_, Option<f64>>(9)?.map(|f| f as f32),
    })
}

impl Store {
    /// Queues a run. A judge run needs a set version and a dataset of the same project whose
    /// items all have outputs; its progress total is items x checks.
    pub fn create_run(&mut self, project: ProjectId, run: &NewRun) -> Result<Run> {
        self.project(project)?;
        if !(run.params.is_object() || run.params.is_null()) {
            return Err(StoreError::Invalid(format!("run params must be a JSON object, not {}", run.params)));
        }
        let mut checks = 0;
        if let Some(v) = run.set_version {
            let version = self.set_version_by_id(v)?;
            if version.project != project {
                return Err(StoreError::Invalid(format!("evaluator-set version id {v} belongs to another project")));
            }
            checks = version.set.checks.len() as u64;
        }
        let mut items = 0;
        if let Some(d) = run.dataset {
            let dataset = self.dataset(d)?;
            if dataset.project != project {
                return Err(StoreError::Invalid(format!("dataset '{}' belongs to another project", dataset.name)));
            }
            items = dataset.item_count as u64;
        }
        if run.kind == RunKind::Judge {
            let (Some(_), Some(dataset)) = (run.set_version, run.dataset) else {
                return Err(StoreError::Invalid("a judge run needs an evaluator-set version and a dataset".into()));
            };
            let without_output: u64 = self.conn.query_row("SELECT count(*) FROM items WHERE dataset_id = ?1 AND output IS NULL", [dataset], |r| r.get(0))?;
            if without_output > 0 {
                return Err(StoreError::Conflict(format!("{without_output} of the dataset's {items} items have no output to judge")));
            }
        }
        let total = if run.kind == RunKind::Judge { items * checks } else { 0 };
        let params = if run.params.is_null() { "{}".to_string() } else { run.params.to_string() };
        self.conn.execute(
            "INSERT INTO runs (project_id, kind, status, set_version_id, dataset_id, params, progress_total) VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
            params![project, run.kind, run.set_version, run.dataset, params, total],
        )?;
        self.run(RunId(self.conn.last_insert_rowid()))
    }

    /// The newest unfinished run (queued, running or failed) of the same kind, set version,
    /// dataset and params as `run`, to resume; else `run` created. Returns it and whether it
    /// is one to resume.
    pub fn resumable_run(&mut self, project: ProjectId, run: &NewRun) -> Result<(Run, bool)> {
        let unfinished =
            self.runs(project)?.into_iter().rev().find(|r| r.kind == run.kind && r.set_version == run.set_version && r.dataset == run.dataset && r.params == run.params && r.status != RunStatus::Done);
        Ok(match unfinished {
            Some(found) => (found, true),
            None => (self.create_run(project, run)?, false),
        })
    }

    pub fn run(&self, id: RunId) -> Result<Run> {
        self.conn.query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), [id], run_from_row).or_not_found(|| format!("run {id}"))
    }

    /// The project's runs, oldest first.
    pub fn runs(&self, project: ProjectId) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE project_id = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([project], run_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Moves a run to `status`; `error` is kept only for failed runs. A done run is final (done
    /// again is a no-op: another process may have finished it), and no run goes back to queued;
    /// a failed or interrupted (still "running") run may run again.
    pub fn set_run_status(&mut self, id: RunId, status: RunStatus, error: Option<&str>) -> Result<Run> {
        let run = self.run(id)?;
        if run.status == RunStatus::Done && status == RunStatus::Done {
            return Ok(run);
        }
        if run.status == RunStatus::Done || status == RunStatus::Queued {
            return Err(StoreError::Conflict(format!("run {id} cannot go from {} to {status}", run.status)));
        }
        let error = if status == RunStatus::Failed { error } else { None };
        self.conn.execute(&format!("UPDATE runs SET status = ?2, error = ?3, updated_at = {NOW} WHERE id = ?1"), params![id, status, error])?;
        self.run(id)
    }

    /// Who holds the run's lease and until when (unix seconds), if anyone ever did.
    pub fn run_lease(&self, id: RunId) -> Result<Option<(String, i64)>> {
        let (owner, until): (Option<String>, Option<i64>) =
            self.conn.query_row("SELECT lease_owner, lease_until FROM runs WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).or_not_found(|| format!("run {id}"))?;
        Ok(owner.map(|o| (o, until.unwrap_or(0))))
    }

    /// Sets the run's lease to `owner` until `until` (unix seconds; `None` releases it), but
    /// only if it is still held by `expected`: a compare-and-swap, so two processes that both
    /// saw it free cannot both take it. Returns whether it was set.
    pub fn swap_run_lease(&mut self, id: RunId, expected: Option<&str>, owner: Option<&str>, until: i64) -> Result<bool> {
        let n = self.conn.execute("UPDATE runs SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1 AND lease_owner IS ?4", params![id, owner, owner.map(|_| until), expected])?;
        Ok(n == 1)
    }

    /// Sets the progress of a run that counts its own work (judge runs count judgments).
    pub fn set_run_progress(&mut self, id: RunId, done: u64, total: u64) -> Result<Run> {
        if done > total {
            return Err(StoreError::Invalid(format!("progress {done} exceeds total {total}")));
        }
        let n = self.conn.execute(&format!("UPDATE runs SET progress_done = ?2, progress_total = ?3, updated_at = {NOW} WHERE id = ?1"), params![id, done, total])?;
        if n == 0 {
            return Err(StoreError::not_found(format!("run {id}")));
        }
        self.run(id)
    }

    fn judge_run(&self, id: RunId) -> Result<(SetVersionId, DatasetId)> {
        let run = self.run(id)?;
        match (run.kind, run.set_version, run.dataset) {
            (RunKind::Judge, Some(v), Some(d)) => Ok((v, d)),
            _ => Err(StoreError::Invalid(format!("run {id} is a {} run, not a judge run", run.kind))),
        }
    }

    /// The judge run's (item, check) pairs that have no judgment yet, by item then check order.
    pub fn pending_pairs(&self, run: RunId) -> Result<Vec<PendingPair>> {
        let (version, dataset) = self.judge_run(run)?;
        let mut stmt = self.conn.prepare(
            "SELECT i.id, i.key, c.key FROM items i CROSS JOIN checks c
             WHERE i.dataset_id = ?2 AND c.set_version_id = ?3
               AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.run_id = ?1 AND j.item_id = i.id AND j.check_id = c.id)
             ORDER BY i.id, c.position",
        )?;
        let rows = stmt.query_map(params![run, dataset, version], |r| Ok(PendingPair { item: r.get(0)?, item_key: r.get(1)?, check: r.get(2)? }))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Stores a judge run's judgments in one transaction, skipping any (item, check) the run
    /// already has, and updates its progress. Returns how many were new. An unknown item or
    /// check, or a probability out of range, refuses the whole batch.
    pub fn insert_judgments(&mut self, run: RunId, judgments: &[Judgment]) -> Result<usize> {
        let (version, dataset) = self.judge_run(run)?;
        let ids = |sql: &str, owner: i64| -> Result<HashMap<String, i64>> {
            let mut stmt = self.conn.prepare(sql)?;
            let map = stmt.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            Ok(map)
        };
        let items = ids("SELECT key, id FROM items WHERE dataset_id = ?1", dataset.0)?;
        let checks = ids("SELECT key, id FROM checks WHERE set_version_id = ?1", version.0)?;
        let mut rows = Vec::with_capacity(judgments.len());
        for j in judgments {
            let item = items.get(&j.item_id).ok_or_else(|| StoreError::Invalid(format!("run {run} has no item '{}'", j.item_id)))?;
            let check = checks.get(&j.check_id).ok_or_else(|| StoreError::Invalid(format!("run {run} has no check '{}'", j.check_id)))?;
            let numbers = [j.p_pass, j.logprob_pass, j.logprob_fail, j.off_format_mass];
            if !(0.0..=1.0).contains(&j.p_pass) || numbers.iter().any(|x| x.is_nan()) {
                return Err(StoreError::Invalid(format!("judgment of '{}' on '{}': p_pass {} outside [0, 1] or a NaN", j.check_id, j.item_id, j.p_pass)));
            }
            rows.push((*item, *check, j));
        }
        let tx = self.conn.transaction()?;
        let mut inserted = 0;
        {
            let mut insert = tx.prepare(
                "INSERT INTO judgments (run_id, item_id, check_id, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass, rationale, samples, flip_rate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (run_id, item_id, check_id) DO NOTHING",
            )?;
            for (item, check, j) in rows {
                let samples = (!j.samples.is_empty()).then(|| serde_json::to_string(&j.samples)).transpose().map_err(|e| StoreError::Invalid(e.to_string()))?;
                inserted += insert.execute(params![run, item, check, verdict_text(j.verdict), j.p_pass, j.logprob_pass, j.logprob_fail, j.off_format_mass, j.rationale, samples, j.flip_rate])?;
            }
        }
        tx.execute(&format!("UPDATE runs SET progress_done = (SELECT count(*) FROM judgments WHERE run_id = ?1), updated_at = {NOW} WHERE id = ?1"), [run])?;
        tx.commit()?;
        Ok(inserted)
    }

    /// The run's judgments by item then check order.
    pub fn judgments(&self, run: RunId) -> Result<Vec<Judgment>> {
        self.run(run)?;
        let mut stmt = self.conn.prepare(&format!("{JUDGMENT_SELECT} WHERE j.run_id = ?1 ORDER BY i.id, c.position"))?;
        let rows = stmt.query_map([run], judgment_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The run's judgments of one item, in check order (the index on (run, item) finds them).
    pub fn item_judgments(&self, run: RunId, item: ItemId) -> Result<Vec<Judgment>> {
        self.run(run)?;
        let mut stmt = self.conn.prepare(&format!("{JUDGMENT_SELECT} WHERE j.run_id = ?1 AND j.item_id = ?2 ORDER BY c.position"))?;
        let rows = stmt.query_map(params![run, item], judgment_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::Store;
    use assay_core::{EvaluatorSet, Verdict};
    use serde_json::json;

    fn judgment(item: &str, check: &str, p_pass: f32) -> Judgment {
        Judgment {
            item_id: item.into(),
            check_id: check.into(),
            verdict: if p_pass >= 0.5 { Verdict::Pass } else { Verdict::Fail },
            p_pass,
            logprob_pass: p_pass.ln(),
            logprob_fail: (1.0 - p_pass).ln(),
            off_format_mass: 0.01,
            rationale: None,
            samples: Vec::new(),
            flip_rate: None,
        }
    }

    /// A project with 3 items and 4 checks, and a queued judge run over them.
    fn judge_run(store: &mut Store) -> RunId {
        let p = project(store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", Some("1")), item("b", Some("2")), item("c", Some("3"))]).unwrap();
        let checks = (0..4).map(|i| check(&format!("k{i}"), "Is it right?")).collect();
        let v = store.create_set_version(p.id, &EvaluatorSet::new(None, checks).unwrap(), "first").unwrap();
        store.create_run(p.id, &NewRun { kind: RunKind::Judge, set_version: Some(v.id), dataset: Some(d.id), params: json!({"model": "smollm2"}) }).unwrap().id
    }

    #[test]
    fn an_interrupted_run_resumes_with_exactly_what_is_missing() {
        let (dir, mut store) = temp_store();
        let run = judge_run(&mut store);
        let all = store.pending_pairs(run).unwrap();
        assert_eq!(all.len(), 12);
        assert_eq!((all[0].item_key.as_str(), all[0].check.as_str(), all[11].item_key.as_str(), all[11].check.as_str()), ("a", "k0", "c", "k3"));
        let mut judgments: Vec<Judgment> = all.iter().enumerate().map(|(n, p)| judgment(&p.item_key, &p.check, n as f32 / 12.0)).collect();
        // Rationales and sampled verdicts are kept as judged.
        judgments[1].rationale = Some("short because".into());
        let sample = assay_core::JudgeSample { rationale: "it is".into(), verdict: Verdict::Fail, p_pass: 0.2, logprob_pass: -2.0, logprob_fail: -0.5, off_format_mass: 0.1 };
        judgments[2].samples = vec![sample.clone(), assay_core::JudgeSample { verdict: Verdict::Pass, p_pass: 0.7, ..sample }];
        judgments[2].flip_rate = Some(0.5);
        store.set_run_status(run, RunStatus::Running, None).unwrap();
        assert_eq!(store.insert_judgments(run, &judgments[..6]).unwrap(), 6);
        drop(store); // the process dies here

        let mut store = Store::open(&dir.path().join("assay.db")).unwrap();
        let r = store.run(run).unwrap();
        assert_eq!((r.status, r.progress_done, r.progress_total), (RunStatus::Running, 6, 12));
        assert_eq!(store.pending_pairs(run).unwrap(), all[6..].to_vec());
        // A batch overlapping what is stored adds only the new pairs.
        assert_eq!(store.insert_judgments(run, &judgments[4..]).unwrap(), 6);
        assert_eq!(store.insert_judgments(run, &judgments).unwrap(), 0);
        assert!(store.pending_pairs(run).unwrap().is_empty());
        assert_eq!(store.judgments(run).unwrap(), judgments);
        // One item's judgments, in check order.
        assert_eq!(store.item_judgments(run, all[4].item).unwrap(), judgments[4..8].to_vec());
        assert_eq!(store.run(run).unwrap().progress_done, 12);
        let done = store.set_run_status(run, RunStatus::Done, None).unwrap();
        assert_eq!(done.status, RunStatus::Done);
        assert!(matches!(store.set_run_status(run, RunStatus::Running, None), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn a_bad_judgment_refuses_the_whole_batch() {
        let (_dir, mut store) = temp_store();
        let run = judge_run(&mut store);
        for bad in [judgment("zzz", "k0", 0.5), judgment("a", "k9", 0.5), judgment("a", "k1", 1.5), judgment("a", "k1", f32::NAN)] {
            let err = store.insert_judgments(run, &[judgment("a", "k0", 0.9), bad]).unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        }
        assert_eq!(store.pending_pairs(run).unwrap().len(), 12);
        assert_eq!(store.run(run).unwrap().progress_done, 0);
    }

    #[test]
    fn run_rules_and_status_changes() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "no-outputs", "", &[item("a", None)]).unwrap();
        let v = store.create_set_version(p.id, &EvaluatorSet::new(None, vec![check("k", "Q?")]).unwrap(), "first").unwrap();
        let judge = |set_version, dataset| NewRun { kind: RunKind::Judge, set_version, dataset, params: json!({}) };
        assert!(matches!(store.create_run(p.id, &judge(Some(v.id), None)), Err(StoreError::Invalid(_))));
        let err = store.create_run(p.id, &judge(Some(v.id), Some(d.id))).unwrap_err();
        assert!(err.to_string().contains("no output"), "{err}");
        let other = project(&mut store, "other");
        assert!(matches!(store.create_run(other.id, &judge(Some(v.id), Some(d.id))), Err(StoreError::Invalid(_))));
        let discovery = store.create_run(p.id, &NewRun { kind: RunKind::Discovery, set_version: None, dataset: Some(d.id), params: json!(null) }).unwrap();
        assert!(matches!(store.pending_pairs(discovery.id), Err(StoreError::Invalid(_))));
        let failed = store.set_run_status(discovery.id, RunStatus::Failed, Some("annotator returned nothing")).unwrap();
        assert_eq!((failed.status, failed.error.as_deref()), (RunStatus::Failed, Some("annotator returned nothing")));
        let again = store.set_run_status(discovery.id, RunStatus::Running, Some("ignored")).unwrap();
        assert_eq!((again.status, again.error), (RunStatus::Running, None));
        assert!(matches!(store.set_run_status(discovery.id, RunStatus::Queued, None), Err(StoreError::Conflict(_))));
        assert_eq!(store.set_run_progress(discovery.id, 3, 10).unwrap().progress_done, 3);
        assert!(matches!(store.set_run_progress(discovery.id, 11, 10), Err(StoreError::Invalid(_))));
        assert_eq!(store.runs(p.id).unwrap().len(), 1);
    }

    #[test]
    fn a_resumable_run_is_the_unfinished_one_with_the_same_parameters() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", None)]).unwrap();
        let asked = |seed| NewRun { kind: RunKind::Discovery, set_version: None, dataset: Some(d.id), params: json!({"seed": seed}) };
        let (first, resumed) = store.resumable_run(p.id, &asked(1)).unwrap();
        assert!(!resumed);
        store.set_run_status(first.id, RunStatus::Failed, Some("killed")).unwrap();
        assert_eq!(store.resumable_run(p.id, &asked(1)).unwrap(), (store.run(first.id).unwrap(), true), "a failed run resumes");
        assert!(!store.resumable_run(p.id, &asked(2)).unwrap().1, "other params: a new run");
        store.set_run_status(first.id, RunStatus::Done, None).unwrap();
        let (after_done, resumed) = store.resumable_run(p.id, &asked(1)).unwrap();
        assert!(!resumed && after_done.id != first.id, "a finished run is not resumed");
    }
}
