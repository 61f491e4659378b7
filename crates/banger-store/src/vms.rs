//! The `vms` table: one row per VM, spec in columns, runtime as JSON; the workspace
//! lives in `vm_workspaces` (see `workspaces`) and is written and read with the row.

use banger_model::{ByteSize, VmId, VmName, VmRecord, VmSpec, VmState};
use rusqlite::{OptionalExtension, Row, named_params};

use crate::Store;
use crate::error::{StoreError, sqlite, to_i64, to_u64, unique_violation};
use crate::workspaces;

const COLUMNS: &str = "id, name, state, image, kernel, vcpus, memory_bytes, disk_bytes, nat, \
                       driver, runtime, created_at, policy";

/// A row as SQLite returns it, before the model's rules are applied.
struct RawVm {
    id: String,
    name: String,
    state: String,
    image: String,
    kernel: String,
    vcpus: i64,
    memory_bytes: i64,
    disk_bytes: i64,
    nat: bool,
    driver: String,
    runtime: String,
    created_at: String,
    policy: Option<String>,
}

impl RawVm {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawVm> {
        Ok(RawVm {
            id: row.get(0)?,
            name: row.get(1)?,
            state: row.get(2)?,
            image: row.get(3)?,
            kernel: row.get(4)?,
            vcpus: row.get(5)?,
            memory_bytes: row.get(6)?,
            disk_bytes: row.get(7)?,
            nat: row.get(8)?,
            driver: row.get(9)?,
            runtime: row.get(10)?,
            created_at: row.get(11)?,
            policy: row.get(12)?,
        })
    }

    fn decode(self) -> Result<VmRecord, StoreError> {
        let what = || format!("VM {:?} (id {})", self.name, self.id);
        let corrupt = |detail: String| StoreError::Corrupt {
            what: what(),
            detail,
        };
        let id = VmId::parse(&self.id).map_err(|e| corrupt(e.to_string()))?;
        let name = VmName::parse(&self.name).map_err(|e| corrupt(e.to_string()))?;
        let state = VmState::parse(&self.state).map_err(|e| corrupt(e.to_string()))?;
        let vcpus = u32::try_from(self.vcpus)
            .map_err(|_| corrupt(format!("vcpus is out of range ({})", self.vcpus)))?;
        let memory = ByteSize(to_u64(what, "memory_bytes", self.memory_bytes)?);
        let disk = ByteSize(to_u64(what, "disk_bytes", self.disk_bytes)?);
        let runtime = serde_json::from_str(&self.runtime)
            .map_err(|e| corrupt(format!("runtime JSON: {e}")))?;
        let policy = match &self.policy {
            Some(text) => {
                Some(serde_json::from_str(text).map_err(|e| corrupt(format!("policy JSON: {e}")))?)
            }
            None => None,
        };
        Ok(VmRecord {
            id,
            name,
            state,
            image: self.image,
            kernel: self.kernel,
            spec: VmSpec {
                vcpus,
                memory,
                disk,
            },
            nat: self.nat,
            policy,
            driver: self.driver,
            runtime,
            workspace: None,
            created_at: self.created_at,
        })
    }
}

/// The JSON columns of a record, encoded once for INSERT and UPDATE.
struct Encoded {
    runtime: String,
    policy: Option<String>,
    memory_bytes: i64,
    disk_bytes: i64,
}

fn encode(vm: &VmRecord) -> Result<Encoded, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("VM {:?}", vm.name.as_str()),
        detail,
    };
    let runtime =
        serde_json::to_string(&vm.runtime).map_err(|e| corrupt(format!("runtime JSON: {e}")))?;
    let policy = match &vm.policy {
        Some(policy) => {
            Some(serde_json::to_string(policy).map_err(|e| corrupt(format!("policy JSON: {e}")))?)
        }
        None => None,
    };
    Ok(Encoded {
        runtime,
        policy,
        memory_bytes: to_i64("memory", vm.spec.memory.bytes())?,
        disk_bytes: to_i64("disk", vm.spec.disk.bytes())?,
    })
}

/// Maps a failed INSERT/UPDATE to `AlreadyExists` when a unique key clashed.
fn write_error(vm: &VmRecord, doing: String, error: rusqlite::Error) -> StoreError {
    match unique_violation(&error) {
        Some(message) if message.contains("vms.id") => StoreError::AlreadyExists {
            what: "VM id",
            name: vm.id.to_string(),
        },
        Some(_) => StoreError::AlreadyExists {
            what: "VM",
            name: vm.name.to_string(),
        },
        None => StoreError::Sqlite {
            doing,
            source: error,
        },
    }
}

impl Store {
    /// Adds a VM. A taken name (or id) is `AlreadyExists`.
    pub fn insert_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let encoded = encode(vm)?;
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sqlite(|| format!("inserting VM {}", vm.name)))?;
        tx.execute(
            &format!(
                "INSERT INTO vms ({COLUMNS}) VALUES (:id, :name, :state, :image, :kernel, \
                     :vcpus, :memory_bytes, :disk_bytes, :nat, :driver, :runtime, \
                     :created_at, :policy)"
            ),
            named_params! {
                ":id": vm.id.as_str(),
                ":name": vm.name.as_str(),
                ":state": vm.state.as_str(),
                ":image": vm.image,
                ":kernel": vm.kernel,
                ":vcpus": vm.spec.vcpus,
                ":memory_bytes": encoded.memory_bytes,
                ":disk_bytes": encoded.disk_bytes,
                ":nat": vm.nat,
                ":driver": vm.driver,
                ":runtime": encoded.runtime,
                ":created_at": vm.created_at,
                ":policy": encoded.policy,
            },
        )
        .map_err(|e| write_error(vm, format!("inserting VM {}", vm.name), e))?;
        workspaces::put(&tx, &vm.id, vm.workspace.as_ref())?;
        tx.commit()
            .map_err(sqlite(|| format!("inserting VM {}", vm.name)))?;
        Ok(())
    }

    /// Replaces every field of the VM with `vm.id`. A missing VM is `NotFound`; renaming
    /// onto a taken name is `AlreadyExists`.
    pub fn update_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let encoded = encode(vm)?;
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sqlite(|| format!("updating VM {}", vm.name)))?;
        let changed = tx
            .execute(
                "UPDATE vms SET name = :name, state = :state, image = :image, kernel = :kernel, \
                 vcpus = :vcpus, memory_bytes = :memory_bytes, disk_bytes = :disk_bytes, \
                 nat = :nat, driver = :driver, runtime = :runtime, \
                 created_at = :created_at, policy = :policy WHERE id = :id",
                named_params! {
                    ":id": vm.id.as_str(),
                    ":name": vm.name.as_str(),
                    ":state": vm.state.as_str(),
                    ":image": vm.image,
                    ":kernel": vm.kernel,
                    ":vcpus": vm.spec.vcpus,
                    ":memory_bytes": encoded.memory_bytes,
                    ":disk_bytes": encoded.disk_bytes,
                    ":nat": vm.nat,
                    ":driver": vm.driver,
                    ":runtime": encoded.runtime,
                    ":created_at": vm.created_at,
                    ":policy": encoded.policy,
                },
            )
            .map_err(|e| write_error(vm, format!("updating VM {}", vm.name), e))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "VM",
                name: vm.id.to_string(),
            });
        }
        workspaces::put(&tx, &vm.id, vm.workspace.as_ref())?;
        tx.commit()
            .map_err(sqlite(|| format!("updating VM {}", vm.name)))?;
        Ok(())
    }

    /// The VM with this id, if any.
    pub fn get_vm(&self, id: &VmId) -> Result<Option<VmRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM vms WHERE id = ?1"),
                [id.as_str()],
                RawVm::read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading VM {id}")))?
            .map(RawVm::decode)
            .transpose()?
            .map(|vm| self.with_workspace(vm))
            .transpose()
    }

    /// The VM named exactly `name`, if any.
    pub fn find_vm_by_name(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM vms WHERE name = ?1"),
                [name],
                RawVm::read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading VM {name:?}")))?
            .map(RawVm::decode)
            .transpose()?
            .map(|vm| self.with_workspace(vm))
            .transpose()
    }

    /// Every VM, oldest first (ties by name).
    pub fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let mut workspaces = self.all_workspaces()?;
        self.select_all(
            "listing VMs",
            &format!("SELECT {COLUMNS} FROM vms ORDER BY created_at, name"),
            [],
            RawVm::read,
        )?
        .into_iter()
        .map(|raw| {
            let mut vm = raw.decode()?;
            vm.workspace = workspaces.remove(vm.id.as_str());
            Ok(vm)
        })
        .collect()
    }

    fn with_workspace(&self, mut vm: VmRecord) -> Result<VmRecord, StoreError> {
        vm.workspace = self.workspace_of(&vm.id)?;
        Ok(vm)
    }

    /// Removes a VM; false when there was none.
    pub fn delete_vm(&self, id: &VmId) -> Result<bool, StoreError> {
        let deleted = self
            .conn
            .execute("DELETE FROM vms WHERE id = ?1", [id.as_str()])
            .map_err(sqlite(|| format!("deleting VM {id}")))?;
        Ok(deleted > 0)
    }

    /// How many VMs are in each state, in lifecycle order, omitting empty states.
    pub fn count_vms_by_state(&self) -> Result<Vec<(VmState, u64)>, StoreError> {
        let rows = self.select_all(
            "counting VMs by state",
            "SELECT state, COUNT(*) FROM vms GROUP BY state",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )?;
        let mut counts = Vec::with_capacity(rows.len());
        for (state, count) in rows {
            let what = || format!("VM state {state:?}");
            let parsed = VmState::parse(&state).map_err(|e| StoreError::Corrupt {
                what: what(),
                detail: e.to_string(),
            })?;
            counts.push((parsed, to_u64(what, "count", count)?));
        }
        counts.sort_by_key(|(state, _)| VmState::ALL.iter().position(|s| s == state));
        Ok(counts)
    }
}
