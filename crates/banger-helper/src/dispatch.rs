//! dispatch: the one `match` over the closed set of operations. Every arm validates its
//! arguments first (pure checks from `validate`), then takes the helper's lock (so two
//! connections never interleave changes to links or rules) and acts. The result is the
//! typed outcome plus, for `open_tap`, the descriptor to send with the reply.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use banger_proto::helper::{HELPER_PROTOCOL_VERSION, HelperError, HelperOutcome, HelperRequest};

use crate::config::{HelperConfig, NatBackend};
use crate::dns;
use crate::link::{self, failed};
use crate::listing;
use crate::nat::{self, NatTarget};
use crate::policy::{self, PolicyTarget};
use crate::tool::ToolRunner;
use crate::validate::{self, check_uplink_name};

/// A successful operation's reply, and the descriptor that goes with it.
#[derive(Debug)]
pub struct Answer {
    pub outcome: HelperOutcome,
    pub fd: Option<OwnedFd>,
}

impl Answer {
    fn done() -> Answer {
        Answer {
            outcome: HelperOutcome::Done,
            fd: None,
        }
    }
}

/// The helper's operations over one configuration and one tool runner.
#[derive(Debug)]
pub struct Helper {
    config: HelperConfig,
    tools: Arc<dyn ToolRunner>,
    /// Serialises every operation that reads-then-changes host state.
    lock: Mutex<()>,
}

impl Helper {
    pub fn new(config: HelperConfig, tools: Arc<dyn ToolRunner>) -> Helper {
        Helper {
            config,
            tools,
            lock: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &HelperConfig {
        &self.config
    }

    fn locked(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere leaves nothing inconsistent to
        // protect, so a poisoned lock is simply taken.
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Performs one request.
    pub fn handle(&self, request: HelperRequest) -> Result<Answer, HelperError> {
        let tools = self.tools.as_ref();
        let config = &self.config;
        let op = request.op_name();
        if config.fail_ops.iter().any(|o| o == op) {
            return Err(HelperError::Failed {
                op: op.to_owned(),
                message: "failed on purpose (--fail-op: a test's fault injection)".into(),
            });
        }
        match request {
            HelperRequest::Hello => Ok(Answer {
                outcome: HelperOutcome::Hello {
                    version: HELPER_PROTOCOL_VERSION,
                    bridge: config.bridge.clone(),
                    subnet: config.subnet,
                    gateway: config.subnet.gateway(),
                },
                fd: None,
            }),
            HelperRequest::EnsureBridge => {
                let _guard = self.locked();
                link::ensure_bridge(tools, &config.bridge, &config.subnet).map(|()| Answer::done())
            }
            HelperRequest::CreateTap { name } => {
                validate::tap_name(&name)?;
                let _guard = self.locked();
                link::create_tap(
                    tools,
                    &name,
                    config.owner_uid,
                    &config.bridge,
                    &config.subnet,
                )
                .map(|()| Answer::done())
            }
            HelperRequest::OpenTap { name } => {
                validate::tap_name(&name)?;
                let _guard = self.locked();
                let fd = link::open_tap(tools, &name)?;
                Ok(Answer {
                    outcome: HelperOutcome::TapOpened { name },
                    fd: Some(fd),
                })
            }
            HelperRequest::DeleteTap { name } => {
                validate::tap_name(&name)?;
                let _guard = self.locked();
                link::delete_tap(tools, &name).map(|()| Answer::done())
            }
            HelperRequest::AddNat { guest_ip } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                let _guard = self.locked();
                self.add_nat(guest_ip).map(|()| Answer::done())
            }
            HelperRequest::RemoveNat { guest_ip } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                let _guard = self.locked();
                self.remove_nat(guest_ip).map(|()| Answer::done())
            }
            HelperRequest::ListNetwork => {
                let _guard = self.locked();
                let listing = listing::list_network(
                    tools,
                    config.nat_backend,
                    &config.bridge,
                    &config.subnet,
                )?;
                Ok(Answer {
                    outcome: HelperOutcome::Network(listing),
                    fd: None,
                })
            }
            HelperRequest::SetupDns {
                bridge,
                server_ip,
                port,
            } => {
                validate::configured_bridge(&bridge, &config.bridge)?;
                validate::dns_server(&config.subnet, server_ip, port)?;
                let _guard = self.locked();
                dns::setup_dns(tools, &bridge, server_ip, port).map(|()| Answer::done())
            }
            HelperRequest::SetPolicy {
                guest_ip,
                tap,
                resolver_port,
                sni_port,
                nets,
                keep_learned,
            } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                validate::tap_name(&tap)?;
                validate::dns_server(&config.subnet, config.subnet.gateway(), resolver_port)?;
                if let Some(port) = sni_port {
                    validate::dns_server(&config.subnet, config.subnet.gateway(), port)?;
                }
                policy::check_nets(&nets)?;
                let target = PolicyTarget {
                    guest_ip,
                    tap: &tap,
                    gateway: config.subnet.gateway(),
                    resolver_port,
                    sni_port,
                    nets: &nets,
                    keep_learned,
                };
                let _guard = self.locked();
                policy::set_policy(tools, &target).map(|()| Answer::done())
            }
            HelperRequest::RemovePolicy { guest_ip } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                let _guard = self.locked();
                policy::remove_policy(tools, guest_ip).map(|()| Answer::done())
            }
            HelperRequest::AddPolicyAddresses { guest_ip, entries } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                policy::check_addresses(&config.subnet, &entries)?;
                let _guard = self.locked();
                policy::add_addresses(tools, guest_ip, &entries).map(|()| Answer::done())
            }
            HelperRequest::PolicyCounters { guest_ip } => {
                validate::guest_address(&config.subnet, guest_ip)?;
                let _guard = self.locked();
                let (dropped_packets, denied) = policy::dropped(tools, guest_ip)?;
                Ok(Answer {
                    outcome: HelperOutcome::PolicyCounters {
                        dropped_packets,
                        denied,
                    },
                    fd: None,
                })
            }
        }
    }

    fn uplink(&self) -> Result<String, HelperError> {
        let uplink = match &self.config.uplink {
            Some(uplink) => uplink.clone(),
            None => link::default_route_interface(self.tools.as_ref(), "add_nat")?,
        };
        // The default route's interface goes into rules; check it like the flag.
        check_uplink_name(&uplink)
            .map_err(|reason| failed("add_nat", format!("uplink {uplink:?} {reason}")))?;
        if uplink == self.config.bridge {
            return Err(failed(
                "add_nat",
                "the uplink cannot be banger's own bridge",
            ));
        }
        Ok(uplink)
    }

    fn add_nat(&self, guest_ip: Ipv4Addr) -> Result<(), HelperError> {
        let uplink = self.uplink()?;
        let target = NatTarget {
            bridge: &self.config.bridge,
            uplink: &uplink,
            guest_ip,
        };
        nat::enable_ip_forward(&self.config.host.proc_sys)?;
        let tools = self.tools.as_ref();
        match self.config.nat_backend {
            NatBackend::Nft => nat::add_nat_nft(tools, &target)?.map_err(|e| failed("add_nat", e)),
            NatBackend::Iptables => nat::add_nat_iptables(tools, &target),
            NatBackend::Auto => match nat::add_nat_nft(tools, &target)? {
                Ok(()) => Ok(()),
                Err(_nft_missing) => nat::add_nat_iptables(tools, &target),
            },
        }
    }

    fn remove_nat(&self, guest_ip: Ipv4Addr) -> Result<(), HelperError> {
        let tools = self.tools.as_ref();
        match self.config.nat_backend {
            NatBackend::Nft => {
                nat::remove_nat_nft(tools, guest_ip)?.map_err(|e| failed("remove_nat", e))
            }
            NatBackend::Iptables => nat::remove_nat_iptables(tools, guest_ip),
            NatBackend::Auto => match nat::remove_nat_nft(tools, guest_ip)? {
                Ok(()) => Ok(()),
                Err(_nft_missing) => nat::remove_nat_iptables(tools, guest_ip),
            },
        }
    }
}

#[cfg(test)]
#[path = "policy_matrix_tests.rs"]
mod policy_matrix;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPaths;
    use crate::testing::FakeTools;

    fn helper_with(tools: FakeTools, dir: &std::path::Path) -> (Helper, Arc<FakeTools>) {
        let proc_sys = dir.join("proc_sys");
        std::fs::create_dir_all(proc_sys.join("net/ipv4")).unwrap();
        std::fs::write(proc_sys.join("net/ipv4/ip_forward"), "0\n").unwrap();
        let config = HelperConfig {
            socket: dir.join("helper.sock"),
            owner_uid: 1000,
            bridge: "banger0".into(),
            subnet: "172.30.0.0/24".parse().unwrap(),
            uplink: None,
            nat_backend: NatBackend::Auto,
            host: HostPaths { proc_sys },
            fail_ops: Vec::new(),
        };
        let tools = Arc::new(tools);
        (Helper::new(config, tools.clone()), tools)
    }

    /// `--fail-op`: the named operation fails without running anything; others serve.
    #[test]
    fn a_failed_op_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut helper, tools) = helper_with(FakeTools::new(), dir.path());
        helper.config.fail_ops = vec!["set_policy".into()];
        let err = helper
            .handle(HelperRequest::SetPolicy {
                guest_ip: "172.30.0.5".parse().unwrap(),
                tap: "bgt-0123abcd".into(),
                resolver_port: 42070,
                sni_port: None,
                nets: Vec::new(),
                keep_learned: false,
            })
            .unwrap_err();
        assert!(
            matches!(&err, HelperError::Failed { op, .. } if op == "set_policy"),
            "{err}"
        );
        assert!(tools.commands().is_empty(), "{:?}", tools.commands());
        assert!(helper.handle(HelperRequest::Hello).is_ok());
    }

    /// Requests refused before anything runs: no command is executed for any of them.
    #[test]
    fn refusals_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let (helper, tools) = helper_with(FakeTools::new(), dir.path());
        let long_name = "bgt-0123456789abcdef".to_owned();
        let cases: Vec<(HelperRequest, &str)> = vec![
            (
                HelperRequest::CreateTap {
                    name: "bgt-../../x".into(),
                },
                "invalid_name",
            ),
            (
                HelperRequest::CreateTap {
                    name: "bgt/evil".into(),
                },
                "invalid_name",
            ),
            (
                HelperRequest::OpenTap {
                    name: long_name.clone(),
                },
                "invalid_name",
            ),
            (
                HelperRequest::DeleteTap {
                    name: "eth0".into(),
                },
                "invalid_name",
            ),
            (
                HelperRequest::AddNat {
                    guest_ip: "10.0.0.5".parse().unwrap(),
                },
                "outside_pool",
            ),
            (
                HelperRequest::AddNat {
                    guest_ip: "172.30.0.1".parse().unwrap(),
                },
                "outside_pool",
            ),
            (
                HelperRequest::RemoveNat {
                    guest_ip: "172.30.0.255".parse().unwrap(),
                },
                "outside_pool",
            ),
            (
                HelperRequest::SetupDns {
                    bridge: "eth0".into(),
                    server_ip: "172.30.0.1".parse().unwrap(),
                    port: 53,
                },
                "invalid_name",
            ),
            (
                HelperRequest::SetupDns {
                    bridge: "banger0".into(),
                    server_ip: "8.8.8.8".parse().unwrap(),
                    port: 53,
                },
                "outside_pool",
            ),
        ];
        for (request, code) in cases {
            let shown = format!("{request:?}");
            let error = helper.handle(request).unwrap_err();
            let json = serde_json::to_value(&error).unwrap();
            assert_eq!(json["code"], code, "{shown}: {error}");
        }
        assert!(tools.commands().is_empty(), "{:?}", tools.commands());
    }

    #[test]
    fn hello_reports_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (helper, _tools) = helper_with(FakeTools::new(), dir.path());
        let answer = helper.handle(HelperRequest::Hello).unwrap();
        assert_eq!(
            answer.outcome,
            HelperOutcome::Hello {
                version: HELPER_PROTOCOL_VERSION,
                bridge: "banger0".into(),
                subnet: "172.30.0.0/24".parse().unwrap(),
                gateway: "172.30.0.1".parse().unwrap(),
            }
        );
    }

    #[test]
    fn add_nat_uses_the_default_route_and_falls_back_to_iptables() {
        let dir = tempfile::tempdir().unwrap();
        let tools = FakeTools::new()
            .reply(
                "ip -j route show default",
                r#"[{"dst":"default","dev":"wlp2s0"}]"#,
            )
            .without("nft");
        let (helper, tools) = helper_with(tools, dir.path());
        helper
            .handle(HelperRequest::AddNat {
                guest_ip: "172.30.0.9".parse().unwrap(),
            })
            .unwrap();
        let commands = tools.commands();
        assert_eq!(commands[0], "ip -j route show default");
        assert_eq!(commands[1], "nft -j list table ip banger");
        assert!(
            commands[2].starts_with("iptables -w -t nat -S POSTROUTING"),
            "{commands:?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| c.contains("-o wlp2s0") && c.contains("MASQUERADE")),
            "{commands:?}"
        );
        let forward =
            std::fs::read_to_string(dir.path().join("proc_sys/net/ipv4/ip_forward")).unwrap();
        assert_eq!(forward, "1\n");
    }

    #[test]
    fn a_hostile_default_route_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tools = FakeTools::new().reply(
            "ip -j route show default",
            r#"[{"dst":"default","dev":"x\" accept; #"}]"#,
        );
        let (helper, tools) = helper_with(tools, dir.path());
        let error = helper
            .handle(HelperRequest::AddNat {
                guest_ip: "172.30.0.9".parse().unwrap(),
            })
            .unwrap_err();
        assert!(matches!(error, HelperError::Failed { .. }), "{error:?}");
        assert!(!tools.commands().iter().any(|c| c.starts_with("nft")));
    }
}
