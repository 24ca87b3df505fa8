//! Versioned migrations. `PRAGMA user_version` holds how many have been applied; each pending
//! one runs in its own transaction together with the version bump, so a failed migration
//! leaves the file as it was. Released migrations are never edited: changes append a new one.

use crate::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("schema_v1.sql"), include_str!("schema_v2.sql"), include_str!("schema_v3.sql"), include_str!("schema_v4.sql")];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    // The usual case, an up-to-date file, takes no write lock: opening must not wait on a
    // run that is writing.
    if conn.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0))? == SCHEMA_VERSION {
        return Ok(());
    }
    loop {
        // IMMEDIATE takes the write lock before reading the version, so two processes opening
        // a new file cannot both apply the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
        }
        let Some(sql) = MIGRATIONS.get(version as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::*;
    use crate::{Store, StoreError, SCHEMA_VERSION};

    #[test]
    fn reopening_keeps_data_and_applies_nothing_twice() {
        let (dir, mut store) = temp_store();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        project(&mut store, "kept");
        drop(store);
        for _ in 0..2 {
            let store = Store::open(&dir.path().join("assay.db")).unwrap();
            assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(store.projects().unwrap().len(), 1);
        }
    }

    #[test]
    fn a_version_1_file_is_migrated_with_its_questions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assay.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO projects (name, generation_prompt) VALUES ('old', 'p')", []).unwrap();
            conn.execute("INSERT INTO questions (project_id, why) VALUES (1, 'asked before v2')", []).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let p = store.project_by_name("old").unwrap();
        let questions = store.questions(p.id, None).unwrap();
        assert_eq!((questions[0].asked.why.as_str(), questions[0].asked.proposed_check.is_none()), ("asked before v2", true));
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused_untouched() {
        let (dir, store) = temp_store();
        store.conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(store);
        let err = Store::open(&dir.path().join("assay.db")).err().unwrap();
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn two_connections_share_the_file() {
        let (dir, mut writer) = temp_store();
        let reader = Store::open(&dir.path().join("assay.db")).unwrap();
        project(&mut writer, "seen");
        assert_eq!(reader.project_by_name("seen").unwrap().name, "seen");
    }

    #[test]
    fn wal_and_foreign_keys_are_on() {
        let (_dir, store) = temp_store();
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        let fk: bool = store.conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", true));
    }
}
