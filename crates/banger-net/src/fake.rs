//! fake: an in-memory helper for tests of the services that use the network (here and in
//! banger-vm). It records every request, keeps the taps and NAT rules it was asked for,
//! answers `open_tap` with a real descriptor (`/dev/null`), lists what it holds, can be
//! given leftovers of a crash (`plant`), and can be told to refuse a
//! given operation, so rollback paths are testable.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use banger_proto::helper::{
    HELPER_PROTOCOL_VERSION, HelperError, HelperOutcome, HelperRequest, Ipv4Subnet, NetworkListing,
    PolicyAddress, PolicyNet,
};

use crate::client::{HelperAnswer, HelperClientError, HelperTransport};

/// What the fake helper holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FakeHelperState {
    pub bridge_up: bool,
    pub taps: BTreeSet<String>,
    pub nat: BTreeSet<Ipv4Addr>,
    /// Guests with a policy, and the networks it allows.
    pub policies: HashMap<Ipv4Addr, Vec<PolicyNet>>,
    /// Addresses added to each guest's learned sets.
    pub learned: HashMap<Ipv4Addr, Vec<PolicyAddress>>,
    /// Every request's wire name, in order.
    pub log: Vec<&'static str>,
}

/// A [`HelperTransport`] that acts on [`FakeHelperState`].
#[derive(Debug)]
pub struct FakeHelper {
    bridge: String,
    subnet: Ipv4Subnet,
    state: Mutex<FakeHelperState>,
    refusals: Mutex<HashMap<&'static str, HelperError>>,
}

impl FakeHelper {
    pub fn new(bridge: &str, subnet: Ipv4Subnet) -> FakeHelper {
        FakeHelper {
            bridge: bridge.to_owned(),
            subnet,
            state: Mutex::new(FakeHelperState::default()),
            refusals: Mutex::new(HashMap::new()),
        }
    }

    /// From now on, answer `op` (a wire name like `add_nat`) with `error`.
    pub fn refuse(&self, op: &'static str, error: HelperError) {
        lock(&self.refusals).insert(op, error);
    }

    pub fn state(&self) -> FakeHelperState {
        lock(&self.state).clone()
    }

    /// Puts taps and NAT rules in place as if a crashed daemon had left them.
    pub fn plant(&self, taps: &[&str], nat: &[Ipv4Addr]) {
        let mut state = lock(&self.state);
        state.taps.extend(taps.iter().map(|tap| (*tap).to_owned()));
        state.nat.extend(nat.iter().copied());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HelperTransport for FakeHelper {
    fn exchange(&self, request: &HelperRequest) -> Result<HelperAnswer, HelperClientError> {
        let op = request.op_name();
        let mut state = lock(&self.state);
        state.log.push(op);
        if let Some(error) = lock(&self.refusals).get(op) {
            return Err(HelperClientError::Refused {
                op,
                source: error.clone(),
            });
        }
        let done = Ok(HelperAnswer {
            outcome: HelperOutcome::Done,
            fd: None,
        });
        match request {
            HelperRequest::Hello => Ok(HelperAnswer {
                outcome: HelperOutcome::Hello {
                    version: HELPER_PROTOCOL_VERSION,
                    bridge: self.bridge.clone(),
                    subnet: self.subnet,
                    gateway: self.subnet.gateway(),
                },
                fd: None,
            }),
            HelperRequest::EnsureBridge => {
                state.bridge_up = true;
                done
            }
            HelperRequest::CreateTap { name } => {
                state.bridge_up = true;
                state.taps.insert(name.clone());
                done
            }
            HelperRequest::OpenTap { name } => {
                if !state.taps.contains(name) {
                    return Err(HelperClientError::Refused {
                        op,
                        source: HelperError::Failed {
                            op: op.to_owned(),
                            message: format!("no tap {name}; create it first"),
                        },
                    });
                }
                let fd = std::fs::File::open("/dev/null").map_err(HelperClientError::Io)?;
                Ok(HelperAnswer {
                    outcome: HelperOutcome::TapOpened { name: name.clone() },
                    fd: Some(fd.into()),
                })
            }
            HelperRequest::DeleteTap { name } => {
                state.taps.remove(name);
                done
            }
            HelperRequest::AddNat { guest_ip } => {
                state.nat.insert(*guest_ip);
                done
            }
            HelperRequest::RemoveNat { guest_ip } => {
                state.nat.remove(guest_ip);
                done
            }
            HelperRequest::ListNetwork => Ok(HelperAnswer {
                outcome: HelperOutcome::Network(
                    NetworkListing::new(
                        state.taps.iter().cloned(),
                        state.nat.iter().copied(),
                        &self.subnet,
                    )
                    .with_policy_guests(state.policies.keys().copied(), &self.subnet),
                ),
                fd: None,
            }),
            HelperRequest::SetupDns { .. } => done,
            HelperRequest::SetPolicy {
                guest_ip,
                nets,
                keep_learned,
                ..
            } => {
                state.policies.insert(*guest_ip, nets.clone());
                if !keep_learned {
                    state.learned.remove(guest_ip);
                }
                done
            }
            HelperRequest::RemovePolicy { guest_ip } => {
                state.policies.remove(guest_ip);
                state.learned.remove(guest_ip);
                done
            }
            HelperRequest::AddPolicyAddresses { guest_ip, entries } => {
                if !state.policies.contains_key(guest_ip) {
                    return Err(HelperClientError::Refused {
                        op,
                        source: HelperError::Failed {
                            op: op.to_owned(),
                            message: format!("no policy for {guest_ip}"),
                        },
                    });
                }
                state
                    .learned
                    .entry(*guest_ip)
                    .or_default()
                    .extend(entries.iter().copied());
                done
            }
            HelperRequest::PolicyCounters { .. } => Ok(HelperAnswer {
                outcome: HelperOutcome::PolicyCounters {
                    dropped_packets: 0,
                    denied: Vec::new(),
                },
                fd: None,
            }),
        }
    }
}
