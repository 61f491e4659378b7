//! policy_server: banger's policy resolver, the UDP loop around [`crate::filter`]. The
//! daemon binds it on the bridge address; the helper's rules redirect a policy guest's
//! DNS (UDP 53 to the gateway) here and drop any other DNS. For each query, by the
//! source address: no policy for that guest, or a name the policy does not allow:
//! REFUSED, and nothing leaves the host. An allowed name: the query goes to the host's
//! upstream servers (in order, [`ResolverConfig::timeout`] each), the A records of the
//! answer are handed to the [`Learner`] (which adds them to the guest's allowed set,
//! with a timeout from their TTL) and only once that succeeded does the guest get the
//! answer. Any failure (upstreams silent, a reply that does not match, the learner
//! failing) answers SERVFAIL: the guest never holds an address it may not reach.
//!
//! Each query is its own task (at most [`MAX_IN_FLIGHT`] at once; more are dropped), and
//! each upstream exchange uses a fresh socket on a random port.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use banger_model::{NetPolicy, Ports};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::filter::{
    Decision, Learned, Rcode, Unreadable, answer_addresses, decide, feeds_addresses, header_reply,
    learnable, read_query, reply_without_records,
};

/// Queries handled at once; more are dropped (the guest retries).
pub const MAX_IN_FLIGHT: usize = 256;
/// An allowed address stays allowed at least this long after its answer, whatever the
/// TTL (a TTL of 0 must still let the connection that asked for it start).
pub const MIN_ALLOW_SECS: u32 = 30;
/// And at most this long (the helper refuses longer).
pub const MAX_ALLOW_SECS: u32 = 86_400;

const RECV_BUF_LEN: usize = 4096;

/// Which policy a guest address is under.
pub trait PolicyLookup: Send + Sync {
    fn policy_of(&self, guest: Ipv4Addr) -> Option<Arc<NetPolicy>>;

    /// Whether this entry was allowed recently enough that its element outlives half
    /// of the new timeout (the helper is then not asked again).
    fn is_fresh(&self, _guest: Ipv4Addr, _entry: &AllowEntry) -> bool {
        false
    }

    /// Notes entries the learner allowed.
    fn record_learned(&self, _guest: Ipv4Addr, _entries: &[AllowEntry]) {}

    /// Notes a name refused for `guest` (for `vm logs --policy`).
    fn record_refused(&self, _guest: Ipv4Addr, _name: &str) {}
}

/// Refused names remembered per guest (each with its count); later new names are
/// counted under [`OTHER_REFUSED`].
pub const MAX_REFUSED_NAMES: usize = 256;
/// The entry that counts refused names past [`MAX_REFUSED_NAMES`].
pub const OTHER_REFUSED: &str = "(other names)";

/// The policies of running guests by address, kept by the daemon as VMs start, stop and
/// change policy, and the addresses the resolver allowed for each since its policy was
/// last installed (with when they expire): so a repeated answer does not ask the helper
/// again while its element has long to live, and the SNI proxy can tell an answered
/// address from any other. Installing a policy forgets them (the helper flushed them).
#[derive(Debug, Default)]
pub struct PolicyTable {
    by_guest: std::sync::RwLock<std::collections::HashMap<Ipv4Addr, GuestPolicy>>,
}

#[derive(Debug)]
struct GuestPolicy {
    policy: Arc<NetPolicy>,
    learned: std::sync::Mutex<std::collections::HashMap<(Ipv4Addr, Option<u16>), Instant>>,
    /// Names refused since the policy was installed, and how often.
    refused: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl PolicyTable {
    pub fn insert(&self, guest: Ipv4Addr, policy: NetPolicy) {
        self.write().insert(
            guest,
            GuestPolicy {
                policy: Arc::new(policy),
                learned: Default::default(),
                refused: Default::default(),
            },
        );
    }

    pub fn remove(&self, guest: Ipv4Addr) {
        self.write().remove(&guest);
    }

    /// Whether `ip` was allowed for `guest` on `port` (or on every port) and has not
    /// expired.
    pub fn is_learned(&self, guest: Ipv4Addr, ip: Ipv4Addr, port: u16) -> bool {
        let now = Instant::now();
        self.read().get(&guest).is_some_and(|g| {
            let learned = g.learned.lock().unwrap_or_else(PoisonError::into_inner);
            [(ip, None), (ip, Some(port))]
                .iter()
                .any(|key| learned.get(key).is_some_and(|until| *until > now))
        })
    }

    /// The names the resolver refused `guest` since its policy was installed, with how
    /// often, most first.
    pub fn refused(&self, guest: Ipv4Addr) -> Vec<(String, u64)> {
        let mut names: Vec<(String, u64)> = self
            .read()
            .get(&guest)
            .map(|g| {
                let refused = g.refused.lock().unwrap_or_else(PoisonError::into_inner);
                refused.iter().map(|(n, c)| (n.clone(), *c)).collect()
            })
            .unwrap_or_default();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        names
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<Ipv4Addr, GuestPolicy>> {
        self.by_guest.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Ipv4Addr, GuestPolicy>> {
        self.by_guest
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl PolicyLookup for PolicyTable {
    fn policy_of(&self, guest: Ipv4Addr) -> Option<Arc<NetPolicy>> {
        self.read().get(&guest).map(|g| Arc::clone(&g.policy))
    }

    fn record_refused(&self, guest: Ipv4Addr, name: &str) {
        if let Some(g) = self.read().get(&guest) {
            let mut refused = g.refused.lock().unwrap_or_else(PoisonError::into_inner);
            let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            let key = if refused.contains_key(&name) || refused.len() < MAX_REFUSED_NAMES {
                name
            } else {
                OTHER_REFUSED.to_string()
            };
            *refused.entry(key).or_default() += 1;
        }
    }

    fn is_fresh(&self, guest: Ipv4Addr, entry: &AllowEntry) -> bool {
        let half = Duration::from_secs(u64::from(entry.timeout_secs / 2));
        let wanted = Instant::now() + half;
        self.read().get(&guest).is_some_and(|g| {
            g.learned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&(entry.ip, entry.port))
                .is_some_and(|until| *until >= wanted)
        })
    }

    fn record_learned(&self, guest: Ipv4Addr, entries: &[AllowEntry]) {
        let now = Instant::now();
        if let Some(g) = self.read().get(&guest) {
            let mut learned = g.learned.lock().unwrap_or_else(PoisonError::into_inner);
            learned.retain(|_, until| *until > now);
            for entry in entries {
                let until = now + Duration::from_secs(u64::from(entry.timeout_secs));
                learned.insert((entry.ip, entry.port), until);
            }
        }
    }
}

/// One address to allow for a guest: on every port (`port: None`) or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowEntry {
    pub ip: Ipv4Addr,
    pub port: Option<u16>,
    pub timeout_secs: u32,
}

/// The future a [`Learner`] returns.
pub type LearnFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Makes answered addresses reachable for a guest (the daemon: the helper's
/// `add_policy_addresses`). Called before the guest sees the answer.
pub trait Learner: Send + Sync {
    fn learn(&self, guest: Ipv4Addr, entries: Vec<AllowEntry>) -> LearnFuture;
}

/// Where to forward and what may be learned.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub upstreams: Vec<SocketAddr>,
    /// Per upstream try.
    pub timeout: Duration,
    /// banger's guest pool `(network, prefix_len)`: answers inside it are not learned.
    pub pool: (Ipv4Addr, u8),
}

/// Counters, for logs and `vm policy show`.
#[derive(Debug, Default)]
pub struct ResolverStats {
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
}

/// The element timeout for a record's TTL.
pub fn allow_secs(ttl: u32) -> u32 {
    ttl.clamp(MIN_ALLOW_SECS, MAX_ALLOW_SECS)
}

/// The entries an answer yields for a guest allowed on `ports`: learnable addresses only,
/// one entry per address and port, the longest timeout for an address seen twice.
pub fn entries_for(learned: &[Learned], ports: &Ports, pool: (Ipv4Addr, u8)) -> Vec<AllowEntry> {
    let mut entries: Vec<AllowEntry> = Vec::new();
    for record in learned.iter().filter(|r| learnable(r.ip, pool)) {
        let timeout_secs = allow_secs(record.ttl);
        let ports: Vec<Option<u16>> = match ports {
            Ports::Any => vec![None],
            Ports::Only(set) => set.iter().copied().map(Some).collect(),
        };
        for port in ports {
            match entries
                .iter_mut()
                .find(|e| e.ip == record.ip && e.port == port)
            {
                Some(existing) => existing.timeout_secs = existing.timeout_secs.max(timeout_secs),
                None => entries.push(AllowEntry {
                    ip: record.ip,
                    port,
                    timeout_secs,
                }),
            }
        }
    }
    entries
}

/// Serves policy guests on `socket` until `shutdown` completes.
pub async fn serve_policy(
    socket: UdpSocket,
    policies: Arc<dyn PolicyLookup>,
    learner: Arc<dyn Learner>,
    config: ResolverConfig,
    stats: Arc<ResolverStats>,
    shutdown: impl Future,
) {
    let local = socket.local_addr().ok();
    tracing::info!(address = ?local, upstreams = ?config.upstreams, "policy resolver listening");
    let socket = Arc::new(socket);
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        let received = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let Ok((len, peer)) = received else { continue };
        let SocketAddr::V4(peer4) = peer else {
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let packet = buf[..len].to_vec();
        let (socket, policies, learner, config, stats) = (
            Arc::clone(&socket),
            Arc::clone(&policies),
            Arc::clone(&learner),
            Arc::clone(&config),
            Arc::clone(&stats),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let guest = *peer4.ip();
            let reply = handle(
                &packet,
                guest,
                policies.as_ref(),
                learner.as_ref(),
                &config,
                &stats,
            )
            .await;
            if let Some(reply) = reply {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
    tracing::info!(address = ?local, "policy resolver stopped");
}

/// The reply to one query from `guest` (None: send nothing).
pub async fn handle(
    packet: &[u8],
    guest: Ipv4Addr,
    policies: &dyn PolicyLookup,
    learner: &dyn Learner,
    config: &ResolverConfig,
    stats: &ResolverStats,
) -> Option<Vec<u8>> {
    let query = match read_query(packet) {
        Ok(query) => query,
        Err(Unreadable::Drop) => return None,
        Err(Unreadable::Reply { id, flags, rcode }) => return Some(header_reply(id, flags, rcode)),
    };
    let refuse = |stats: &ResolverStats| {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        Some(reply_without_records(&query, Rcode::Refused))
    };
    let Some(policy) = policies.policy_of(guest) else {
        return refuse(stats);
    };
    let ports = match decide(&policy, &query) {
        Decision::Refuse => {
            tracing::debug!(%guest, name = %query.name, "policy resolver refused a name");
            policies.record_refused(guest, &query.name);
            return refuse(stats);
        }
        Decision::NoRecords => return Some(reply_without_records(&query, Rcode::NoError)),
        Decision::Forward(ports) => ports,
    };
    let fail = |why: String| {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%guest, name = %query.name, %why, "policy resolver answered SERVFAIL");
        Some(reply_without_records(&query, Rcode::ServFail))
    };
    let reply = match ask_upstreams(packet, config).await {
        Ok(reply) => reply,
        Err(why) => return fail(why),
    };
    let learned = match answer_addresses(&reply, &query) {
        Ok(learned) => learned,
        Err(error) => return fail(error.to_string()),
    };
    if feeds_addresses(query.qtype) || !learned.is_empty() {
        let entries: Vec<AllowEntry> = entries_for(&learned, &ports, config.pool)
            .into_iter()
            .filter(|entry| !policies.is_fresh(guest, entry))
            .collect();
        if !entries.is_empty() {
            if let Err(why) = learner.learn(guest, entries.clone()).await {
                return fail(format!("cannot allow the answer's addresses: {why}"));
            }
            policies.record_learned(guest, &entries);
        }
    }
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    Some(reply)
}

/// Sends the query to each upstream in turn until one answers.
async fn ask_upstreams(packet: &[u8], config: &ResolverConfig) -> Result<Vec<u8>, String> {
    if config.upstreams.is_empty() {
        return Err("no upstream name server is configured".into());
    }
    let mut last = String::new();
    for upstream in &config.upstreams {
        match ask_one(packet, *upstream, config.timeout).await {
            Ok(reply) => return Ok(reply),
            Err(why) => last = format!("{upstream}: {why}"),
        }
    }
    Err(last)
}

async fn ask_one(
    packet: &[u8],
    upstream: SocketAddr,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(packet).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Replies with another id are someone's stray packets: keep waiting.
        let len = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        if len >= 2 && buf[..2] == packet[..2] {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_addresses_are_remembered_until_the_policy_changes() {
        let table = PolicyTable::default();
        let guest = Ipv4Addr::new(172, 30, 0, 5);
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let entry = AllowEntry {
            ip,
            port: Some(443),
            timeout_secs: 60,
        };
        table.insert(guest, NetPolicy::parse(&["a.test:443"]).unwrap());
        assert!(!table.is_fresh(guest, &entry));
        assert!(!table.is_learned(guest, ip, 443));
        table.record_learned(guest, &[entry]);
        assert!(table.is_fresh(guest, &entry));
        assert!(table.is_learned(guest, ip, 443));
        assert!(!table.is_learned(guest, ip, 80), "only its port");
        // A longer timeout than what is left: ask the helper again.
        let longer = AllowEntry {
            timeout_secs: 600,
            ..entry
        };
        assert!(!table.is_fresh(guest, &longer));
        // A new policy (the helper flushed the sets): nothing is learned any more.
        table.insert(guest, NetPolicy::parse(&["a.test:443"]).unwrap());
        assert!(!table.is_learned(guest, ip, 443));
        table.record_learned(guest, &[entry]);
        table.remove(guest);
        assert!(!table.is_learned(guest, ip, 443));
        assert!(table.policy_of(guest).is_none());
    }

    #[test]
    fn refused_names_are_counted_per_guest_and_bounded() {
        let table = PolicyTable::default();
        let guest = Ipv4Addr::new(172, 30, 0, 5);
        table.record_refused(guest, "no-policy.test");
        assert!(table.refused(guest).is_empty(), "no policy, nothing kept");
        table.insert(guest, NetPolicy::parse(&["a.test"]).unwrap());
        table.record_refused(guest, "Evil.TEST.");
        table.record_refused(guest, "evil.test");
        table.record_refused(guest, "x.evil.test");
        assert_eq!(
            table.refused(guest),
            [("evil.test".to_string(), 2), ("x.evil.test".to_string(), 1)]
        );
        for i in 0..MAX_REFUSED_NAMES + 5 {
            table.record_refused(guest, &format!("n{i}.test"));
        }
        let refused = table.refused(guest);
        assert_eq!(refused.len(), MAX_REFUSED_NAMES + 1);
        assert!(refused.iter().any(|(n, c)| n == OTHER_REFUSED && *c > 0));
        // A new policy starts a new record.
        table.insert(guest, NetPolicy::parse(&["a.test"]).unwrap());
        assert!(table.refused(guest).is_empty());
    }

    #[test]
    fn entries_per_address_and_port_with_clamped_timeouts() {
        let pool = (Ipv4Addr::new(172, 30, 0, 0), 24);
        let learned = [
            Learned {
                ip: Ipv4Addr::new(192, 0, 2, 1),
                ttl: 5,
            },
            Learned {
                ip: Ipv4Addr::new(192, 0, 2, 1),
                ttl: 600,
            },
            Learned {
                ip: Ipv4Addr::new(127, 0, 0, 1),
                ttl: 600,
            },
            Learned {
                ip: Ipv4Addr::new(192, 0, 2, 2),
                ttl: 1_000_000,
            },
        ];
        let any = entries_for(&learned, &Ports::Any, pool);
        assert_eq!(
            any,
            [
                AllowEntry {
                    ip: Ipv4Addr::new(192, 0, 2, 1),
                    port: None,
                    timeout_secs: 600
                },
                AllowEntry {
                    ip: Ipv4Addr::new(192, 0, 2, 2),
                    port: None,
                    timeout_secs: MAX_ALLOW_SECS
                }
            ]
        );
        let ported = entries_for(&learned[..1], &Ports::Only([80, 443].into()), pool);
        assert_eq!(
            ported
                .iter()
                .map(|e| (e.port, e.timeout_secs))
                .collect::<Vec<_>>(),
            [(Some(80), MIN_ALLOW_SECS), (Some(443), MIN_ALLOW_SECS)]
        );
    }
}
