//! The `vm_workspaces` table (migration 5): a VM's workspace in typed columns, written
//! together with the VM's row and read back into `VmRecord::workspace`.

use std::collections::HashMap;

use banger_model::{VmId, Workspace, WorkspaceDelivery};
use rusqlite::{Connection, OptionalExtension, Row, named_params};

use crate::Store;
use crate::error::{StoreError, sqlite, to_i64, to_u64};

const COLUMNS: &str = "vm_id, host_path, guest_path, mode, head_commit, flags, delivery, \
                       files, bytes, tracked_signature, prepared_at";

/// The `flags` JSON column.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Flags {
    #[serde(default)]
    include_untracked: bool,
}

struct RawWorkspace {
    vm_id: String,
    host_path: String,
    guest_path: String,
    mode: String,
    head_commit: Option<String>,
    flags: String,
    delivery: String,
    files: i64,
    bytes: i64,
    tracked_signature: String,
    prepared_at: String,
}

impl RawWorkspace {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawWorkspace> {
        Ok(RawWorkspace {
            vm_id: row.get(0)?,
            host_path: row.get(1)?,
            guest_path: row.get(2)?,
            mode: row.get(3)?,
            head_commit: row.get(4)?,
            flags: row.get(5)?,
            delivery: row.get(6)?,
            files: row.get(7)?,
            bytes: row.get(8)?,
            tracked_signature: row.get(9)?,
            prepared_at: row.get(10)?,
        })
    }

    fn decode(self) -> Result<(String, Workspace), StoreError> {
        let what = || format!("workspace of VM {}", self.vm_id);
        let corrupt = |detail: String| StoreError::Corrupt {
            what: what(),
            detail,
        };
        let flags: Flags = serde_json::from_str(&self.flags)
            .map_err(|e| corrupt(format!("workspace flags JSON: {e}")))?;
        let delivery = WorkspaceDelivery::parse(&self.delivery)
            .ok_or_else(|| corrupt(format!("unknown delivery {:?}", self.delivery)))?;
        let workspace = Workspace {
            host_path: self.host_path,
            guest_path: self.guest_path,
            mode: self.mode,
            head_commit: self.head_commit,
            include_untracked: flags.include_untracked,
            delivery,
            files: to_u64(what, "files", self.files)?,
            bytes: to_u64(what, "bytes", self.bytes)?,
            tracked_signature: self.tracked_signature,
            prepared_at: self.prepared_at,
        };
        Ok((self.vm_id, workspace))
    }
}

/// Writes (or, for `None`, removes) the workspace row of `vm_id`.
pub(crate) fn put(
    conn: &Connection,
    vm_id: &VmId,
    workspace: Option<&Workspace>,
) -> Result<(), StoreError> {
    let Some(w) = workspace else {
        conn.execute(
            "DELETE FROM vm_workspaces WHERE vm_id = ?1",
            [vm_id.as_str()],
        )
        .map_err(sqlite(|| format!("removing the workspace of VM {vm_id}")))?;
        return Ok(());
    };
    let flags = serde_json::to_string(&Flags {
        include_untracked: w.include_untracked,
    })
    .map_err(|e| StoreError::Corrupt {
        what: format!("workspace of VM {vm_id}"),
        detail: e.to_string(),
    })?;
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO vm_workspaces ({COLUMNS}) VALUES (:vm_id, :host_path, \
             :guest_path, :mode, :head_commit, :flags, :delivery, :files, :bytes, \
             :tracked_signature, :prepared_at)"
        ),
        named_params! {
            ":vm_id": vm_id.as_str(),
            ":host_path": w.host_path,
            ":guest_path": w.guest_path,
            ":mode": w.mode,
            ":head_commit": w.head_commit,
            ":flags": flags,
            ":delivery": w.delivery.as_str(),
            ":files": to_i64("files", w.files)?,
            ":bytes": to_i64("bytes", w.bytes)?,
            ":tracked_signature": w.tracked_signature,
            ":prepared_at": w.prepared_at,
        },
    )
    .map_err(sqlite(|| format!("writing the workspace of VM {vm_id}")))?;
    Ok(())
}

impl Store {
    /// The workspace of one VM, if it has one.
    pub(crate) fn workspace_of(&self, vm_id: &VmId) -> Result<Option<Workspace>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM vm_workspaces WHERE vm_id = ?1"),
                [vm_id.as_str()],
                RawWorkspace::read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading the workspace of VM {vm_id}")))?
            .map(|raw| raw.decode().map(|(_, w)| w))
            .transpose()
    }

    /// Every workspace, by VM id.
    pub(crate) fn all_workspaces(&self) -> Result<HashMap<String, Workspace>, StoreError> {
        self.select_all(
            "listing workspaces",
            &format!("SELECT {COLUMNS} FROM vm_workspaces"),
            [],
            RawWorkspace::read,
        )?
        .into_iter()
        .map(RawWorkspace::decode)
        .collect()
    }
}
