//! Published ports in the lifecycle. The store keeps each VM's ports (`vm create -p`,
//! `vm port publish`); a forwarder ([`banger_net::Forward`], in this process) listens for
//! each while the VM runs. They open with the network at every boot (a port that cannot
//! be bound fails the boot, naming the port), close with it at stop, kill, exit and
//! delete (`try_detach_network`), and reopen for running VMs the daemon reattaches after
//! a restart. Publishing and unpublishing take the VM's lifecycle lock.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use banger_model::{HostSide, PortSpec, VmId, VmRecord, VmState};
use banger_net::{Forward, ForwardError};

use crate::error::VmError;
use crate::service::{VmService, now};

/// A VM's published port and whether it listens now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub spec: PortSpec,
    pub active: bool,
}

/// The forwards of running VMs, by VM id.
pub(crate) type Forwards = std::sync::Mutex<HashMap<String, Vec<Forward>>>;

/// Refuses specs that collide with each other (one host port asked for twice).
pub(crate) fn check_distinct(specs: &[PortSpec]) -> Result<(), VmError> {
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| a.collides_with(b)) {
            return Err(VmError::BadRequest(format!(
                "-p {a} and -p {b} ask for the same host port"
            )));
        }
    }
    Ok(())
}

impl VmService {
    /// Opens forwards for every port recorded for `vm`, to the guest at `address`; all or
    /// none. Without an address (no network) a VM with published ports cannot start.
    pub(crate) fn open_published(
        &self,
        vm: &VmRecord,
        address: Option<Ipv4Addr>,
    ) -> Result<(), VmError> {
        self.close_published(&vm.id);
        let specs = self.with_store(|s| s.list_published_ports(&vm.id))?;
        if specs.is_empty() {
            return Ok(());
        }
        let Some(address) = address else {
            return Err(VmError::Conflict(format!(
                "VM {} has published ports but no network address (is banger-helper \
                 running? see `banger doctor`); `banger vm port unpublish {} PORT` removes them",
                vm.name, vm.name
            )));
        };
        let forwards = self.bind_all(&vm.id, &specs, address)?;
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(vm.id.to_string(), forwards);
        Ok(())
    }

    /// Closes the VM's forwards (and every connection they carry).
    pub(crate) fn close_published(&self, id: &VmId) {
        let closed = self
            .forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_str());
        drop(closed);
    }

    /// Binds a forward per spec; on the first failure the ones bound are closed again.
    /// A port another VM of this daemon publishes is named as that VM's.
    fn bind_all(
        &self,
        id: &VmId,
        specs: &[PortSpec],
        address: Ipv4Addr,
    ) -> Result<Vec<Forward>, VmError> {
        let mut bound = Vec::with_capacity(specs.len());
        for spec in specs {
            if let Some(owner) = self.publisher_of(id, spec) {
                return Err(VmError::Conflict(format!(
                    "host port {}/{} is in use by VM {owner} (its published port)",
                    spec.host_endpoint(),
                    spec.proto
                )));
            }
            let guest = SocketAddrV4::new(address, spec.guest_port);
            bound.push(Forward::bind(*spec, guest).map_err(port_error)?);
        }
        Ok(bound)
    }

    /// The name of another VM whose running forward holds `spec`'s host port.
    fn publisher_of(&self, id: &VmId, spec: &PortSpec) -> Option<String> {
        let owner = self
            .forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(vm, forwards)| {
                vm.as_str() != id.as_str() && forwards.iter().any(|f| f.spec().collides_with(spec))
            })
            .map(|(vm, _)| vm.clone())?;
        let name = VmId::parse(&owner)
            .ok()
            .and_then(|id| self.with_store(|s| s.get_vm(&id)).ok().flatten())
            .map(|vm| vm.name.to_string());
        Some(name.unwrap_or(owner))
    }

    /// The VM's published ports, each saying whether it listens now.
    pub fn published(&self, query: &str) -> Result<(VmRecord, Vec<PublishedPort>), VmError> {
        let vm = self.find(query)?;
        let ports = self.published_of(&vm)?;
        Ok((vm, ports))
    }

    fn published_of(&self, vm: &VmRecord) -> Result<Vec<PublishedPort>, VmError> {
        let specs = self.with_store(|s| s.list_published_ports(&vm.id))?;
        let forwards = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        let open = forwards.get(vm.id.as_str());
        Ok(specs
            .into_iter()
            .map(|spec| PublishedPort {
                active: open.is_some_and(|f| f.iter().any(|f| *f.spec() == spec)),
                spec,
            })
            .collect())
    }

    /// `vm port publish`: forwards `specs` to the running VM now and records them, so
    /// they come back at every start. Publishing a host port the VM already publishes
    /// moves it to the new guest port.
    pub async fn publish(
        &self,
        query: &str,
        specs: Vec<PortSpec>,
    ) -> Result<(VmRecord, Vec<PublishedPort>), VmError> {
        check_distinct(&specs)?;
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let vm = self.reload(&vm.id)?;
        if vm.state != VmState::Running || self.live_handle(&vm.id).is_none() {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; `banger vm start {}` first (ports given to `vm create -p` \
                 open at every start)",
                vm.name, vm.state, vm.name
            )));
        }
        let Some(address) = vm
            .runtime
            .address
            .as_deref()
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
        else {
            return Err(VmError::Conflict(format!(
                "VM {} has no network address (is banger-helper running? see `banger doctor`)",
                vm.name
            )));
        };
        let recorded = self.with_store(|s| s.list_published_ports(&vm.id))?;
        // Forwards of this VM that the new specs replace (same host side) or collide
        // with are set aside first, so the new ones can bind; they come back on failure.
        let (replaced, kept): (Vec<Forward>, Vec<Forward>) = self
            .forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(vm.id.as_str())
            .unwrap_or_default()
            .into_iter()
            .partition(|f| specs.iter().any(|s| s.collides_with(f.spec())));
        let replaced_specs: Vec<PortSpec> = replaced.iter().map(|f| *f.spec()).collect();
        drop(replaced);
        let bound = match self.bind_all(&vm.id, &specs, address) {
            Ok(bound) => bound,
            Err(error) => {
                let mut restored = kept;
                for spec in &replaced_specs {
                    let guest = SocketAddrV4::new(address, spec.guest_port);
                    match Forward::bind(*spec, guest) {
                        Ok(forward) => restored.push(forward),
                        Err(e) => {
                            tracing::warn!(vm = %vm.name, %spec, error = %e, "cannot reopen a published port")
                        }
                    }
                }
                self.forwards
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(vm.id.to_string(), restored);
                return Err(error);
            }
        };
        let at = now();
        let stored = self.with_store(|s| {
            for old in recorded
                .iter()
                .filter(|old| specs.iter().any(|new| new.collides_with(old)))
            {
                s.delete_published_port(&vm.id, old)?;
            }
            for spec in &specs {
                s.put_published_port(&vm.id, spec, &at)?;
            }
            Ok(())
        });
        let mut open = kept;
        open.extend(bound);
        self.forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(vm.id.to_string(), open);
        stored?;
        let ports = self.published_of(&vm)?;
        Ok((vm, ports))
    }

    /// `vm port unpublish`: closes and forgets the VM's ports matching `sides` (running
    /// or not). A side that matches nothing is an error naming it; nothing is removed
    /// then.
    pub async fn unpublish(
        &self,
        query: &str,
        sides: Vec<(String, HostSide)>,
    ) -> Result<(VmRecord, Vec<PortSpec>), VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let vm = self.reload(&vm.id)?;
        let recorded = self.with_store(|s| s.list_published_ports(&vm.id))?;
        let mut removed: Vec<PortSpec> = Vec::new();
        for (text, side) in &sides {
            let matching: Vec<PortSpec> = recorded
                .iter()
                .filter(|s| side.matches(s))
                .copied()
                .collect();
            if matching.is_empty() {
                let published: Vec<String> = recorded.iter().map(|s| s.to_string()).collect();
                return Err(VmError::NotFound(format!(
                    "VM {} publishes no port {text:?} (published: {})",
                    vm.name,
                    if published.is_empty() {
                        "none".to_string()
                    } else {
                        published.join(", ")
                    }
                )));
            }
            for spec in matching {
                if !removed.contains(&spec) {
                    removed.push(spec);
                }
            }
        }
        self.with_store(|s| {
            for spec in &removed {
                s.delete_published_port(&vm.id, spec)?;
            }
            Ok(())
        })?;
        let closed: Vec<Forward> = {
            let mut forwards = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
            match forwards.get_mut(vm.id.as_str()) {
                Some(open) => {
                    let (closed, kept) = std::mem::take(open)
                        .into_iter()
                        .partition(|f| removed.contains(f.spec()));
                    *open = kept;
                    closed
                }
                None => Vec::new(),
            }
        };
        drop(closed);
        Ok((vm, removed))
    }

    /// Reopens a reattached running VM's ports after a daemon restart; a port that
    /// cannot be bound now is logged (the VM keeps running).
    pub(crate) fn reopen_published(self: &Arc<Self>, vm: &VmRecord) {
        let address = vm
            .runtime
            .address
            .as_deref()
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        if let Err(error) = self.open_published(vm, address) {
            tracing::warn!(vm = %vm.name, error = %crate::error::chain(&error), "cannot reopen the VM's published ports");
        }
    }
}

fn port_error(error: ForwardError) -> VmError {
    match error {
        ForwardError::Bind { .. } => VmError::Port(Box::new(error)),
        other => VmError::Conflict(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_port_asked_for_twice_is_refused() {
        let a = PortSpec::parse("8080:80").unwrap();
        let b = PortSpec::parse("0.0.0.0:8080:81").unwrap();
        let c = PortSpec::parse("8080:80/udp").unwrap();
        assert!(check_distinct(&[a, c]).is_ok());
        let error = check_distinct(&[a, c, b]).unwrap_err().to_string();
        assert_eq!(
            error,
            "-p 0.0.0.0:8080:81/tcp and -p 127.0.0.1:8080:80/tcp ask for the same host port"
        );
    }
}
