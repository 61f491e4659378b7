//! Guest networking in the lifecycle: a booting VM gets its leased address, a tap (with
//! NAT when asked, and its network policy's rules first when it has one) through the
//! root helper, and a `.vm` name; a VM that stops, is killed,
//! exits or is deleted loses its tap, NAT rules and name but keeps its lease, so it comes
//! back on the same address. Without a reachable helper, VMs boot without a NIC.
//!
//! Once the agent answers, the guest's ssh host key is read through the agent in the
//! background and recorded in banger's known_hosts, so `vm ssh` (which waits for that
//! read) checks it strictly from the first use.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use banger_dns::StaticNames;
use banger_model::{VmId, VmRecord};
use banger_net::{AttachRequest, NetAttachment, NetError, Network};
use banger_proto::agent::ExecRequest;
use banger_proto::agent_client::AgentClient;

use crate::error::{VmError, chain};
use crate::service::{VmService, now};

/// How long the guest may take to produce its ssh host key after the agent is up
/// (Debian's `ssh-keygen -A` runs as a boot service).
const HOST_KEY_TIMEOUT: Duration = Duration::from_secs(90);

/// Prints the guest's ed25519 host public key: OpenSSH's file once the boot service has
/// written it, or dropbear's key (generated now if dropbear has not made it yet). Then
/// waits (up to 30 s) for something to listen on TCP port 22, so that once this is done
/// an ssh to the guest connects.
const HOST_KEY_SCRIPT: &str = r#"key=
i=0
while [ "$i" -lt 600 ]; do
  if [ -s /etc/ssh/ssh_host_ed25519_key.pub ]; then
    key=$(cat /etc/ssh/ssh_host_ed25519_key.pub); break
  fi
  if command -v dropbearkey >/dev/null 2>&1 && ! command -v sshd >/dev/null 2>&1; then
    f=/etc/dropbear/dropbear_ed25519_host_key
    mkdir -p /etc/dropbear
    [ -s "$f" ] || dropbearkey -t ed25519 -f "$f" >/dev/null 2>&1
    key=$(dropbearkey -y -f "$f") || exit 1; break
  fi
  i=$((i+1)); sleep 0.1 2>/dev/null || sleep 1
done
[ -n "$key" ] || { echo "no ssh host key appeared" >&2; exit 1; }
i=0
while [ "$i" -lt 300 ]; do
  grep -qE ':0016 [0-9A-F]+:[0-9A-F]+ 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null && break
  i=$((i+1)); sleep 0.1 2>/dev/null || sleep 1
done
printf '%s\n' "$key"
"#;

impl VmService {
    /// Turns guest networking on (`Some`) or off. The daemon calls this at startup once
    /// it knows whether the helper answers.
    pub fn set_network(&self, network: Option<Arc<Network>>) {
        *self.network.write().unwrap_or_else(|p| p.into_inner()) = network;
    }

    pub fn network(&self) -> Option<Arc<Network>> {
        self.network
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `<name>` -> address of every running VM with a network, for the DNS responder.
    pub fn names(&self) -> Arc<StaticNames> {
        Arc::clone(&self.names)
    }

    /// Leases the VM's address (its previous one when possible) and records it, under a
    /// lock so two booting VMs never pick the same one.
    fn lease_address(&self, network: &Network, vm: &VmRecord) -> Result<Ipv4Addr, VmError> {
        let _guard = self.lease_lock.lock().unwrap_or_else(|p| p.into_inner());
        let leases = self.with_store(|s| s.list_leases())?;
        let previous = leases
            .iter()
            .find(|lease| lease.vm_id == vm.id)
            .map(|lease| lease.ipv4);
        let taken: HashSet<Ipv4Addr> = leases
            .iter()
            .filter(|lease| lease.vm_id != vm.id)
            .map(|lease| lease.ipv4)
            .collect();
        let ip = network.lease(&taken, previous)?;
        let at = now();
        self.with_store(|s| s.set_lease(&vm.id, ip, &at))?;
        Ok(ip)
    }

    /// Sets up the VM's network for a boot. `None` when networking is off or the helper
    /// is unreachable (the VM then boots without a NIC).
    pub(crate) async fn attach_network(
        &self,
        vm: &VmRecord,
    ) -> Result<Option<NetAttachment>, VmError> {
        let Some(network) = self.network() else {
            return Ok(None);
        };
        let ip = self.lease_address(&network, vm)?;
        let taken = HashSet::new();
        let request = AttachRequest {
            vm_id: &vm.id,
            nat: crate::policy::effective_nat(vm),
            taken: &taken,
            previous: Some(ip),
            policy: vm.policy.as_ref(),
        };
        match network.attach(request).await {
            Ok(attachment) => {
                if let Some(policy) = &vm.policy {
                    self.policies.insert(attachment.guest_ip, policy.clone());
                }
                Ok(Some(attachment))
            }
            Err(NetError::Helper { source, .. } | NetError::HelperUnavailable(source))
                if source.is_unreachable() =>
            {
                tracing::warn!(
                    vm = %vm.name,
                    error = %chain(&source),
                    "banger-helper is unreachable; booting without a network"
                );
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Removes the VM's tap, NAT rules and name; keeps its lease. Best effort: a failure
    /// is logged, and the next detach (or the helper's idempotent ops, or the startup
    /// reconcile) finishes the job.
    pub(crate) async fn detach_network(&self, vm: &VmRecord) {
        if let Err(error) = self.try_detach_network(vm).await {
            tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot remove the VM's network");
        }
    }

    /// [`Self::detach_network`] that says whether it worked: a delete must not release
    /// the lease (by removing the row) while rules for its address may remain.
    pub(crate) async fn try_detach_network(&self, vm: &VmRecord) -> Result<(), VmError> {
        self.names.remove(vm.name.as_str());
        self.close_published(&vm.id);
        let Some(network) = self.network() else {
            return Ok(());
        };
        let Some(lease) = self.with_store(|s| s.get_lease(&vm.id))? else {
            return Ok(());
        };
        self.policies.remove(lease.ipv4);
        // Rules for the address go whether or not the VM asked for NAT: any left there
        // (by a crash or a failed detach) are no one's once its network is gone.
        Ok(network.detach(&vm.id, lease.ipv4, true).await?)
    }

    /// Publishes a running VM's name and, when banger installs its key in guests, records
    /// the guest's ssh host key in the background: the VM is ready for `vm exec` and
    /// `vm run` as soon as its agent answers, while a guest such as Debian may still be
    /// generating its host keys (seconds under TCG). `vm ssh` and `vm ports` wait for this through
    /// [`Self::ssh_settled`]. A key that cannot be read is logged: the VM works,
    /// only ssh will refuse the unknown key.
    ///
    /// A clone's key was made on the host (`known_key`): it is recorded at once, and
    /// readiness is sshd accepting a connection, tried from the host, so nothing runs
    /// in the guest beside the user's first command.
    pub(crate) fn announce(
        self: &Arc<Self>,
        vm: &VmRecord,
        address: Ipv4Addr,
        agent: Arc<AgentClient>,
        known_key: Option<String>,
    ) {
        self.names.insert(vm.name.as_str(), address);
        if self.cfg.authorized_keys.is_none() {
            return;
        }
        let (done, pending) = tokio::sync::watch::channel(false);
        self.host_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(vm.id.to_string(), pending);
        let config_dir = self.cfg.dirs.config.clone();
        let name = vm.name.to_string();
        tokio::spawn(async move {
            let key = match known_key {
                Some(key) => {
                    let key = banger_ssh::parse_host_public_key(&key).map_err(|e| chain(&e));
                    if key.is_ok() {
                        wait_for_sshd(address).await;
                    }
                    key
                }
                None => read_host_key(&agent).await,
            };
            match key {
                Ok(key) => {
                    let known = banger_ssh::KnownHosts::new(&config_dir);
                    let patterns = banger_ssh::host_patterns(&name, &address.to_string());
                    if let Err(error) = known.record(&patterns, &key) {
                        tracing::warn!(vm = %name, error = %chain(&error), "cannot record the host key");
                    }
                }
                Err(reason) => {
                    tracing::warn!(vm = %name, %reason, "cannot read the guest's ssh host key")
                }
            }
            let _ = done.send(true);
        });
    }

    /// Whether the ssh set-up of the VM's last boot is still under way (sshd not yet
    /// answering), so a caller about to wait can say so first.
    pub fn ssh_pending(&self, vm_id: &VmId) -> bool {
        self.host_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vm_id.as_str())
            .is_some_and(|pending| !*pending.borrow())
    }

    /// Returns once the ssh set-up started at the VM's last boot (if any) has finished:
    /// the host key is recorded and sshd listens, or the attempt gave up. `vm ssh` and
    /// `vm ports` right after `vm create` wait here instead of racing the guest's boot.
    pub async fn ssh_settled(&self, vm_id: &VmId) {
        let pending = self
            .host_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vm_id.as_str())
            .cloned();
        if let Some(mut pending) = pending {
            let _ = tokio::time::timeout(HOST_KEY_TIMEOUT, pending.wait_for(|done| *done)).await;
        }
    }

    /// Removes a deleted VM's host key from banger's known_hosts (a later VM may take the
    /// same name or address, with a key of its own) and its pending-read entry. A failure
    /// is logged, never fatal.
    pub(crate) fn forget_host_key(&self, vm: &VmRecord) {
        self.host_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(vm.id.as_str());
        if self.cfg.authorized_keys.is_none() {
            return;
        }
        let known = banger_ssh::KnownHosts::new(&self.cfg.dirs.config);
        let mut names = vec![banger_ssh::vm_host_name(vm.name.as_str())];
        names.extend(vm.runtime.address.clone());
        for name in names {
            if let Err(error) = known.remove(&name) {
                tracing::warn!(vm = %vm.name, error = %chain(&error), "cannot remove the host key");
            }
        }
    }

    /// Re-publishes the names of running VMs after a daemon restart.
    pub(crate) fn republish(&self, vm: &VmRecord) {
        if let Some(address) = vm
            .runtime
            .address
            .as_deref()
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
        {
            self.names.insert(vm.name.as_str(), address);
            if let Some(policy) = &vm.policy {
                self.policies.insert(address, policy.clone());
            }
        }
    }
}

/// Reads the guest's host public key line through the agent.
/// Returns once something accepts a TCP connection on the guest's port 22, or after
/// [`HOST_KEY_TIMEOUT`] (then `vm ssh` reports what ssh says). Tried every 50 ms; a
/// refused connection costs the guest nothing.
async fn wait_for_sshd(address: Ipv4Addr) {
    let started = std::time::Instant::now();
    while started.elapsed() < HOST_KEY_TIMEOUT {
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((address, 22)),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(%address, "sshd did not accept a connection within {}s", HOST_KEY_TIMEOUT.as_secs());
}

async fn read_host_key(agent: &AgentClient) -> Result<String, String> {
    let request = ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), HOST_KEY_SCRIPT.into()],
        ..Default::default()
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let run = agent.exec(request, |stream, bytes| match stream {
        banger_proto::agent::Stream::Stdout => stdout.extend_from_slice(bytes),
        banger_proto::agent::Stream::Stderr => stderr.extend_from_slice(bytes),
    });
    let code = tokio::time::timeout(HOST_KEY_TIMEOUT, run)
        .await
        .map_err(|_| format!("no host key within {}s", HOST_KEY_TIMEOUT.as_secs()))?
        .map_err(|e| chain(&e))?;
    if code != 0 {
        return Err(format!(
            "exit {code}: {}",
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    banger_ssh::parse_host_public_key(&String::from_utf8_lossy(&stdout)).map_err(|e| chain(&e))
}
