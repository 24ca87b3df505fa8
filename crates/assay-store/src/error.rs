//! The store's errors: what a caller can act on (not found, conflict, invalid input, a file
//! from a newer assay) apart from SQLite's own failures.

use std::path::PathBuf;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `what` names the record, e.g. "project 'demo'".
    #[error("{what} not found")]
    NotFound { what: String },
    /// A record with the same identity exists, the change would repeat the current state, or
    /// the stored data does not allow it (judging a dataset without outputs).
    #[error("{0}")]
    Conflict(String),
    /// A default the caller relies on does not exist yet: the project's latest dataset or
    /// evaluator-set version when it has none.
    #[error("{0}")]
    NoneYet(String),
    /// The caller's data breaks a rule of the store (empty dataset, span outside the text...).
    #[error("{0}")]
    Invalid(String),
    #[error("{path} has schema version {found}, newer than the {supported} this assay knows; use a newer assay")]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }
}

/// Maps a missing row to `NotFound { what }` and passes other errors through.
pub(crate) trait OptionalRow<T> {
    fn or_not_found(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OptionalRow<T> for rusqlite::Result<T> {
    fn or_not_found(self, what: impl FnOnce() -> String) -> Result<T> {
        match self {
            Ok(v) => Ok(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => Err(StoreError::not_found(what())),
            Err(e) => Err(e.into()),
        }
    }
}

/// A foreign-key failure means the record referred to does not exist.
pub(crate) fn foreign_key_error(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::not_found(what()),
        _ => e.into(),
    }
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation, which callers report as a conflict.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
