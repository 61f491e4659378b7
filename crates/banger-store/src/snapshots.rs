//! The `snapshots` table: one row per saved guest (see migration 0006). Rows are written
//! in two steps, `creating` then `ready`, so a daemon killed in between leaves a row that
//! says its files may be half-made.

use rusqlite::{OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::error::{StoreError, sqlite, to_i64, unique_violation};

/// A saved guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub name: String,
    /// `creating`, `ready` or `deleting`.
    pub state: String,
    /// Id and name of the VM it was taken from.
    pub source_vm: String,
    pub source_name: String,
    pub image: String,
    pub kernel: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub nat: bool,
    /// The saved guest has a NIC; its clones get one (with a tap, or detached).
    pub nic: bool,
    pub driver: String,
    /// The directory holding its files.
    pub dir: String,
    /// Bytes its files occupy on disk.
    pub size_bytes: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The source VM's network policy at the save; its forks get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<banger_model::NetPolicy>,
    /// Set for a warm template: the key of the inputs it was made from (migration 0010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_key: Option<String>,
}

const COLUMNS: &str = "id, name, state, source_vm, source_name, image, kernel, vcpus, \
                       memory_bytes, disk_bytes, nat, nic, driver, dir, size_bytes, created_at, \
                       policy, template_key";

fn read(row: &Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    let unsigned = |index: usize| -> rusqlite::Result<u64> {
        let value: i64 = row.get(index)?;
        u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
    };
    Ok(SnapshotRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        state: row.get(2)?,
        source_vm: row.get(3)?,
        source_name: row.get(4)?,
        image: row.get(5)?,
        kernel: row.get(6)?,
        vcpus: row.get(7)?,
        memory_bytes: unsigned(8)?,
        disk_bytes: unsigned(9)?,
        nat: row.get(10)?,
        nic: row.get(11)?,
        driver: row.get(12)?,
        dir: row.get(13)?,
        size_bytes: unsigned(14)?,
        created_at: row.get(15)?,
        policy: match row.get::<_, Option<String>>(16)? {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    16,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?),
            None => None,
        },
        template_key: row.get(17)?,
    })
}

impl Store {
    /// Adds a snapshot; a taken name is `AlreadyExists`.
    pub fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        let policy = match &snapshot.policy {
            Some(policy) => {
                Some(
                    serde_json::to_string(policy).map_err(|e| StoreError::Corrupt {
                        what: format!("snapshot {:?}", snapshot.name),
                        detail: format!("policy JSON: {e}"),
                    })?,
                )
            }
            None => None,
        };
        self.conn
            .execute(
                &format!(
                    "INSERT INTO snapshots ({COLUMNS}) VALUES (:id, :name, :state, :source_vm, \
                     :source_name, :image, :kernel, :vcpus, :memory_bytes, :disk_bytes, :nat, \
                     :nic, :driver, :dir, :size_bytes, :created_at, :policy, :template_key)"
                ),
                named_params! {
                    ":id": snapshot.id,
                    ":name": snapshot.name,
                    ":state": snapshot.state,
                    ":source_vm": snapshot.source_vm,
                    ":source_name": snapshot.source_name,
                    ":image": snapshot.image,
                    ":kernel": snapshot.kernel,
                    ":vcpus": snapshot.vcpus,
                    ":memory_bytes": to_i64("memory", snapshot.memory_bytes)?,
                    ":disk_bytes": to_i64("disk", snapshot.disk_bytes)?,
                    ":nat": snapshot.nat,
                    ":nic": snapshot.nic,
                    ":driver": snapshot.driver,
                    ":dir": snapshot.dir,
                    ":size_bytes": to_i64("size", snapshot.size_bytes)?,
                    ":created_at": snapshot.created_at,
                    ":policy": policy,
                    ":template_key": snapshot.template_key,
                },
            )
            .map_err(|error| match unique_violation(&error) {
                Some(_) => StoreError::AlreadyExists {
                    what: "snapshot",
                    name: snapshot.name.clone(),
                },
                None => StoreError::Sqlite {
                    doing: format!("saving snapshot {:?}", snapshot.name),
                    source: error,
                },
            })?;
        Ok(())
    }

    /// Sets a snapshot's state and size.
    pub fn set_snapshot_state(
        &self,
        id: &str,
        state: &str,
        size_bytes: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE snapshots SET state = ?2, size_bytes = ?3 WHERE id = ?1",
                rusqlite::params![id, state, to_i64("size", size_bytes)?],
            )
            .map_err(sqlite(|| format!("updating snapshot {id}")))?;
        Ok(())
    }

    /// The snapshot with this id, if any.
    pub fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1"),
                [id],
                read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading snapshot {id}")))
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.select_all(
            "listing snapshots",
            &format!("SELECT {COLUMNS} FROM snapshots ORDER BY created_at, name"),
            [],
            read,
        )
    }

    /// Marks `image` as one that gets warm templates; true when it was not yet.
    pub fn add_warm_image(&self, image: &str, added_at: &str) -> Result<bool, StoreError> {
        let added = self
            .conn
            .execute(
                "INSERT INTO warm_images (image, added_at) VALUES (?1, ?2) \
                 ON CONFLICT (image) DO NOTHING",
                [image, added_at],
            )
            .map_err(sqlite(|| format!("marking image {image} warm")))?;
        Ok(added > 0)
    }

    /// Stops keeping warm templates for `image`; true when it was marked.
    pub fn remove_warm_image(&self, image: &str) -> Result<bool, StoreError> {
        let removed = self
            .conn
            .execute("DELETE FROM warm_images WHERE image = ?1", [image])
            .map_err(sqlite(|| format!("unmarking image {image}")))?;
        Ok(removed > 0)
    }

    /// The images a user opted in to warm templates, by name.
    pub fn warm_images(&self) -> Result<Vec<String>, StoreError> {
        self.select_all(
            "listing warm images",
            "SELECT image FROM warm_images ORDER BY image",
            [],
            |row| row.get(0),
        )
    }

    /// Removes a snapshot's row; true when there was one.
    pub fn delete_snapshot(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self
            .conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [id])
            .map_err(sqlite(|| format!("deleting snapshot {id}")))?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> SnapshotRecord {
        SnapshotRecord {
            id: id.into(),
            name: name.into(),
            state: "creating".into(),
            source_vm: "0123456789abcdef".into(),
            source_name: "web".into(),
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 2,
            memory_bytes: 512 << 20,
            disk_bytes: 1 << 30,
            nat: false,
            nic: true,
            driver: "qemu".into(),
            dir: format!("/s/snapshots/{id}"),
            size_bytes: 0,
            created_at: "2026-12-02T19:00:00Z".into(),
            policy: None,
            template_key: None,
        }
    }

    #[test]
    fn insert_update_list_delete() {
        let store = Store::open_in_memory().unwrap();
        store.insert_snapshot(&record("a1", "base")).unwrap();
        let clash = store.insert_snapshot(&record("a2", "base")).unwrap_err();
        assert!(
            matches!(
                clash,
                StoreError::AlreadyExists {
                    what: "snapshot",
                    ..
                }
            ),
            "{clash}"
        );
        store.set_snapshot_state("a1", "ready", 4096).unwrap();
        let got = store.get_snapshot("a1").unwrap().unwrap();
        assert_eq!((got.state.as_str(), got.size_bytes), ("ready", 4096));
        assert_eq!(got.memory_bytes, 512 << 20);
        assert_eq!(got.policy, None);
        // The source's policy is kept for its forks.
        let mut confined = record("b1", "other");
        confined.policy = Some(banger_model::NetPolicy::parse(&["example.com:443"]).unwrap());
        store.insert_snapshot(&confined).unwrap();
        assert_eq!(
            store.get_snapshot("b1").unwrap().unwrap().policy,
            confined.policy
        );
        let names: Vec<String> = store
            .list_snapshots()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["base", "other"]);
        assert!(store.delete_snapshot("a1").unwrap());
        assert!(!store.delete_snapshot("a1").unwrap());
        assert!(store.get_snapshot("a1").unwrap().is_none());
    }

    #[test]
    fn template_keys_round_trip_and_warm_images_are_a_set() {
        let store = Store::open_in_memory().unwrap();
        let mut template = record("t1", "template-tiny");
        template.template_key = Some("k1".into());
        store.insert_snapshot(&template).unwrap();
        store.insert_snapshot(&record("u1", "mine")).unwrap();
        let got = store.get_snapshot("t1").unwrap().unwrap();
        assert_eq!(got.template_key.as_deref(), Some("k1"));
        assert_eq!(
            store.get_snapshot("u1").unwrap().unwrap().template_key,
            None
        );

        assert!(
            store
                .add_warm_image("tiny", "2026-12-03T00:00:00Z")
                .unwrap()
        );
        assert!(
            !store
                .add_warm_image("tiny", "2026-12-03T00:00:01Z")
                .unwrap()
        );
        assert!(
            store
                .add_warm_image("alpine", "2026-12-03T00:00:02Z")
                .unwrap()
        );
        assert_eq!(store.warm_images().unwrap(), ["alpine", "tiny"]);
        assert!(store.remove_warm_image("tiny").unwrap());
        assert!(!store.remove_warm_image("tiny").unwrap());
        assert_eq!(store.warm_images().unwrap(), ["alpine"]);
    }
}
