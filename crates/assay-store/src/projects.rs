//! Projects: one task (its generation prompt, the expert's notes, which backend and model plays
//! each role) and everything evaluated for it.

use crate::columns::json_column;
use crate::error::{is_unique_violation, OptionalRow};
use crate::text_enum::text_enum;
use crate::{ProjectId, Result, Store, StoreError};
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

/// Who set a project's configuration: the operator (the CLI on this machine) or a client over
/// HTTP. The pipeline lets only the operator's configurations call other servers or open model
/// files by path, unless the operator allows more (`--allow-backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigOrigin {
    #[default]
    Operator,
    Http,
}
text_enum!(ConfigOrigin { Operator => "operator", Http => "http" });

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub task: String,
    pub generation_prompt: String,
    #[serde(default)]
    pub expert_notes: String,
    /// Per-role backend and model choices, as the pipeline defines them; a JSON object.
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub config_origin: ConfigOrigin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub task: String,
    pub generation_prompt: String,
    pub expert_notes: String,
    pub config: serde_json::Value,
    pub config_origin: ConfigOrigin,
    pub created_at: String,
}

const COLUMNS: &str = "id, name, task, generation_prompt, expert_notes, config, config_origin, created_at";

fn from_row(r: &Row) -> rusqlite::Result<Project> {
    Ok(Project { id: r.get(0)?, name: r.get(1)?, task: r.get(2)?, generation_prompt: r.get(3)?, expert_notes: r.get(4)?, config: json_column(r, 5)?, config_origin: r.get(6)?, created_at: r.get(7)? })
}

/// A config is an object (roles to choices); absent means empty.
fn config_text(config: &serde_json::Value) -> Result<String> {
    match config {
        serde_json::Value::Null => Ok("{}".into()),
        serde_json::Value::Object(_) => Ok(config.to_string()),
        other => Err(StoreError::Invalid(format!("a project config must be a JSON object, not {other}"))),
    }
}

impl Store {
    /// Creates a project; its name must be new and a valid name (`check_name`).
    pub fn create_project(&mut self, p: &NewProject) -> Result<Project> {
        check_name("project", &p.name)?;
        if p.generation_prompt.trim().is_empty() {
            return Err(StoreError::Invalid(format!("project '{}' needs a generation prompt", p.name)));
        }
        let config = config_text(&p.config)?;
        self.conn
            .execute(
                "INSERT INTO projects (name, task, generation_prompt, expert_notes, config, config_origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.name, p.task, p.generation_prompt, p.expert_notes, config, p.config_origin],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict(format!("project '{}' already exists", p.name)) } else { e.into() })?;
        self.project(ProjectId(self.conn.last_insert_rowid()))
    }

    pub fn project(&self, id: ProjectId) -> Result<Project> {
        self.conn.query_row(&format!("SELECT {COLUMNS} FROM projects WHERE id = ?1"), [id], from_row).or_not_found(|| format!("project {id}"))
    }

    pub fn project_by_name(&self, name: &str) -> Result<Project> {
        self.conn.query_row(&format!("SELECT {COLUMNS} FROM projects WHERE name = ?1"), [name], from_row).or_not_found(|| format!("project '{name}'"))
    }

    pub fn projects(&self) -> Result<Vec<Project>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM projects ORDER BY id"))?;
        let rows = stmt.query_map([], from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Replaces the expert's notes and the role config (notes grow as the expert rules).
    /// Replaces the notes and the configuration, recording who set it.
    pub fn update_project_notes_and_config(&mut self, id: ProjectId, expert_notes: &str, config: &serde_json::Value, origin: ConfigOrigin) -> Result<Project> {
        let config = config_text(config)?;
        let n = self.conn.execute("UPDATE projects SET expert_notes = ?2, config = ?3, config_origin = ?4 WHERE id = ?1", params![id, expert_notes, config, origin])?;
        if n == 0 {
            return Err(StoreError::not_found(format!("project {id}")));
        }
        self.project(id)
    }
}

/// Longest project or dataset name.
pub const MAX_NAME_LEN: usize = 64;

/// Project and dataset names: 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a
/// letter or digit. They show in URLs and file names, so nothing else gets in.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(StoreError::Invalid(format!("{what} name {shown:?} is not allowed: use 1 to {MAX_NAME_LEN} ASCII letters, digits, '.', '_' or '-', starting with a letter or digit")))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::*;
    use crate::{ConfigOrigin, NewProject, StoreError};
    use serde_json::json;

    #[test]
    fn names_are_unique_and_validated() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "notes");
        assert_eq!(store.project_by_name("notes").unwrap(), p);
        assert!(matches!(store.create_project(&NewProject { name: "notes".into(), generation_prompt: "x".into(), ..Default::default() }), Err(StoreError::Conflict(_))));
        for bad in [" x", "", "..", ".hidden", "a/b", "../../etc", "nul\u{0}", "é", &"x".repeat(65)] {
            let err = store.create_project(&NewProject { name: bad.into(), generation_prompt: "x".into(), ..Default::default() });
            assert!(matches!(err, Err(StoreError::Invalid(_))), "{bad:?} was accepted");
        }
        store.create_project(&NewProject { name: "K-QA_v2.1".into(), generation_prompt: "x".into(), ..Default::default() }).unwrap();
        assert!(matches!(store.create_project(&NewProject { name: "y".into(), ..Default::default() }), Err(StoreError::Invalid(_))));
        assert!(matches!(store.project_by_name("nope"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn notes_and_config_are_updated_and_config_must_be_an_object() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        assert_eq!(p.config, json!({}));
        let config = json!({"judge": {"backend": "local", "model": "smollm2"}});
        let updated = store.update_project_notes_and_config(p.id, "insulin does not imply diabetes", &config, ConfigOrigin::Http).unwrap();
        assert_eq!(updated.config_origin, ConfigOrigin::Http, "who set the configuration is kept");
        assert_eq!((updated.expert_notes.as_str(), &updated.config), ("insulin does not imply diabetes", &config));
        assert!(matches!(store.update_project_notes_and_config(p.id, "", &json!([1]), ConfigOrigin::Operator), Err(StoreError::Invalid(_))));
    }
}
