//! assay-store: everything the evaluation loop must not lose, in one SQLite file.
//!
//! It owns the schema and its migrations, and a typed API over the loop's records: projects,
//! datasets and their items, generations and their annotations (errors with spans, or the raw
//! answer flagged unparseable), trees of error clusters, immutable content-hashed evaluator-set
//! versions with their diffs, runs with status and progress, judgments (at most one per run,
//! item and check, so an interrupted run resumes with exactly what is missing), gold outputs
//! of optimise runs with their lineage, expert labels, questions and rulings. It also reads dataset files (JSONL, CSV) into items.
//!
//! It must not call models or the network, and holds no state outside the database: every
//! record a restart must keep is written before a method returns, and every multi-row write is
//! one transaction, so a failure leaves nothing half-written. Pipeline and server use it; it
//! depends only on assay-core.

mod annotations;
mod clusters;
mod columns;
pub mod dataset_file;
mod datasets;
mod error;
mod expert;
mod gold;
mod ids;
mod projects;
mod runs;
mod schema;
mod sets;
mod text_enum;

pub use annotations::{AnnotatedError, Annotation, NewGeneration, Severity, Span, StoredError, StoredGeneration};
pub use clusters::{CheckOrigin, ErrorCluster, NewCluster};
pub use datasets::{Dataset, Item, NewItem};
pub use error::{Result, StoreError};
pub use expert::{CheckLabel, NewQuestion, Question, QuestionStatus, Ruling, ScoreLabel};
pub use gold::{GoldOutput, GoldStatus, NewGoldOutput};
pub use ids::{AnnotationId, ClusterId, DatasetId, ErrorId, GenerationId, GoldOutputId, ItemId, ProjectId, QuestionId, RunId, SetVersionId};
pub use projects::{check_name, ConfigOrigin, NewProject, Project, MAX_NAME_LEN};
pub use runs::{NewRun, PendingPair, Run, RunKind, RunStatus};
pub use schema::SCHEMA_VERSION;
pub use sets::{CheckChange, SetDiff, SetVersion};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An open assay database. Reads take `&self`; writes take `&mut self` because each runs in
/// its own transaction on the one connection.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// A file written by a newer assay is refused rather than misread.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        // Another process (a server, a CLI run) may hold the write lock briefly.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // WAL lets readers (reports, the server) proceed while a run writes judgments.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!("{} cannot use write-ahead logging (journal mode is {mode})", path.display())));
        }
        let mut store = Self { conn, path: path.to_path_buf() };
        schema::migrate(&mut store.conn, path)?;
        Ok(store)
    }

    /// Whether the database at `path` is usable, without creating it: it exists, is an
    /// up-to-date assay database and takes a write (a read-only file, a full or corrupt one
    /// fails). For readiness checks; cheap (one page read, one header write).
    pub fn probe(path: &Path) -> Result<()> {
        if !path.is_file() {
            return Err(StoreError::Invalid(format!("{} does not exist", path.display())));
        }
        let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Invalid(format!("{} has schema version {version}, this build writes {SCHEMA_VERSION}", path.display())));
        }
        tx.query_row("SELECT count(*) FROM projects", [], |r| r.get::<_, i64>(0))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A store in a fresh temporary folder; keep the folder alive as long as the store.
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("assay.db")).unwrap();
        (dir, store)
    }

    pub fn project(store: &mut Store, name: &str) -> Project {
        store.create_project(&NewProject { name: name.into(), generation_prompt: "Answer the question.".into(), ..Default::default() }).unwrap()
    }

    pub fn item(key: &str, output: Option<&str>) -> NewItem {
        NewItem { key: key.into(), input: format!("input {key}"), output: output.map(Into::into), ..Default::default() }
    }

    pub fn check(id: &str, question: &str) -> assay_core::Check {
        assay_core::Check { id: id.into(), name: String::new(), question: question.into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None }
    }
}
