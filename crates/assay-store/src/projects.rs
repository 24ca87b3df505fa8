//! Projects: one task (its generation prompt, the expert's notes, which backend and model plays
//! each role) and everything evaluated for it.

use crate::columns::json_column;
use crate::error::{is_unique_violation, OptionalRow};
use crate::{ProjectId, Result, Store, StoreError};
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub task: String,
    pub generation_prompt: String,
    pub expert_notes: String,
    pub config: serde_json::Value,
    pub created_at: String,
}

const COLUMNS: &str = "id, name, task, generation_prompt, expert_notes, config, created_at";

fn from_row(r: &Row) -> rusqlite::Result<Project> {
    Ok(Project { id: r.get(0)?, name: r.get(1)?, task: r.get(2)?, generation_prompt: r.get(3)?, expert_notes: r.get(4)?, config: json_column(r, 5)?, created_at: r.get(6)? })
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
    /// Creates a project; its name must be new, non-blank and without surrounding spaces.
    pub fn create_project(&mut self, p: &NewProject) -> Result<Project> {
        if p.name.trim().is_empty() || p.name.trim() != p.name {
            return Err(StoreError::Invalid(format!("project name {:?} is blank or has surrounding spaces", p.name)));
        }
        if p.generation_prompt.trim().is_empty() {
            return Err(StoreError::Invalid(format!("project '{}' needs a generation prompt", p.name)));
        }
        let config = config_text(&p.config)?;
        self.conn
            .execute("INSERT INTO projects (name, task, generation_prompt, expert_notes, config) VALUES (?1, ?2, ?3, ?4, ?5)", params![p.name, p.task, p.generation_prompt, p.expert_notes, config])
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
    pub fn update_project_notes_and_config(&mut self, id: ProjectId, expert_notes: &str, config: &serde_json::Value) -> Result<Project> {
        let config = config_text(config)?;
        let n = self.conn.execute("UPDATE projects SET expert_notes = ?2, config = ?3 WHERE id = ?1", params![id, expert_notes, config])?;
        if n == 0 {
            return Err(StoreError::not_found(format!("project {id}")));
        }
        self.project(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::*;
    use crate::{NewProject, StoreError};
    use serde_json::json;

    #[test]
    fn names_are_unique_and_validated() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "notes");
        assert_eq!(store.project_by_name("notes").unwrap(), p);
        assert!(matches!(store.create_project(&NewProject { name: "notes".into(), generation_prompt: "x".into(), ..Default::default() }), Err(StoreError::Conflict(_))));
        assert!(matches!(store.create_project(&NewProject { name: " x".into(), generation_prompt: "x".into(), ..Default::default() }), Err(StoreError::Invalid(_))));
        assert!(matches!(store.create_project(&NewProject { name: "y".into(), ..Default::default() }), Err(StoreError::Invalid(_))));
        assert!(matches!(store.project_by_name("nope"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn notes_and_config_are_updated_and_config_must_be_an_object() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        assert_eq!(p.config, json!({}));
        let config = json!({"judge": {"backend": "local", "model": "smollm2"}});
        let updated = store.update_project_notes_and_config(p.id, "insulin does not imply diabetes", &config).unwrap();
        assert_eq!((updated.expert_notes.as_str(), &updated.config), ("insulin does not imply diabetes", &config));
        assert!(matches!(store.update_project_notes_and_config(p.id, "", &json!([1])), Err(StoreError::Invalid(_))));
    }
}
