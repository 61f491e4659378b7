//! The `kernels` table: one row per local kernel (vmlinux + initramfs).

use rusqlite::{OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::{StoreError, sqlite};

/// A local kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub name: String,
    /// Kernel release, e.g. `6.1.0-28-cloud-amd64`.
    pub version: String,
    /// Path of the ELF vmlinux.
    pub vmlinux: String,
    /// Path of the initramfs.
    pub initramfs: String,
    /// RFC 3339.
    pub created_at: String,
}

const COLUMNS: &str = "name, version, vmlinux, initramfs, created_at";

fn read(row: &Row<'_>) -> rusqlite::Result<KernelRecord> {
    Ok(KernelRecord {
        name: row.get(0)?,
        version: row.get(1)?,
        vmlinux: row.get(2)?,
        initramfs: row.get(3)?,
        created_at: row.get(4)?,
    })
}

impl Store {
    /// Adds a kernel or replaces the one with the same name.
    pub fn upsert_kernel(&self, kernel: &KernelRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO kernels ({COLUMNS}) VALUES (:name, :version, :vmlinux, \
                     :initramfs, :created_at) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                     vmlinux = excluded.vmlinux, initramfs = excluded.initramfs, \
                     created_at = excluded.created_at"
                ),
                named_params! {
                    ":name": kernel.name,
                    ":version": kernel.version,
                    ":vmlinux": kernel.vmlinux,
                    ":initramfs": kernel.initramfs,
                    ":created_at": kernel.created_at,
                },
            )
            .map_err(sqlite(|| format!("saving kernel {:?}", kernel.name)))?;
        Ok(())
    }

    /// The kernel named `name`, if any.
    pub fn get_kernel(&self, name: &str) -> Result<Option<KernelRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM kernels WHERE name = ?1"),
                [name],
                read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading kernel {name:?}")))
    }

    /// Every kernel, by name.
    pub fn list_kernels(&self) -> Result<Vec<KernelRecord>, StoreError> {
        self.select_all(
            "listing kernels",
            &format!("SELECT {COLUMNS} FROM kernels ORDER BY name"),
            [],
            read,
        )
    }

    /// Removes a kernel record; false when there was none.
    pub fn delete_kernel(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self
            .conn
            .execute("DELETE FROM kernels WHERE name = ?1", [name])
            .map_err(sqlite(|| format!("deleting kernel {name:?}")))?;
        Ok(deleted > 0)
    }
}
