//! The taxonomy discovery builds: a tree of clusters of annotated errors, kept per discovery
//! run so that the checks made from its leaves can be traced back to the errors behind them.

use crate::error::foreign_key_error;
use crate::{ClusterId, ErrorId, ProjectId, Result, RunId, SetVersionId, Store, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// A cluster to save; `parent` is the index of an earlier cluster in the same list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCluster {
    pub parent: Option<usize>,
    pub label: String,
    pub members: Vec<ErrorId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCluster {
    pub id: ClusterId,
    pub run: RunId,
    pub parent: Option<ClusterId>,
    pub label: String,
    pub members: Vec<ErrorId>,
}

/// The error cluster a check was written from, with its errors' descriptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOrigin {
    pub cluster: ClusterId,
    /// The discovery run whose errors were clustered.
    pub run: RunId,
    pub label: String,
    pub errors: Vec<String>,
}

impl Store {
    /// Records which cluster each of a version's checks was written from.
    pub fn record_check_origins(&mut self, version: SetVersionId, origins: &[(String, ClusterId)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare("INSERT OR REPLACE INTO check_origins (set_version_id, check_key, cluster_id) VALUES (?1, ?2, ?3)")?;
            for (check, cluster) in origins {
                insert.execute(params![version, check, cluster]).map_err(|e| foreign_key_error(e, || format!("cluster {cluster} or version {version}")))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Where the check `check` of the project comes from: the cluster its most recent
    /// recorded version at or before `number` wrote it from; `None` for checks no discovery
    /// wrote (prompt constraints, imports, splits).
    pub fn check_origin(&self, project: ProjectId, number: u32, check: &str) -> Result<Option<CheckOrigin>> {
        let found: Option<(ClusterId, RunId, String)> = self
            .conn
            .query_row(
                "SELECT c.id, c.run_id, c.label FROM check_origins o JOIN set_versions v ON v.id = o.set_version_id JOIN error_clusters c ON c.id = o.cluster_id
                 WHERE v.project_id = ?1 AND v.number <= ?2 AND o.check_key = ?3 ORDER BY v.number DESC LIMIT 1",
                params![project, number, check],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((cluster, run, label)) = found else { return Ok(None) };
        let mut stmt = self.conn.prepare("SELECT e.description FROM cluster_members m JOIN annotation_errors e ON e.id = m.error_id WHERE m.cluster_id = ?1 ORDER BY e.id")?;
        let errors = stmt.query_map([cluster], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Some(CheckOrigin { cluster, run, label, errors }))
    }

    /// Saves a whole tree for a discovery run in one transaction. Parents come before their
    /// children; members must be stored errors. Returns the clusters' ids in list order.
    pub fn save_cluster_tree(&mut self, run: RunId, clusters: &[NewCluster]) -> Result<Vec<ClusterId>> {
        self.run(run)?;
        let tx = self.conn.transaction()?;
        let mut ids: Vec<ClusterId> = Vec::with_capacity(clusters.len());
        {
            let mut insert_cluster = tx.prepare("INSERT INTO error_clusters (run_id, parent_id, label) VALUES (?1, ?2, ?3)")?;
            let mut insert_member = tx.prepare("INSERT OR IGNORE INTO cluster_members (cluster_id, error_id) VALUES (?1, ?2)")?;
            for (i, c) in clusters.iter().enumerate() {
                let parent = match c.parent {
                    Some(p) if p >= i => return Err(StoreError::Invalid(format!("cluster {i} names cluster {p} as parent, which does not come before it"))),
                    p => p.map(|p| ids[p]),
                };
                insert_cluster.execute(params![run, parent, c.label])?;
                let id = ClusterId(tx.last_insert_rowid());
                for &e in &c.members {
                    insert_member.execute(params![id, e]).map_err(|err| foreign_key_error(err, || format!("annotated error {e}")))?;
                }
                ids.push(id);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// The run's clusters, parents before children, members in id order.
    pub fn cluster_tree(&self, run: RunId) -> Result<Vec<ErrorCluster>> {
        let mut stmt = self.conn.prepare("SELECT id, parent_id, label FROM error_clusters WHERE run_id = ?1 ORDER BY id")?;
        let mut members = self.conn.prepare("SELECT error_id FROM cluster_members WHERE cluster_id = ?1 ORDER BY error_id")?;
        let rows: Vec<(ClusterId, Option<ClusterId>, String)> = stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(id, parent, label)| {
                let members = members.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                Ok(ErrorCluster { id, run, parent, label, members })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{AnnotatedError, NewGeneration, NewRun, RunKind, Severity};
    use serde_json::json;

    #[test]
    fn a_tree_round_trips_and_a_bad_one_leaves_nothing() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", None)]).unwrap();
        let gen = store.add_generations(&[NewGeneration { item: store.items(d.id).unwrap()[0].id, generator: json!({}), text: "t".into() }]).unwrap()[0];
        let err = |d: &str| AnnotatedError { description: d.into(), span: None, severity: Severity::Minor };
        let a = store.add_annotation(gen, &json!({}), "", Some(&[err("too long"), err("wordy"), err("wrong date")])).unwrap();
        let e: Vec<ErrorId> = a.errors.iter().map(|e| e.id).collect();
        let run = store.create_run(p.id, &NewRun { kind: RunKind::Discovery, set_version: None, dataset: Some(d.id), params: json!({}) }).unwrap().id;
        let tree = [
            NewCluster { parent: None, label: "all".into(), members: e.clone() },
            NewCluster { parent: Some(0), label: "length".into(), members: vec![e[0], e[1]] },
            NewCluster { parent: Some(0), label: "facts".into(), members: vec![e[2]] },
        ];
        let ids = store.save_cluster_tree(run, &tree).unwrap();
        let saved = store.cluster_tree(run).unwrap();
        assert_eq!(
            saved.iter().map(|c| (c.parent, c.label.as_str(), c.members.clone())).collect::<Vec<_>>(),
            vec![(None, "all", e.clone()), (Some(ids[0]), "length", vec![e[0], e[1]]), (Some(ids[0]), "facts", vec![e[2]]),]
        );
        let forward = [NewCluster { parent: Some(1), label: "x".into(), members: vec![] }, NewCluster { parent: None, label: "y".into(), members: vec![] }];
        assert!(matches!(store.save_cluster_tree(run, &forward), Err(StoreError::Invalid(_))));
        let unknown = [NewCluster { parent: None, label: "z".into(), members: vec![e[0], ErrorId(999)] }];
        assert!(matches!(store.save_cluster_tree(run, &unknown), Err(StoreError::NotFound { .. })));
        assert_eq!(store.cluster_tree(run).unwrap(), saved);

        // A check's origin is found from its version and the versions after it.
        let v1 = store.create_set_version(p.id, &assay_core::EvaluatorSet::new(None, vec![check("c1", "Short?")]).unwrap(), "discovery").unwrap();
        store.record_check_origins(v1.id, &[("c1".into(), ids[1])]).unwrap();
        let v2 = store.create_set_version(p.id, &assay_core::EvaluatorSet::new(None, vec![check("c1", "Short enough?")]).unwrap(), "refined").unwrap();
        let origin = store.check_origin(p.id, v2.number, "c1").unwrap().unwrap();
        assert_eq!((origin.cluster, origin.run, origin.label.as_str(), origin.errors), (ids[1], run, "length", vec!["too long".to_string(), "wordy".to_string()]));
        assert_eq!(store.check_origin(p.id, v2.number, "c9").unwrap(), None);
        assert!(store.record_check_origins(v1.id, &[("c2".into(), ClusterId(999))]).is_err());
    }
}
