//! Startup reconciliation of guest networking: after the VMs are reconciled, the host's
//! taps (banger's prefix) and per-guest NAT rules (banger's table), as the helper lists
//! them, are compared with the VMs that still have a process, and everything none of
//! them owns is removed. A crash anywhere in `vm create` or `vm start` (between creating
//! a tap, adding NAT and recording the VM) therefore leaves nothing behind once the
//! daemon is back, and an address is never leased again while rules for it exist: the
//! daemon serves (and leases) only after this ran.
//!
//! What a VM owns: its tap while its VMM runs, the NAT rules of its leased address while
//! it runs with NAT (or a policy allowing something), and the policy rules of that address
//! while it runs with a policy; those policies are then installed again as stored. The plan ([`plan_cleanup`]) is pure and tested as a table; applying
//! it goes through the helper's idempotent `delete_tap` / `remove_nat`.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use banger_model::VmRecord;
use banger_net::{NetworkListing, tap_name};

use crate::error::chain;
use crate::service::VmService;

/// What runs, and so what it may keep.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetOwners {
    pub taps: HashSet<String>,
    pub nat_guests: HashSet<Ipv4Addr>,
    /// Addresses of running VMs with a network policy.
    pub policy_guests: HashSet<Ipv4Addr>,
}

/// Taps and NAT rules (by guest address) no running VM owns: what reconcile removes,
/// and then reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetCleanup {
    pub taps: Vec<String>,
    pub nat_guests: Vec<Ipv4Addr>,
    pub policy_guests: Vec<Ipv4Addr>,
}

impl NetCleanup {
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty() && self.nat_guests.is_empty() && self.policy_guests.is_empty()
    }
}

/// Everything in `host` that `owners` does not claim. Pure.
pub fn plan_cleanup(host: &NetworkListing, owners: &NetOwners) -> NetCleanup {
    NetCleanup {
        taps: host
            .taps
            .iter()
            .filter(|tap| !owners.taps.contains(*tap))
            .cloned()
            .collect(),
        nat_guests: host
            .nat_guests
            .iter()
            .filter(|ip| !owners.nat_guests.contains(*ip))
            .copied()
            .collect(),
        policy_guests: host
            .policy_guests
            .iter()
            .filter(|ip| !owners.policy_guests.contains(*ip))
            .copied()
            .collect(),
    }
}

/// What the VMs with a live process own, given their records and leases. Pure.
pub fn owners_of<'a>(
    running: impl IntoIterator<Item = &'a VmRecord>,
    lease_of: impl Fn(&VmRecord) -> Option<Ipv4Addr>,
) -> NetOwners {
    let mut owners = NetOwners::default();
    for vm in running {
        owners.taps.insert(tap_name(&vm.id));
        if let Some(ip) = lease_of(vm) {
            if crate::policy::effective_nat(vm) {
                owners.nat_guests.insert(ip);
            }
            if vm.policy.is_some() {
                owners.policy_guests.insert(ip);
            }
        }
    }
    owners
}

impl VmService {
    /// Removes the taps and NAT rules no running VM owns; returns what went. Failures
    /// are logged: a rule that could not be listed or removed now is still never
    /// inherited, because a guest without NAT has its address's rules removed at attach.
    pub(crate) async fn reconcile_network(&self) -> NetCleanup {
        let Some(network) = self.network() else {
            return NetCleanup::default();
        };
        let listing = match network.listing().await {
            Ok(listing) => listing,
            Err(error) => {
                tracing::warn!(error = %chain(&error), "cannot list the host's taps and NAT rules; leftovers stay until the next restart");
                return NetCleanup::default();
            }
        };
        let owners = match self.running_owners() {
            Ok(owners) => owners,
            Err(error) => {
                tracing::warn!(error = %chain(&error), "cannot read the store; no network leftovers removed");
                return NetCleanup::default();
            }
        };
        let plan = plan_cleanup(&listing, &owners);
        let mut removed = NetCleanup::default();
        for tap in &plan.taps {
            match network.remove_tap(tap).await {
                Ok(()) => removed.taps.push(tap.clone()),
                Err(error) => {
                    tracing::warn!(%tap, error = %chain(&error), "cannot remove a leftover tap")
                }
            }
        }
        for ip in &plan.nat_guests {
            match network.remove_nat_rules(*ip).await {
                Ok(()) => removed.nat_guests.push(*ip),
                Err(error) => {
                    tracing::warn!(%ip, error = %chain(&error), "cannot remove leftover NAT rules")
                }
            }
        }
        for ip in &plan.policy_guests {
            match network.remove_policy(*ip).await {
                Ok(()) => removed.policy_guests.push(*ip),
                Err(error) => {
                    tracing::warn!(%ip, error = %chain(&error), "cannot remove leftover policy rules")
                }
            }
        }
        self.reapply_policies(&network).await;
        if !removed.is_empty() {
            tracing::warn!(taps = ?removed.taps, nat = ?removed.nat_guests, "removed network leftovers no VM owns");
        }
        removed
    }

    /// Installs the policies of running VMs again (same rules, learned addresses kept),
    /// so rules changed or lost while no daemon ran are what the store says. A failure
    /// is logged; the guest's other traffic stays dropped either way (the base rules
    /// fail closed only when present, so a VM whose rules are gone is reported loudly).
    async fn reapply_policies(&self, network: &banger_net::Network) {
        let Ok(vms) = self.list() else { return };
        let Ok(leases) = self.with_store(|s| s.list_leases()) else {
            return;
        };
        for vm in vms.iter().filter(|vm| vm.policy.is_some()) {
            if self.live_handle(&vm.id).is_none() {
                continue;
            }
            let (Some(policy), Some(lease)) = (
                vm.policy.as_ref(),
                leases.iter().find(|lease| lease.vm_id == vm.id),
            ) else {
                continue;
            };
            if let Err(error) = network.apply_policy(&vm.id, lease.ipv4, policy, true).await {
                tracing::error!(vm = %vm.name, error = %chain(&error), "cannot re-apply the VM's network policy");
            }
        }
    }

    /// The owners: VMs this daemon holds a live VMM handle for after reconciling.
    fn running_owners(&self) -> Result<NetOwners, crate::error::VmError> {
        let vms = self.list()?;
        let leases = self.with_store(|s| s.list_leases())?;
        let live: BTreeSet<String> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let running = vms.iter().filter(|vm| live.contains(vm.id.as_str()));
        Ok(owners_of(running, |vm| {
            leases
                .iter()
                .find(|lease| lease.vm_id == vm.id)
                .map(|lease| lease.ipv4)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_model::{VmId, VmName, VmRuntime, VmSpec, VmState};

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn vm(id: &str, nat: bool) -> VmRecord {
        VmRecord {
            id: VmId::parse(id).unwrap(),
            name: VmName::parse(&format!("vm-{}", &id[..4])).unwrap(),
            state: VmState::Running,
            image: "tiny".into(),
            kernel: "k".into(),
            spec: VmSpec::default(),
            nat,
            policy: None,
            driver: "qemu".into(),
            runtime: VmRuntime::default(),
            workspace: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn owners_are_the_running_vms_taps_and_their_nat_addresses() {
        let with_nat = vm("aaaaaaaa00000000", true);
        let without = vm("bbbbbbbb00000000", false);
        let unleased = vm("cccccccc00000000", true);
        let owners = owners_of([&with_nat, &without, &unleased], |vm| {
            match vm.id.as_str() {
                "aaaaaaaa00000000" => Some(ip("172.30.0.2")),
                "bbbbbbbb00000000" => Some(ip("172.30.0.3")),
                _ => None,
            }
        });
        let mut taps: Vec<&String> = owners.taps.iter().collect();
        taps.sort();
        assert_eq!(taps, ["bgt-aaaaaaaa", "bgt-bbbbbbbb", "bgt-cccccccc"]);
        // A VM without NAT owns no rules, even for its own address.
        assert_eq!(owners.nat_guests, HashSet::from([ip("172.30.0.2")]));
        assert!(owners.policy_guests.is_empty());

        // A policy VM owns its policy rules, and NAT only when the policy allows
        // something.
        let mut allowing = vm("dddddddd00000000", false);
        allowing.policy = Some(banger_model::NetPolicy::parse(&["example.com"]).unwrap());
        let mut denying = vm("eeeeeeee00000000", true);
        denying.policy = Some(banger_model::NetPolicy::deny_all());
        let owners = owners_of([&allowing, &denying], |vm| match vm.id.as_str() {
            "dddddddd00000000" => Some(ip("172.30.0.4")),
            _ => Some(ip("172.30.0.5")),
        });
        assert_eq!(owners.nat_guests, HashSet::from([ip("172.30.0.4")]));
        assert_eq!(
            owners.policy_guests,
            HashSet::from([ip("172.30.0.4"), ip("172.30.0.5")])
        );
    }

    #[test]
    fn cleanup_is_what_the_host_has_and_no_vm_owns() {
        let owners = NetOwners {
            taps: HashSet::from(["bgt-aaaaaaaa".to_owned()]),
            nat_guests: HashSet::from([ip("172.30.0.2")]),
            policy_guests: HashSet::from([ip("172.30.0.2")]),
        };
        let listing = |taps: &[&str], nat: &[&str]| NetworkListing {
            taps: taps.iter().map(|t| (*t).to_owned()).collect(),
            nat_guests: nat.iter().map(|a| ip(a)).collect(),
            policy_guests: nat.iter().map(|a| ip(a)).collect(),
        };
        let cases: Vec<(NetworkListing, NetCleanup)> = vec![
            (listing(&[], &[]), NetCleanup::default()),
            (
                listing(&["bgt-aaaaaaaa"], &["172.30.0.2"]),
                NetCleanup::default(),
            ),
            // The leak: a tap and rules of a create killed mid-way.
            (
                listing(
                    &["bgt-aaaaaaaa", "bgt-deadbeef"],
                    &["172.30.0.2", "172.30.0.3"],
                ),
                NetCleanup {
                    taps: vec!["bgt-deadbeef".into()],
                    nat_guests: vec![ip("172.30.0.3")],
                    policy_guests: vec![ip("172.30.0.3")],
                },
            ),
            // Rules without a tap, a tap without rules.
            (
                listing(&[], &["172.30.0.9"]),
                NetCleanup {
                    taps: vec![],
                    nat_guests: vec![ip("172.30.0.9")],
                    policy_guests: vec![ip("172.30.0.9")],
                },
            ),
            (
                listing(&["bgt-11111111"], &[]),
                NetCleanup {
                    taps: vec!["bgt-11111111".into()],
                    nat_guests: vec![],
                    policy_guests: vec![],
                },
            ),
        ];
        for (host, expected) in cases {
            assert_eq!(plan_cleanup(&host, &owners), expected, "{host:?}");
        }
        // Nothing runs: everything goes.
        let everything = listing(&["bgt-aaaaaaaa"], &["172.30.0.2"]);
        assert_eq!(
            plan_cleanup(&everything, &NetOwners::default()),
            NetCleanup {
                taps: vec!["bgt-aaaaaaaa".into()],
                nat_guests: vec![ip("172.30.0.2")],
                policy_guests: vec![ip("172.30.0.2")],
            }
        );
    }
}
