//! The schema's history: an append-only list of SQL migrations keyed on
//! `PRAGMA user_version`. Migration `n` (1-based) takes the database from version `n-1`
//! to `n`; each runs in its own transaction together with the version bump, so a crash
//! leaves the database at a whole version. Released migrations are never edited: a
//! schema change is a new file.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{StoreError, sqlite};

/// Every migration, oldest first. Index `i` produces version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_operations_and_init.sql"),
    include_str!("../migrations/0003_address_leases.sql"),
    include_str!("../migrations/0004_image_origins.sql"),
    include_str!("../migrations/0005_workspaces.sql"),
    include_str!("../migrations/0006_snapshots.sql"),
    include_str!("../migrations/0007_vm_policy.sql"),
    include_str!("../migrations/0008_snapshot_policy.sql"),
    include_str!("../migrations/0009_published_ports.sql"),
    include_str!("../migrations/0010_warm_templates.sql"),
];

// The upgrade test builds a version-1 database and opens it with the full list; it only
// exercises an upgrade while there is a second step.
const _: () = assert!(MIGRATIONS.len() >= 2);

/// The schema version this binary writes and understands.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
        .map_err(sqlite(|| "reading the schema version"))
}

/// Refuses a database from a newer banger before anything writes to it.
pub(crate) fn check_not_too_new(
    conn: &Connection,
    path: &Path,
    supported: u32,
) -> Result<u32, StoreError> {
    let found = user_version(conn)?;
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    Ok(found)
}

/// Brings the database up to `migrations.len()`, one transaction per step.
///
/// Each step re-reads the version inside an IMMEDIATE transaction (which takes the write
/// lock first), so two processes opening the same database at once never apply a
/// migration twice: the second waits, then sees the new version.
pub(crate) fn apply(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<u32, StoreError> {
    let target = migrations.len() as u32;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite(|| "starting a schema migration"))?;
        let current = check_not_too_new(&tx, path, target)?;
        if current == target {
            return Ok(current);
        }
        let next = current + 1;
        let sql = migrations[current as usize];
        tx.execute_batch(sql)
            .map_err(sqlite(|| format!("applying schema migration {next}")))?;
        tx.pragma_update(None, "user_version", next)
            .map_err(sqlite(|| format!("recording schema version {next}")))?;
        tx.commit()
            .map_err(sqlite(|| format!("committing schema migration {next}")))?;
    }
}
