//! banger's durable state in one SQLite file: VMs, images, kernels, guest
//! address leases and long operations.
//!
//! The API is synchronous and owns one connection; the daemon keeps a `Store` behind a
//! mutex (or on a blocking thread) and never holds it across I/O. Opening a store sets
//! WAL (so readers never block the writer), `foreign_keys=ON` and a 5 s busy timeout,
//! refuses a database written by a newer banger, then applies pending migrations
//! (see `migrate`). Queries take and return `banger-model` types; values that no longer
//! decode come back as `StoreError::Corrupt` instead of panicking.

mod error;
mod images;
mod kernels;
mod leases;
mod migrate;
mod operations;
mod published;
mod select;
mod snapshots;
mod vms;
mod workspaces;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use error::StoreError;
pub use images::ImageRecord;
pub use kernels::KernelRecord;
pub use leases::AddressLease;
pub use migrate::LATEST_VERSION;
pub use operations::{OperationRecord, OperationState, StageRecord};
pub use snapshots::SnapshotRecord;

use error::sqlite;

/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open, migrated database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// `None` for an in-memory store.
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating the file, not its directory) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(sqlite(|| format!("opening {}", path.display())))?;
        Store::configure(conn, Some(path.to_owned()), migrate::MIGRATIONS)
    }

    /// A fresh, migrated database that lives as long as the value (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn =
            Connection::open_in_memory().map_err(sqlite(|| "opening an in-memory database"))?;
        Store::configure(conn, None, migrate::MIGRATIONS)
    }

    /// Sets the connection up, then migrates up to `migrations.len()`. Tests pass a
    /// prefix of the list to build an old database.
    fn configure(
        mut conn: Connection,
        path: Option<PathBuf>,
        migrations: &[&str],
    ) -> Result<Store, StoreError> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite(|| "setting the busy timeout"))?;
        // Before anything writes (WAL switches the file format), refuse a newer schema.
        migrate::check_not_too_new(&conn, &shown, LATEST_VERSION)?;
        if path.is_some() {
            // A filesystem without shared memory keeps the old mode; the store still
            // works (readers wait for writers), and `journal_mode()` shows it.
            let _mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
                .map_err(sqlite(|| "switching to WAL"))?;
            // In WAL mode NORMAL is durable against application crashes and much faster.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sqlite(|| "setting synchronous=NORMAL"))?;
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite(|| "enabling foreign keys"))?;
        migrate::apply(&mut conn, &shown, migrations)?;
        Ok(Store { conn, path })
    }

    /// The schema version of the open database (equal to [`LATEST_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrate::user_version(&self.conn)
    }

    /// SQLite's journal mode: `wal` for a file store, `memory` in memory.
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        self.conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(sqlite(|| "reading the journal mode"))
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(test)]
mod tests;
