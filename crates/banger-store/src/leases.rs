//! The `address_leases` table: which guest IPv4 address each VM holds. A lease outlives
//! stop/start (a VM keeps its address) and goes with the VM's row; an address is unique,
//! so two VMs never hold the same one even when two boots race.

use std::net::Ipv4Addr;

use banger_model::VmId;
use rusqlite::{OptionalExtension, Row};

use crate::Store;
use crate::error::{StoreError, sqlite, unique_violation};

/// One VM's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressLease {
    pub vm_id: VmId,
    pub ipv4: Ipv4Addr,
    /// RFC 3339.
    pub leased_at: String,
}

fn read(row: &Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn decode((vm_id, ipv4, leased_at): (String, String, String)) -> Result<AddressLease, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("address lease of VM {vm_id}"),
        detail,
    };
    Ok(AddressLease {
        vm_id: VmId::parse(&vm_id).map_err(|e| corrupt(e.to_string()))?,
        ipv4: ipv4
            .parse()
            .map_err(|e: std::net::AddrParseError| corrupt(format!("{ipv4:?}: {e}")))?,
        leased_at,
    })
}

impl Store {
    /// Records that `vm_id` holds `ipv4`, replacing its previous lease. An address held
    /// by another VM is `AlreadyExists`; a VM that does not exist fails its foreign key.
    pub fn set_lease(
        &self,
        vm_id: &VmId,
        ipv4: Ipv4Addr,
        leased_at: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO address_leases (vm_id, ipv4, leased_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (vm_id) DO UPDATE SET ipv4 = excluded.ipv4, \
                 leased_at = excluded.leased_at",
                [vm_id.as_str(), &ipv4.to_string(), leased_at],
            )
            .map_err(|error| match unique_violation(&error) {
                Some(_) => StoreError::AlreadyExists {
                    what: "guest address",
                    name: ipv4.to_string(),
                },
                None => sqlite(|| format!("leasing {ipv4} to VM {vm_id}"))(error),
            })?;
        Ok(())
    }

    /// The address `vm_id` holds, if any.
    pub fn get_lease(&self, vm_id: &VmId) -> Result<Option<AddressLease>, StoreError> {
        self.conn
            .query_row(
                "SELECT vm_id, ipv4, leased_at FROM address_leases WHERE vm_id = ?1",
                [vm_id.as_str()],
                read,
            )
            .optional()
            .map_err(sqlite(|| format!("reading the lease of VM {vm_id}")))?
            .map(decode)
            .transpose()
    }

    /// Every lease, by address text.
    pub fn list_leases(&self) -> Result<Vec<AddressLease>, StoreError> {
        self.select_all(
            "listing address leases",
            "SELECT vm_id, ipv4, leased_at FROM address_leases ORDER BY ipv4",
            [],
            read,
        )?
        .into_iter()
        .map(decode)
        .collect()
    }

    /// Releases `vm_id`'s address; true when it held one. Deleting the VM does this too.
    pub fn release_lease(&self, vm_id: &VmId) -> Result<bool, StoreError> {
        let deleted = self
            .conn
            .execute(
                "DELETE FROM address_leases WHERE vm_id = ?1",
                [vm_id.as_str()],
            )
            .map_err(sqlite(|| format!("releasing the lease of VM {vm_id}")))?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use banger_model::{ByteSize, VmName, VmRecord, VmRuntime, VmSpec, VmState};

    use super::*;

    fn vm(id: u64, name: &str) -> VmRecord {
        VmRecord {
            id: VmId::from_random(id),
            name: VmName::parse(name).unwrap(),
            state: VmState::Stopped,
            image: "debian".into(),
            kernel: "k".into(),
            spec: VmSpec {
                vcpus: 1,
                memory: ByteSize::from_mib(256),
                disk: ByteSize::from_mib(1024),
            },
            nat: false,
            policy: None,
            driver: "qemu".into(),
            runtime: VmRuntime::default(),
            workspace: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn lease_round_trip_replace_and_release() {
        let store = Store::open_in_memory().unwrap();
        let a = vm(1, "a");
        store.insert_vm(&a).unwrap();
        assert_eq!(store.get_lease(&a.id).unwrap(), None);
        store.set_lease(&a.id, ip("172.30.0.2"), "t1").unwrap();
        assert_eq!(
            store.get_lease(&a.id).unwrap().unwrap().ipv4,
            ip("172.30.0.2")
        );
        store.set_lease(&a.id, ip("172.30.0.3"), "t2").unwrap();
        let leases = store.list_leases().unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].ipv4, ip("172.30.0.3"));
        assert_eq!(leases[0].leased_at, "t2");
        assert!(store.release_lease(&a.id).unwrap());
        assert!(!store.release_lease(&a.id).unwrap());
        assert!(store.list_leases().unwrap().is_empty());
    }

    #[test]
    fn an_address_is_held_by_one_vm_only() {
        let store = Store::open_in_memory().unwrap();
        let (a, b) = (vm(1, "a"), vm(2, "b"));
        store.insert_vm(&a).unwrap();
        store.insert_vm(&b).unwrap();
        store.set_lease(&a.id, ip("172.30.0.2"), "t").unwrap();
        let err = store.set_lease(&b.id, ip("172.30.0.2"), "t").unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
        store.set_lease(&b.id, ip("172.30.0.4"), "t").unwrap();
    }

    #[test]
    fn deleting_the_vm_releases_its_address_and_unknown_vms_cannot_lease() {
        let store = Store::open_in_memory().unwrap();
        let a = vm(1, "a");
        store.insert_vm(&a).unwrap();
        store.set_lease(&a.id, ip("172.30.0.2"), "t").unwrap();
        assert!(store.delete_vm(&a.id).unwrap());
        assert!(store.list_leases().unwrap().is_empty());
        assert!(store.set_lease(&a.id, ip("172.30.0.2"), "t").is_err());
    }
}
