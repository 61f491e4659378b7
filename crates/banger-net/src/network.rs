//! network: the service the VM service calls to give a guest its network and take it
//! away. [`Network::attach`] leases an address (the caller passes the addresses already
//! taken and the VM's previous one; the daemon persists the result), then through the
//! helper ensures the bridge, creates the VM's tap, adds NAT if asked, and opens the tap
//! for an unprivileged QEMU; a guest without NAT first has any rules left for its address
//! removed, so it never inherits another guest's internet access. A failure part-way
//! undoes what this call did. [`Network::detach`] removes NAT and the tap; the address is
//! released by the daemon forgetting it. [`Network::listing`] is what the helper sees of
//! banger's on the host, for the daemon's startup reconcile.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use banger_model::{NetPolicy, VmId};
use banger_proto::helper::{Ipv4Subnet, NetworkListing, PolicyAddress, PolicyNet};

use crate::client::{HelperClient, HelperClientError};
use crate::names::{MacAddress, mac_address, tap_name};
use crate::pool::AddressPool;

/// How the daemon configured guest networking (must match the helper's configuration,
/// see [`Network::check_helper`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    /// Ask the helper for an opened tap descriptor (QEMU as an ordinary user, with
    /// `/dev/net/tun` mode 0600). Firecracker opens taps by name and does not need it.
    pub pass_tap_fd: bool,
}

/// What one attach asks for.
#[derive(Debug, Clone, Copy)]
pub struct AttachRequest<'a> {
    pub vm_id: &'a VmId,
    /// Give the guest outbound NAT.
    pub nat: bool,
    /// Addresses other VMs hold (from the daemon's store).
    pub taken: &'a HashSet<Ipv4Addr>,
    /// The VM's address from a previous start, kept when still free and in the pool.
    pub previous: Option<Ipv4Addr>,
    /// Confine the guest to this policy, installed before NAT so the guest is never
    /// reachable-out without it.
    pub policy: Option<&'a NetPolicy>,
}

/// A guest's network, ready for the VMM. The daemon persists `guest_ip`.
#[derive(Debug)]
pub struct NetAttachment {
    pub tap_name: String,
    /// The opened tap for QEMU's `-netdev tap,fd=N` (when `pass_tap_fd`).
    pub tap_fd: Option<OwnedFd>,
    pub mac: MacAddress,
    pub guest_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub prefix_len: u8,
}

impl NetAttachment {
    /// The kernel's `ip=` parameter for a static address on `eth0`
    /// (`ip=<client>::<gateway>:<netmask>:<hostname>:eth0:off`), which banger's initramfs
    /// applies.
    pub fn kernel_ip_param(&self, hostname: &str) -> String {
        format!(
            "ip={}::{}:{}:{hostname}:eth0:off",
            self.guest_ip, self.gateway, self.netmask
        )
    }
}

/// Why networking could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no free guest address left in {pool} (all {capacity} are leased)")]
    PoolExhausted { pool: Ipv4Subnet, capacity: usize },
    #[error(
        "banger-helper is configured for bridge {helper_bridge} and pool {helper_subnet}, but bangerd for {bridge} and {subnet}"
    )]
    ConfigMismatch {
        bridge: String,
        subnet: Ipv4Subnet,
        helper_bridge: String,
        helper_subnet: Ipv4Subnet,
    },
    #[error("cannot {step} for VM {vm}")]
    Helper {
        step: &'static str,
        vm: String,
        #[source]
        source: HelperClientError,
    },
    #[error("cannot reach banger-helper")]
    HelperUnavailable(#[source] HelperClientError),
    #[error(
        "the VM has a network policy, but banger's policy resolver or SNI proxy is not running (see the daemon log), so it cannot start"
    )]
    NoPolicyResolver,
    #[error("cannot remove {what}")]
    Cleanup {
        what: String,
        #[source]
        source: HelperClientError,
    },
}

/// The network service.
#[derive(Debug, Clone)]
pub struct Network {
    config: NetworkConfig,
    pool: AddressPool,
    helper: HelperClient,
    /// Where the policy resolver listens on the gateway, once the daemon bound it.
    policy_resolver_port: Option<u16>,
    /// Where the SNI proxy listens on the gateway, once the daemon bound it.
    sni_proxy_port: Option<u16>,
}

impl Network {
    pub fn new(config: NetworkConfig, helper: HelperClient) -> Network {
        Network {
            pool: AddressPool::new(config.subnet),
            config,
            helper,
            policy_resolver_port: None,
            sni_proxy_port: None,
        }
    }

    /// Records where the SNI proxy listens; without it, a VM with a policy fails to
    /// start (its port-443 connections could not be checked).
    pub fn with_sni_proxy(mut self, port: u16) -> Network {
        self.sni_proxy_port = Some(port);
        self
    }

    /// Records where the policy resolver listens; without it, a VM with a policy fails
    /// to start (fail closed).
    pub fn with_policy_resolver(mut self, port: u16) -> Network {
        self.policy_resolver_port = Some(port);
        self
    }

    pub fn policy_resolver_port(&self) -> Option<u16> {
        self.policy_resolver_port
    }

    pub fn pool(&self) -> &AddressPool {
        &self.pool
    }

    pub fn helper(&self) -> &HelperClient {
        &self.helper
    }

    /// Checks the helper answers, speaks our protocol and manages the same bridge and
    /// pool; run at daemon startup (and by `doctor`).
    pub async fn check_helper(&self) -> Result<(), NetError> {
        let info = self
            .helper
            .hello()
            .await
            .map_err(NetError::HelperUnavailable)?;
        if info.bridge != self.config.bridge || info.subnet != self.config.subnet {
            return Err(NetError::ConfigMismatch {
                bridge: self.config.bridge.clone(),
                subnet: self.config.subnet,
                helper_bridge: info.bridge,
                helper_subnet: info.subnet,
            });
        }
        Ok(())
    }

    /// The address for a VM: its previous one when still free and in the pool, else the
    /// lowest free one.
    pub fn lease(
        &self,
        taken: &HashSet<Ipv4Addr>,
        previous: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetError> {
        if let Some(ip) = previous
            && self.pool.is_leasable(ip)
            && !taken.contains(&ip)
        {
            return Ok(ip);
        }
        self.pool.lease(taken).ok_or(NetError::PoolExhausted {
            pool: self.config.subnet,
            capacity: self.pool.capacity(),
        })
    }

    /// Leases an address and sets up the VM's tap (and NAT) through the helper.
    pub async fn attach(&self, request: AttachRequest<'_>) -> Result<NetAttachment, NetError> {
        let guest_ip = self.lease(request.taken, request.previous)?;
        let vm = request.vm_id.to_string();
        let tap = tap_name(request.vm_id);
        let fail = |step, source| NetError::Helper {
            step,
            vm: vm.clone(),
            source,
        };

        self.helper
            .ensure_bridge()
            .await
            .map_err(|e| fail("create the bridge", e))?;
        self.helper
            .create_tap(&tap)
            .await
            .map_err(|e| fail("create the tap", e))?;
        if let Some(policy) = request.policy
            && let Err(error) = self
                .apply_policy(request.vm_id, guest_ip, policy, false)
                .await
        {
            let _ = self.helper.remove_policy(guest_ip).await;
            self.undo(&tap, None).await;
            return Err(error);
        }
        if request.nat {
            if let Err(error) = self.helper.add_nat(guest_ip).await {
                self.undo(&tap, None).await;
                return Err(fail("add NAT", error));
            }
        } else if let Err(error) = self.helper.remove_nat(guest_ip).await {
            // A guest without NAT must never inherit rules left for its address (by a
            // daemon that crashed, or a detach that failed): they would give it the
            // internet. Removing none is cheap; failing to look is a failed attach.
            self.undo(&tap, None).await;
            return Err(fail("clear NAT rules left for its address", error));
        }
        let tap_fd = if self.config.pass_tap_fd {
            match self.helper.open_tap(&tap).await {
                Ok(fd) => Some(fd),
                Err(error) => {
                    self.undo(&tap, request.nat.then_some(guest_ip)).await;
                    return Err(fail("open the tap", error));
                }
            }
        } else {
            None
        };
        Ok(NetAttachment {
            tap_name: tap,
            tap_fd,
            mac: mac_address(request.vm_id),
            guest_ip,
            gateway: self.pool.gateway(),
            netmask: self.pool.netmask(),
            prefix_len: self.config.subnet.prefix_len(),
        })
    }

    /// banger's taps and the guests its NAT rules name, as the helper sees the host.
    pub async fn listing(&self) -> Result<NetworkListing, NetError> {
        self.helper
            .list_network(&self.config.subnet)
            .await
            .map_err(NetError::HelperUnavailable)
    }

    /// A tap with no address, lease or NAT, named after `owner` (a snapshot id): for a
    /// VMM that loads a saved guest only to save it again, whose NIC needs a real tap
    /// (the saved virtio-net state requires the tap's virtio header) but never carries
    /// traffic. Removed with [`Self::remove_tap`]; one a killed daemon left behind is
    /// reconciled like any tap no VM owns.
    pub async fn scratch_tap(
        &self,
        owner: &VmId,
    ) -> Result<(String, Option<std::os::fd::OwnedFd>), NetError> {
        let tap = tap_name(owner);
        let fail = |step, source| NetError::Helper {
            step,
            vm: owner.to_string(),
            source,
        };
        self.helper
            .ensure_bridge()
            .await
            .map_err(|e| fail("create the bridge", e))?;
        self.helper
            .create_tap(&tap)
            .await
            .map_err(|e| fail("create the tap", e))?;
        if !self.config.pass_tap_fd {
            return Ok((tap, None));
        }
        match self.helper.open_tap(&tap).await {
            Ok(fd) => Ok((tap, Some(fd))),
            Err(error) => {
                self.undo(&tap, None).await;
                Err(fail("open the tap", error))
            }
        }
    }

    /// Removes one tap left on the host (the daemon found no VM owning it).
    pub async fn remove_tap(&self, tap: &str) -> Result<(), NetError> {
        self.helper
            .delete_tap(tap)
            .await
            .map_err(cleanup(format!("tap {tap}")))
    }

    /// Removes the NAT rules left for one guest address (no VM owns them).
    pub async fn remove_nat_rules(&self, guest_ip: Ipv4Addr) -> Result<(), NetError> {
        self.helper
            .remove_nat(guest_ip)
            .await
            .map_err(cleanup(format!("the NAT rules of {guest_ip}")))
    }

    /// Best-effort rollback of a failed attach; the original error is what the caller
    /// reports, and `detach` later retries anything left.
    async fn undo(&self, tap: &str, nat: Option<Ipv4Addr>) {
        if let Some(ip) = nat {
            let _ = self.helper.remove_nat(ip).await;
            let _ = self.helper.remove_policy(ip).await;
        }
        let _ = self.helper.delete_tap(tap).await;
    }

    /// Installs (or replaces) the guest's policy rules. `keep_learned` keeps the
    /// addresses its resolver answers allowed so far (the same policy, re-applied).
    pub async fn apply_policy(
        &self,
        vm_id: &VmId,
        guest_ip: Ipv4Addr,
        policy: &NetPolicy,
        keep_learned: bool,
    ) -> Result<(), NetError> {
        let port = self
            .policy_resolver_port
            .ok_or(NetError::NoPolicyResolver)?;
        let sni_port = self.sni_proxy_port.ok_or(NetError::NoPolicyResolver)?;
        let nets = policy
            .networks()
            .into_iter()
            .map(|net| PolicyNet {
                addr: net.addr,
                prefix_len: net.prefix_len,
                port: net.port,
            })
            .collect();
        self.helper
            .set_policy(
                guest_ip,
                &tap_name(vm_id),
                port,
                Some(sni_port),
                nets,
                keep_learned,
            )
            .await
            .map_err(helper_step("install the network policy", vm_id))
    }

    /// Removes the policy rules of one guest address (none is fine).
    pub async fn remove_policy(&self, guest_ip: Ipv4Addr) -> Result<(), NetError> {
        self.helper
            .remove_policy(guest_ip)
            .await
            .map_err(cleanup(format!("the policy rules of {guest_ip}")))
    }

    /// Allows addresses the policy resolver answered for a guest.
    pub async fn allow_addresses(
        &self,
        guest_ip: Ipv4Addr,
        entries: Vec<PolicyAddress>,
    ) -> Result<(), HelperClientError> {
        self.helper.add_policy_addresses(guest_ip, entries).await
    }

    /// Packets a guest's policy dropped so far.
    pub async fn policy_drops(
        &self,
        guest_ip: Ipv4Addr,
    ) -> Result<(u64, Vec<banger_proto::helper::PolicyDenied>), HelperClientError> {
        self.helper.policy_counters(guest_ip).await
    }

    /// Removes the VM's NAT rules (when `nat`), its policy rules and its tap. Every step
    /// is attempted; the first failure is returned. The bridge stays for other VMs.
    pub async fn detach(
        &self,
        vm_id: &VmId,
        guest_ip: Ipv4Addr,
        nat: bool,
    ) -> Result<(), NetError> {
        let nat_result = if nat {
            self.helper
                .remove_nat(guest_ip)
                .await
                .map_err(helper_step("remove NAT", vm_id))
        } else {
            Ok(())
        };
        let policy_result = self
            .helper
            .remove_policy(guest_ip)
            .await
            .map_err(helper_step("remove the network policy", vm_id));
        let tap_result = self
            .helper
            .delete_tap(&tap_name(vm_id))
            .await
            .map_err(helper_step("delete the tap", vm_id));
        nat_result.and(policy_result).and(tap_result)
    }
}

/// The error of one helper step on behalf of a VM.
fn helper_step(step: &'static str, vm: &VmId) -> impl FnOnce(HelperClientError) -> NetError {
    let vm = vm.to_string();
    move |source| NetError::Helper { step, vm, source }
}

/// The error of removing something no VM owns any more.
fn cleanup(what: String) -> impl FnOnce(HelperClientError) -> NetError {
    move |source| NetError::Cleanup { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHelper;
    use banger_proto::helper::HelperError;
    use std::sync::Arc;

    fn setup(pass_tap_fd: bool) -> (Network, Arc<FakeHelper>) {
        let subnet: Ipv4Subnet = "172.30.0.0/24".parse().unwrap();
        let fake = Arc::new(FakeHelper::new("banger0", subnet));
        let network = Network::new(
            NetworkConfig {
                bridge: "banger0".into(),
                subnet,
                pass_tap_fd,
            },
            HelperClient::new(fake.clone()),
        );
        (network, fake)
    }

    fn vm() -> VmId {
        VmId::parse("0123456789abcdef").unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn leasing_keeps_a_previous_address_when_it_can() {
        let (network, _) = setup(false);
        let taken: HashSet<Ipv4Addr> = [ip("172.30.0.2"), ip("172.30.0.3")].into();
        let cases: &[(Option<&str>, &str)] = &[
            (None, "172.30.0.4"),
            (Some("172.30.0.9"), "172.30.0.9"),
            (Some("172.30.0.2"), "172.30.0.4"), // someone else has it now
            (Some("10.0.0.9"), "172.30.0.4"),   // the pool changed
            (Some("172.30.0.1"), "172.30.0.4"), // never the gateway
        ];
        for (previous, expected) in cases {
            let got = network.lease(&taken, previous.map(ip)).unwrap();
            assert_eq!(got, ip(expected), "{previous:?}");
        }
    }

    #[test]
    fn an_exhausted_pool_is_an_error() {
        let (network, _) = setup(false);
        let taken: HashSet<Ipv4Addr> = network.pool().subnet().guest_addresses().collect();
        let error = network.lease(&taken, None).unwrap_err();
        assert!(
            matches!(error, NetError::PoolExhausted { capacity: 253, .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn attach_and_detach() {
        let (network, fake) = setup(true);
        let taken = HashSet::from([ip("172.30.0.2")]);
        let attachment = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: true,
                taken: &taken,
                previous: None,
                policy: None,
            })
            .await
            .unwrap();
        assert_eq!(attachment.tap_name, "bgt-01234567");
        assert_eq!(attachment.guest_ip, ip("172.30.0.3"));
        assert_eq!(attachment.gateway, ip("172.30.0.1"));
        assert_eq!(attachment.netmask, ip("255.255.255.0"));
        assert_eq!(attachment.mac.to_string(), "52:54:00:ee:ab:45");
        assert!(attachment.tap_fd.is_some());
        assert_eq!(
            attachment.kernel_ip_param("web"),
            "ip=172.30.0.3::172.30.0.1:255.255.255.0:web:eth0:off"
        );
        let state = fake.state();
        assert_eq!(
            state.log,
            ["ensure_bridge", "create_tap", "add_nat", "open_tap"]
        );
        assert!(state.taps.contains("bgt-01234567"));
        assert!(state.nat.contains(&ip("172.30.0.3")));

        network
            .detach(&vm(), attachment.guest_ip, true)
            .await
            .unwrap();
        let state = fake.state();
        assert!(state.taps.is_empty());
        assert!(state.nat.is_empty());
        assert!(state.bridge_up, "the bridge stays for other VMs");
    }

    #[tokio::test]
    async fn without_nat_or_fd_passing_those_steps_are_skipped() {
        let (network, fake) = setup(false);
        let attachment = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: false,
                taken: &HashSet::new(),
                previous: None,
                policy: None,
            })
            .await
            .unwrap();
        assert!(attachment.tap_fd.is_none());
        assert_eq!(
            fake.state().log,
            ["ensure_bridge", "create_tap", "remove_nat"]
        );
        network
            .detach(&vm(), attachment.guest_ip, false)
            .await
            .unwrap();
        assert_eq!(fake.state().log.last(), Some(&"delete_tap"));
        assert_eq!(
            fake.state()
                .log
                .iter()
                .filter(|op| **op == "remove_nat")
                .count(),
            1,
            "only the attach's clearing; a guest without NAT has none to remove"
        );
    }

    /// The reproduction at the service level: rules left for an address by a
    /// crashed daemon are gone before a guest without NAT gets that address.
    #[tokio::test]
    async fn a_guest_without_nat_never_inherits_rules_left_for_its_address() {
        let (network, fake) = setup(false);
        fake.plant(&[], &[ip("172.30.0.2")]);
        let attachment = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: false,
                taken: &HashSet::new(),
                previous: None,
                policy: None,
            })
            .await
            .unwrap();
        assert_eq!(attachment.guest_ip, ip("172.30.0.2"));
        assert!(fake.state().nat.is_empty(), "{:?}", fake.state());

        // Failing to clear them fails the attach, and leaves no tap.
        let (network, fake) = setup(false);
        fake.refuse(
            "remove_nat",
            HelperError::Failed {
                op: "remove_nat".into(),
                message: "nft is wedged".into(),
            },
        );
        let error = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: false,
                taken: &HashSet::new(),
                previous: None,
                policy: None,
            })
            .await
            .unwrap_err();
        assert!(error.to_string().contains("clear NAT rules"), "{error}");
        assert!(fake.state().taps.is_empty());
    }

    #[tokio::test]
    async fn listing_shows_what_is_planted() {
        let (network, fake) = setup(false);
        fake.plant(&["bgt-deadbeef"], &[ip("172.30.0.7")]);
        let listing = network.listing().await.unwrap();
        assert_eq!(listing.taps, ["bgt-deadbeef"]);
        assert_eq!(listing.nat_guests, [ip("172.30.0.7")]);
        network.remove_tap("bgt-deadbeef").await.unwrap();
        network.remove_nat_rules(ip("172.30.0.7")).await.unwrap();
        assert_eq!(network.listing().await.unwrap(), NetworkListing::default());
    }

    #[tokio::test]
    async fn a_failed_step_rolls_back() {
        let (network, fake) = setup(true);
        fake.refuse(
            "open_tap",
            HelperError::Failed {
                op: "open_tap".into(),
                message: "boom".into(),
            },
        );
        let error = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: true,
                taken: &HashSet::new(),
                previous: None,
                policy: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot open the tap for VM 0123456789abcdef"
        );
        let state = fake.state();
        assert!(state.taps.is_empty(), "{state:?}");
        assert!(state.nat.is_empty(), "{state:?}");
        assert_eq!(
            state.log,
            [
                "ensure_bridge",
                "create_tap",
                "add_nat",
                "open_tap",
                "remove_nat",
                "remove_policy",
                "delete_tap"
            ]
        );
    }

    #[tokio::test]
    async fn a_policy_is_installed_before_nat_and_fails_closed() {
        let policy = NetPolicy::parse(&["10.0.0.0/8:22", "example.com"]).unwrap();
        let (network, fake) = setup(false);
        // No resolver: the VM does not get a network (and so does not start).
        let error = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: true,
                taken: &HashSet::new(),
                previous: None,
                policy: Some(&policy),
            })
            .await
            .unwrap_err();
        assert!(matches!(error, NetError::NoPolicyResolver), "{error}");
        let state = fake.state();
        assert!(state.taps.is_empty() && state.nat.is_empty(), "{state:?}");
        assert!(state.policies.is_empty(), "{state:?}");

        let (network, fake) = setup(false);
        let network = network.with_policy_resolver(42070).with_sni_proxy(42071);
        let attachment = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: true,
                taken: &HashSet::new(),
                previous: None,
                policy: Some(&policy),
            })
            .await
            .unwrap();
        let state = fake.state();
        assert_eq!(
            state.log,
            ["ensure_bridge", "create_tap", "set_policy", "add_nat"]
        );
        let nets = &state.policies[&attachment.guest_ip];
        assert_eq!(nets.len(), 1, "only the literal network: {nets:?}");
        assert_eq!(nets[0].port, Some(22));

        // A refused policy leaves nothing behind.
        let (network, fake) = setup(false);
        let network = network.with_policy_resolver(42070).with_sni_proxy(42071);
        fake.refuse(
            "set_policy",
            HelperError::Failed {
                op: "set_policy".into(),
                message: "nft is wedged".into(),
            },
        );
        let error = network
            .attach(AttachRequest {
                vm_id: &vm(),
                nat: true,
                taken: &HashSet::new(),
                previous: None,
                policy: Some(&policy),
            })
            .await
            .unwrap_err();
        assert!(error.to_string().contains("network policy"), "{error}");
        let state = fake.state();
        assert!(state.taps.is_empty() && state.nat.is_empty(), "{state:?}");
        assert!(!state.log.contains(&"add_nat"), "{:?}", state.log);

        network
            .detach(&vm(), attachment.guest_ip, true)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn helper_configuration_must_match() {
        let (network, _) = setup(false);
        network.check_helper().await.unwrap();

        let fake = Arc::new(FakeHelper::new("banger0", "10.5.0.0/16".parse().unwrap()));
        let mismatched = Network::new(network.config.clone(), HelperClient::new(fake));
        let error = mismatched.check_helper().await.unwrap_err();
        assert!(matches!(error, NetError::ConfigMismatch { .. }), "{error}");
    }
}
