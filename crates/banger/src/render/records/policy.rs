//! The `--json` records of a VM's network policy (`vm policy show`, `set`, `vm logs
//! --policy`) and of `vm policy check`.

use banger_api::methods::{DeniedDestination, PolicyCheck, PolicyInfo, RefusedName};
use serde::Serialize;

/// A VM's network policy and, while it runs, what the policy stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyJson {
    pub vm: String,
    /// The allow rules (`[]`: deny all); `null`: no policy.
    pub policy: Option<Vec<String>>,
    pub nat: bool,
    pub running: bool,
    /// `null` unless a policy is installed in a running VM.
    pub dropped_packets: Option<u64>,
    /// `null` while the VM is not running.
    pub denied: Option<Vec<DeniedJson>>,
    /// `null` while the VM is not running.
    pub refused_names: Option<Vec<RefusedJson>>,
}

/// A destination the policy dropped packets to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeniedJson {
    pub address: String,
    pub protocol: String,
    pub port: Option<u16>,
    pub packets: u64,
}

/// A name the policy resolver refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedJson {
    pub name: String,
    pub count: u64,
}

impl From<&PolicyInfo> for PolicyJson {
    fn from(p: &PolicyInfo) -> PolicyJson {
        PolicyJson {
            vm: p.vm.clone(),
            policy: p.policy.clone(),
            nat: p.nat,
            running: p.running,
            dropped_packets: p.dropped_packets,
            denied: p.running.then(|| super::all(&p.denied)),
            refused_names: p.running.then(|| super::all(&p.refused_names)),
        }
    }
}

impl From<&DeniedDestination> for DeniedJson {
    fn from(d: &DeniedDestination) -> DeniedJson {
        DeniedJson {
            address: d.address.clone(),
            protocol: d.protocol.clone(),
            port: d.port,
            packets: d.packets,
        }
    }
}

impl From<&RefusedName> for RefusedJson {
    fn from(r: &RefusedName) -> RefusedJson {
        RefusedJson {
            name: r.name.clone(),
            count: r.count,
        }
    }
}

/// Whether a destination would be allowed, by which rule, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyCheckJson {
    pub vm: String,
    pub destination: String,
    pub allowed: bool,
    /// The `--allow` rule that allows it; `null` when none does.
    pub rule: Option<String>,
    pub reason: String,
}

impl From<&PolicyCheck> for PolicyCheckJson {
    fn from(c: &PolicyCheck) -> PolicyCheckJson {
        PolicyCheckJson {
            vm: c.vm.clone(),
            destination: c.destination.clone(),
            allowed: c.allowed,
            rule: c.rule.clone(),
            reason: c.reason.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(running: bool) -> PolicyInfo {
        PolicyInfo {
            vm: "pol".into(),
            policy: Some(vec!["pypi.org:443".into()]),
            nat: true,
            running,
            dropped_packets: running.then_some(7),
            denied: if running {
                vec![DeniedDestination {
                    address: "1.1.1.1".into(),
                    protocol: "tcp".into(),
                    port: Some(443),
                    packets: 7,
                }]
            } else {
                Vec::new()
            },
            refused_names: if running {
                vec![RefusedName {
                    name: "example.com".into(),
                    count: 2,
                }]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn policy_of_a_running_vm() {
        insta::assert_json_snapshot!(PolicyJson::from(&sample(true)));
    }

    /// Not running: what the policy stopped is unknown, `null`, not `[]` or missing.
    #[test]
    fn policy_of_a_stopped_vm_has_every_key() {
        insta::assert_json_snapshot!(PolicyJson::from(&sample(false)));
    }

    pub(crate) fn check() -> PolicyCheck {
        PolicyCheck {
            vm: "pol".into(),
            destination: "example.com:443".into(),
            allowed: false,
            rule: None,
            reason: "no --allow rule matches".into(),
        }
    }

    #[test]
    fn a_refused_check_has_a_null_rule() {
        insta::assert_json_snapshot!(PolicyCheckJson::from(&check()));
    }
}
