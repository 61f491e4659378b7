//! What can go wrong in the store, with enough context to act on without reading logs.

use std::path::PathBuf;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed while doing `doing` (e.g. `inserting VM web`).
    #[error("database error while {doing}")]
    Sqlite {
        doing: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer banger whose schema this binary does not know.
    #[error(
        "database {path} has schema version {found}, created by a newer banger \
         (this banger supports up to {supported}); upgrade banger, or move the file away to start fresh"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A unique key is taken.
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// An update or delete named a row that does not exist.
    #[error("{what} {name:?} does not exist")]
    NotFound { what: &'static str, name: String },
    /// A stored value no longer decodes (bad JSON, unknown state, invalid name).
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
    /// A number too large for SQLite's signed 64-bit integers.
    #[error("{field} is {value}, larger than the database can store")]
    OutOfRange { field: &'static str, value: u64 },
}

impl StoreError {
    /// SQLite could not write for lack of space (`SQLITE_FULL`): the caller may free some
    /// and retry.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(failure, _),
                ..
            } if failure.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

/// Builds the `map_err` closure for a SQLite call; `doing` is only formatted on failure.
pub(crate) fn sqlite<D: Into<String>>(
    doing: impl FnOnce() -> D,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite {
        doing: doing().into(),
        source,
    }
}

/// True when `error` is a UNIQUE or PRIMARY KEY violation; returns SQLite's message
/// (`UNIQUE constraint failed: vms.name`) so callers can tell which key clashed.
pub(crate) fn unique_violation(error: &rusqlite::Error) -> Option<&str> {
    match error {
        rusqlite::Error::SqliteFailure(failure, message)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Some(message.as_deref().unwrap_or(""))
        }
        _ => None,
    }
}

/// Converts a u64 for storage in an INTEGER column.
pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { field, value })
}

/// Converts an INTEGER column back to u64; negative means someone else wrote the row.
pub(crate) fn to_u64(
    what: impl FnOnce() -> String,
    field: &str,
    value: i64,
) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what(),
        detail: format!("{field} is negative ({value})"),
    })
}
