//! The `published_ports` table (migration 9): the host ports forwarded to a VM's guest
//! ports. A VM keeps them across stop/start; they go with its row.

use std::net::Ipv4Addr;

use banger_model::{PortProto, PortSpec, VmId};
use rusqlite::Row;

use crate::Store;
use crate::error::{StoreError, sqlite};

type Raw = (String, String, String, i64, i64);

fn read(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode((vm_id, proto, host_ip, host_port, guest_port): Raw) -> Result<PortSpec, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("published port of VM {vm_id}"),
        detail,
    };
    let port = |value: i64| {
        u16::try_from(value)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| corrupt(format!("port {value}")))
    };
    Ok(PortSpec {
        proto: PortProto::parse(&proto).ok_or_else(|| corrupt(format!("protocol {proto:?}")))?,
        host_ip: host_ip
            .parse::<Ipv4Addr>()
            .map_err(|e| corrupt(format!("{host_ip:?}: {e}")))?,
        host_port: port(host_port)?,
        guest_port: port(guest_port)?,
    })
}

impl Store {
    /// The ports published for `vm_id`, by transport, address and port.
    pub fn list_published_ports(&self, vm_id: &VmId) -> Result<Vec<PortSpec>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT vm_id, proto, host_ip, host_port, guest_port FROM published_ports \
                 WHERE vm_id = ?1 ORDER BY proto, host_port, host_ip",
            )
            .map_err(sqlite(|| "preparing the published-port query"))?;
        let rows = statement
            .query_map([vm_id.as_str()], read)
            .map_err(sqlite(|| {
                format!("reading the published ports of VM {vm_id}")
            }))?;
        rows.map(|row| {
            row.map_err(sqlite(|| format!("reading a published port of VM {vm_id}")))
                .and_then(decode)
        })
        .collect()
    }

    /// Records `spec` for `vm_id`, replacing a row with the same host side (so
    /// publishing `8080:81` after `8080:80` changes the guest port).
    pub fn put_published_port(
        &self,
        vm_id: &VmId,
        spec: &PortSpec,
        published_at: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO published_ports \
                 (vm_id, proto, host_ip, host_port, guest_port, published_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (vm_id, proto, host_ip, host_port) DO UPDATE SET \
                 guest_port = excluded.guest_port, published_at = excluded.published_at",
                rusqlite::params![
                    vm_id.as_str(),
                    spec.proto.as_str(),
                    spec.host_ip.to_string(),
                    spec.host_port,
                    spec.guest_port,
                    published_at
                ],
            )
            .map_err(sqlite(|| format!("publishing {spec} for VM {vm_id}")))?;
        Ok(())
    }

    /// Removes one published port of `vm_id`; true when there was one.
    pub fn delete_published_port(&self, vm_id: &VmId, spec: &PortSpec) -> Result<bool, StoreError> {
        let removed = self
            .conn
            .execute(
                "DELETE FROM published_ports \
                 WHERE vm_id = ?1 AND proto = ?2 AND host_ip = ?3 AND host_port = ?4",
                rusqlite::params![
                    vm_id.as_str(),
                    spec.proto.as_str(),
                    spec.host_ip.to_string(),
                    spec.host_port
                ],
            )
            .map_err(sqlite(|| format!("unpublishing {spec} of VM {vm_id}")))?;
        Ok(removed > 0)
    }
}
