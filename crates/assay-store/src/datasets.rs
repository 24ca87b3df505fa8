//! Datasets: named sets of items (input, optional output and context, reference and metadata
//! JSON) imported whole into a project.

use crate::columns::optional_json_column;
use crate::error::{is_unique_violation, OptionalRow};
use crate::{DatasetId, ItemId, Project, ProjectId, Result, Store, StoreError};
use assay_core::JudgeItem;
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

/// An item as a data file gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// The item's id in the file; unique within the dataset.
    pub key: String,
    pub input: String,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    /// What a correct output must contain or be, when known.
    #[serde(default)]
    pub reference: Option<serde_json::Value>,
    /// Anything else the file held about the item.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    pub dataset: DatasetId,
    #[serde(flatten)]
    pub fields: NewItem,
}

impl Item {
    /// The item as the judge sees it; `None` when it has no output to judge.
    pub fn to_judge_item(&self) -> Option<JudgeItem> {
        let f = &self.fields;
        Some(JudgeItem { id: f.key.clone(), input: f.input.clone(), output: f.output.clone()?, context: f.context.clone() })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: DatasetId,
    pub project: ProjectId,
    pub name: String,
    /// Where the items came from (a file path), for the record.
    pub source: String,
    pub item_count: usize,
    pub created_at: String,
}

const DATASET_COLUMNS: &str = "d.id, d.project_id, d.name, d.source, (SELECT count(*) FROM items WHERE dataset_id = d.id), d.created_at";

fn dataset_from_row(r: &Row) -> rusqlite::Result<Dataset> {
    Ok(Dataset { id: r.get(0)?, project: r.get(1)?, name: r.get(2)?, source: r.get(3)?, item_count: r.get(4)?, created_at: r.get(5)? })
}

const ITEM_COLUMNS: &str = "id, dataset_id, key, input, output, context, reference, metadata";

pub(crate) fn item_from_row(r: &Row) -> rusqlite::Result<Item> {
    Ok(Item {
        id: r.get(0)?,
        dataset: r.get(1)?,
        fields: NewItem { key: r.get(2)?, input: r.get(3)?, output: r.get(4)?, context: r.get(5)?, reference: optional_json_column(r, 6)?, metadata: optional_json_column(r, 7)? },
    })
}

impl Store {
    /// Imports `items` as a new dataset of `project`, all or nothing: an empty list, a blank
    /// key or input, a repeated key or a taken dataset name leaves the store unchanged.
    pub fn import_dataset(&mut self, project: ProjectId, name: &str, source: &str, items: &[NewItem]) -> Result<Dataset> {
        crate::projects::check_name("dataset", name)?;
        if items.is_empty() {
            return Err(StoreError::Invalid(format!("dataset '{name}' has no items")));
        }
        self.project(project)?;
        let tx = self.conn.transaction()?;
        tx.execute("INSERT INTO datasets (project_id, name, source) VALUES (?1, ?2, ?3)", params![project, name, source]).map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the project already has a dataset '{name}'"))
            } else {
                e.into()
            }
        })?;
        let dataset = DatasetId(tx.last_insert_rowid());
        {
            let mut insert = tx.prepare("INSERT INTO items (dataset_id, key, input, output, context, reference, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for (i, item) in items.iter().enumerate() {
                if item.key.trim().is_empty() || item.input.trim().is_empty() {
                    return Err(StoreError::Invalid(format!("item {} (key {:?}) has a blank key or input", i + 1, item.key)));
                }
                let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
                insert.execute(params![dataset, item.key, item.input, item.output, item.context, json(&item.reference), json(&item.metadata)]).map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!("item {}: duplicate item id '{}'", i + 1, item.key))
                    } else {
                        e.into()
                    }
                })?;
            }
        }
        tx.commit()?;
        self.dataset(dataset)
    }

    pub fn dataset(&self, id: DatasetId) -> Result<Dataset> {
        self.conn.query_row(&format!("SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.id = ?1"), [id], dataset_from_row).or_not_found(|| format!("dataset {id}"))
    }

    pub fn dataset_by_name(&self, project: ProjectId, name: &str) -> Result<Dataset> {
        self.conn
            .query_row(&format!("SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.project_id = ?1 AND d.name = ?2"), params![project, name], dataset_from_row)
            .or_not_found(|| format!("dataset '{name}'"))
    }

    pub fn datasets(&self, project: ProjectId) -> Result<Vec<Dataset>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.project_id = ?1 ORDER BY d.id"))?;
        let rows = stmt.query_map([project], dataset_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The project's dataset called `name`, or with none its most recent one (the last
    /// imported): the default of every command and route that works on a dataset.
    pub fn dataset_or_latest(&self, project: &Project, name: Option<&str>) -> Result<Dataset> {
        match name {
            Some(name) => self.dataset_by_name(project.id, name).map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::not_found(format!("dataset '{name}' of project '{}'", project.name)),
                other => other,
            }),
            None => self.datasets(project.id)?.into_iter().max_by_key(|d| d.id.0).ok_or_else(|| StoreError::NoneYet(format!("project '{}' has no dataset yet", project.name))),
        }
    }

    /// The dataset's items in file order.
    pub fn items(&self, dataset: DatasetId) -> Result<Vec<Item>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([dataset], item_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// One page of the dataset's items in file order: those whose key, input or output contain
    /// `search` (case-insensitive for ASCII) when given, from `offset`, at most `limit`; and how
    /// many match in all. The database pages, so a large dataset is never read whole.
    pub fn items_page(&self, dataset: DatasetId, search: Option<&str>, offset: usize, limit: usize) -> Result<(Vec<Item>, usize)> {
        let pattern = search.filter(|s| !s.is_empty()).map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        const MATCHES: &str = "dataset_id = ?1 AND (?2 IS NULL OR key LIKE ?2 ESCAPE '\\' OR input LIKE ?2 ESCAPE '\\' OR output LIKE ?2 ESCAPE '\\')";
        let total: usize = self.conn.query_row(&format!("SELECT count(*) FROM items WHERE {MATCHES}"), params![dataset, pattern], |r| r.get(0))?;
        let mut stmt = self.conn.prepare(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE {MATCHES} ORDER BY id LIMIT ?3 OFFSET ?4"))?;
        let rows = stmt.query_map(params![dataset, pattern, limit as i64, offset as i64], item_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok((rows, total))
    }

    /// The item of the dataset with this key.
    pub fn item_by_key(&self, dataset: DatasetId, key: &str) -> Result<Item> {
        self.conn.query_row(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ?1 AND key = ?2"), params![dataset, key], item_from_row).or_not_found(|| format!("item '{key}'"))
    }

    pub fn item(&self, id: ItemId) -> Result<Item> {
        self.conn.query_row(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = ?1"), [id], item_from_row).or_not_found(|| format!("item {id}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::*;
    use crate::{NewItem, StoreError};
    use serde_json::json;

    #[test]
    fn items_are_paged_and_searched_in_the_database() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let items: Vec<NewItem> = (0..25).map(|i| item(&format!("k{i:02}"), Some(if i % 5 == 0 { "has 50%_off" } else { "plain" }))).collect();
        let d = store.import_dataset(p.id, "d", "", &items).unwrap();
        let (page, total) = store.items_page(d.id, None, 10, 10).unwrap();
        assert_eq!((total, page.len(), page[0].fields.key.as_str()), (25, 10, "k10"));
        let (last, _) = store.items_page(d.id, None, 20, 10).unwrap();
        assert_eq!(last.len(), 5);
        // LIKE's wildcards in the search are literal.
        let (found, total) = store.items_page(d.id, Some("50%_O"), 0, 10).unwrap();
        assert_eq!((total, found.len()), (5, 5));
        assert_eq!(store.items_page(d.id, Some("%"), 0, 10).unwrap().1, 5);
        assert_eq!(store.items_page(d.id, Some("K2"), 0, 10).unwrap().1, 5);
        assert_eq!(store.item_by_key(d.id, "k07").unwrap().fields.key, "k07");
        assert!(matches!(store.item_by_key(d.id, "nope"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn items_round_trip_in_order() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let mut rich = item("b", Some("out"));
        rich.context = Some("ctx".into());
        rich.reference = Some(json!({"answer": 4}));
        rich.metadata = Some(json!({"source": "file"}));
        let d = store.import_dataset(p.id, "main", "items.jsonl", &[item("a", None), rich.clone()]).unwrap();
        assert_eq!((d.item_count, d.name.as_str()), (2, "main"));
        let items = store.items(d.id).unwrap();
        assert_eq!(items.iter().map(|i| i.fields.clone()).collect::<Vec<_>>(), vec![item("a", None), rich]);
        assert_eq!(items[0].to_judge_item(), None);
        assert_eq!(items[1].to_judge_item().unwrap().context.as_deref(), Some("ctx"));
        assert_eq!(store.dataset_by_name(p.id, "main").unwrap(), d);
    }

    #[test]
    fn a_failure_mid_import_leaves_nothing() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let items = [item("a", None), item("b", None), item("a", None)];
        let err = store.import_dataset(p.id, "main", "", &items).unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("item 3") && m.contains("'a'")), "{err}");
        let blank = [item("a", None), NewItem { key: "b".into(), input: " ".into(), ..Default::default() }];
        assert!(matches!(store.import_dataset(p.id, "main", "", &blank), Err(StoreError::Invalid(_))));
        assert!(store.datasets(p.id).unwrap().is_empty());
        let n: i64 = store.conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        // The name is free again, and taking it twice is a conflict.
        store.import_dataset(p.id, "main", "", &items[..2]).unwrap();
        assert!(matches!(store.import_dataset(p.id, "main", "", &items[..2]), Err(StoreError::Conflict(_))));
        assert!(matches!(store.import_dataset(p.id, "empty", "", &[]), Err(StoreError::Invalid(_))));
    }
}
