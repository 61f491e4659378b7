//! Network policies in the lifecycle: a VM with a policy gets its rules before NAT at
//! every boot (`net.rs`), its address in the policy resolver's table while it runs, and
//! `/etc/resolv.conf` naming the gateway (banger's policy resolver behind it). This file
//! holds what changes a policy on a VM that may be running ([`VmService::set_policy`]:
//! stored first, then applied to the host, NAT following), and reads its counters.
//! A policy with at least one rule implies NAT (the allowed destinations must be
//! reachable); an empty one (`--deny-all`) implies none.

use std::net::Ipv4Addr;

use banger_model::{NetPolicy, VmRecord, VmState};
use banger_proto::agent::ExecRequest;

use crate::error::{VmError, chain};
use crate::service::VmService;

/// Whether the VM's guest gets NAT: its policy's say when it has one, else `--nat`.
pub fn effective_nat(vm: &VmRecord) -> bool {
    match &vm.policy {
        Some(policy) => !policy.denies_everything(),
        None => vm.nat,
    }
}

/// The resolv.conf a guest under a policy gets: the gateway, where its DNS is redirected
/// to banger's policy resolver. `single-request-reopen` has glibc send A and AAAA from
/// two sockets: two packets of one new flow racing through the redirect can lose one.
pub fn policy_resolv_conf(gateway: Ipv4Addr) -> String {
    format!(
        "# Written by banger: this VM has a network policy; its resolver is banger's.\n\
         nameserver {gateway}\n\
         options single-request-reopen\n"
    )
}

/// What `vm policy show` reports.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    pub vm: VmRecord,
    /// Packets the host's rules dropped for the guest since its policy was installed
    /// (running VMs with a network).
    pub dropped_packets: Option<u64>,
    /// The destinations it denied (each with its packets), most first.
    pub denied: Vec<banger_proto::helper::PolicyDenied>,
    /// The names banger's resolver refused the guest, with how often, most first.
    pub refused_names: Vec<(String, u64)>,
}

impl VmService {
    /// The policy resolver's table of running guests.
    pub fn policies(&self) -> std::sync::Arc<banger_dns::PolicyTable> {
        std::sync::Arc::clone(&self.policies)
    }

    /// Replaces a VM's policy (`None` removes it: `nat` alone decides again). Stored
    /// first; on a running VM the host's rules change at once (without a restart):
    /// policy rules first, then NAT as the policy implies, and the guest's resolv.conf
    /// through the agent. Learned addresses are forgotten, so a name no longer allowed
    /// stops resolving and connecting at once; connections already open (conntrack)
    /// stay until they close.
    pub async fn set_policy(
        &self,
        query: &str,
        policy: Option<NetPolicy>,
    ) -> Result<VmRecord, VmError> {
        let vm = self.find(query)?;
        let lock = self.vm_lock(&vm.id);
        let _guard = lock.lock().await;
        let mut vm = self.reload(&vm.id)?;
        if vm.state == VmState::Deleting {
            return Err(VmError::Conflict(format!(
                "VM {} is being deleted; `banger vm delete {}` finishes that",
                vm.name, vm.name
            )));
        }
        let before = vm.clone();
        vm.policy = policy;
        self.save(&vm)?;
        if self.live_handle(&vm.id).is_none() || vm.state != VmState::Running {
            return Ok(vm);
        }
        let Some(network) = self.network() else {
            return Ok(vm);
        };
        let Some(lease) = self.with_store(|s| s.get_lease(&vm.id))? else {
            return Ok(vm);
        };
        let ip = lease.ipv4;
        let applied = async {
            match &vm.policy {
                Some(policy) => {
                    network.apply_policy(&vm.id, ip, policy, false).await?;
                    self.policies.insert(ip, policy.clone());
                }
                None => {
                    // NAT first when the VM keeps it, so the guest is never left open
                    // wider than either the old or the new setting.
                    if vm.nat {
                        network
                            .helper()
                            .add_nat(ip)
                            .await
                            .map_err(|source| helper_error(&vm, "add NAT", source))?;
                    }
                    network.remove_policy(ip).await?;
                    self.policies.remove(ip);
                }
            }
            let result = if effective_nat(&vm) {
                network.helper().add_nat(ip).await
            } else {
                network.helper().remove_nat(ip).await
            };
            result.map_err(|source| helper_error(&vm, "change NAT", source))?;
            Ok::<(), VmError>(())
        }
        .await;
        if let Err(error) = applied {
            // The host could not follow: put the old record back, so what is stored
            // says what the rules do (the next start re-applies it in full).
            let _ = self.save(&before);
            return Err(error);
        }
        if let Some(gateway) = vm.policy.as_ref().map(|_| network.pool().gateway()) {
            self.write_guest_resolv_conf(&vm, &policy_resolv_conf(gateway))
                .await;
        }
        Ok(vm)
    }

    /// The VM's policy and, while it runs, its drop counter.
    pub async fn policy_status(&self, query: &str) -> Result<PolicyStatus, VmError> {
        let vm = self.find(query)?;
        let mut status = PolicyStatus {
            vm,
            dropped_packets: None,
            denied: Vec::new(),
            refused_names: Vec::new(),
        };
        let vm = &status.vm;
        if vm.policy.is_some()
            && vm.state == VmState::Running
            && let Some(network) = self.network()
            && let Some(lease) = self.with_store(|s| s.get_lease(&vm.id))?
        {
            status.refused_names = self.policies.refused(lease.ipv4);
            match network.policy_drops(lease.ipv4).await {
                Ok((count, denied)) => {
                    status.dropped_packets = Some(count);
                    status.denied = denied;
                }
                Err(error) => {
                    tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot read the policy counters")
                }
            }
        }
        Ok(status)
    }

    /// Whether the VM's guest may reach `dest` and why (`vm policy check`): by its
    /// policy's rules, or for an address by the resolver having answered it to this
    /// guest; without a policy, NAT decides.
    pub fn check_policy(
        &self,
        query: &str,
        dest: &banger_model::Destination,
    ) -> Result<(VmRecord, banger_model::CheckAnswer), VmError> {
        let vm = self.find(query)?;
        let Some(policy) = &vm.policy else {
            let answer = if vm.nat {
                banger_model::CheckAnswer {
                    allowed: true,
                    rule: None,
                    reason: "the VM has no policy and has NAT (--nat): it reaches everything"
                        .into(),
                }
            } else {
                banger_model::CheckAnswer {
                    allowed: false,
                    rule: None,
                    reason: "the VM has no policy and no NAT: it reaches nothing outside the host"
                        .into(),
                }
            };
            return Ok((vm, answer));
        };
        let guest = self
            .with_store(|s| s.get_lease(&vm.id))?
            .filter(|_| vm.state == VmState::Running)
            .map(|lease| lease.ipv4);
        let answer = policy.check_destination(dest, |ip, port| {
            guest.is_some_and(|guest| self.policies.is_learned(guest, ip, port))
        });
        Ok((vm, answer))
    }

    /// Writes the guest's /etc/resolv.conf through its agent; a failure is logged (the
    /// rules hold either way: other DNS is dropped).
    async fn write_guest_resolv_conf(&self, vm: &VmRecord, text: &str) {
        let Some(agent) = self.live_handle(&vm.id).and_then(|live| live.agent) else {
            return;
        };
        let request = ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "printf '%s' \"$1\" > /etc/resolv.conf".into(),
                "sh".into(),
                text.into(),
            ],
            ..Default::default()
        };
        let run = agent.exec(request, |_, _| {});
        match tokio::time::timeout(std::time::Duration::from_secs(10), run).await {
            Ok(Ok(0)) => {}
            Ok(Ok(code)) => {
                tracing::warn!(vm = %vm.name, code, "cannot write the guest's resolv.conf")
            }
            Ok(Err(error)) => {
                tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot write the guest's resolv.conf")
            }
            Err(_) => tracing::warn!(vm = %vm.name, "writing the guest's resolv.conf timed out"),
        }
    }
}

fn helper_error(
    vm: &VmRecord,
    step: &'static str,
    source: banger_net::HelperClientError,
) -> VmError {
    VmError::from(banger_net::NetError::Helper {
        step,
        vm: vm.id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_model::{VmId, VmName, VmRuntime, VmSpec};

    fn vm(nat: bool, policy: Option<NetPolicy>) -> VmRecord {
        VmRecord {
            id: VmId::from_random(1),
            name: VmName::parse("web").unwrap(),
            state: VmState::Running,
            image: "tiny".into(),
            kernel: "k".into(),
            spec: VmSpec::default(),
            nat,
            policy,
            driver: "qemu".into(),
            runtime: VmRuntime::default(),
            workspace: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_policy_decides_nat() {
        let allow = NetPolicy::parse(&["example.com"]).unwrap();
        let cases = [
            (vm(false, None), false),
            (vm(true, None), true),
            (vm(false, Some(allow.clone())), true),
            (vm(true, Some(NetPolicy::deny_all())), false),
            (vm(false, Some(NetPolicy::deny_all())), false),
        ];
        for (vm, expected) in cases {
            assert_eq!(effective_nat(&vm), expected, "{:?} {:?}", vm.nat, vm.policy);
        }
        assert!(
            policy_resolv_conf(Ipv4Addr::new(172, 30, 0, 1)).contains("nameserver 172.30.0.1\n")
        );
    }
}
