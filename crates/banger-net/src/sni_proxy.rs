//! sni_proxy: the TLS server-name check for port 443. The helper's rules redirect every
//! TCP connection a policy guest opens to port 443 here (on the gateway); the proxy
//! reads the original destination (`SO_ORIGINAL_DST`), waits for the first TLS record,
//! reads its server name ([`crate::sni`]) and asks the [`SniGate`] whether this guest may
//! reach that destination with that name. Allowed: it connects to the destination from
//! the host, replays the bytes read so far and copies both ways until either side
//! closes. Refused (no ClientHello within [`HELLO_TIMEOUT`], no or a denied server name,
//! a destination not answered for an allowed name): the guest's connection is closed
//! and nothing is sent anywhere. Several names sharing one address (CDNs, virtual
//! hosts) are told apart this way; the address alone would let all of them through.
//! The destination is also refused when it is loopback, link-local, multicast or
//! unspecified, because the proxy's own connection is the host's, not the guest's.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::sni::{Hello, MAX_RECORD, parse_client_hello};

/// How long a guest has to send its ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the upstream connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections proxied at once; more are closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// Decides whether a guest may open a TLS connection to `dest` naming `server` (`None`:
/// no server name, or not TLS). `Err` says why not, for the log.
pub trait SniGate: Send + Sync {
    fn decide(
        &self,
        guest: Ipv4Addr,
        dest: SocketAddrV4,
        server: Option<&str>,
    ) -> Result<(), String>;
}

/// Counters, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct SniStats {
    pub allowed: AtomicU64,
    pub refused: AtomicU64,
}

/// The destination a redirected connection was meant for.
fn original_destination(stream: &TcpStream) -> Option<SocketAddrV4> {
    let addr = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst).ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

/// Whether the proxy may connect there on a guest's behalf at all.
pub fn proxyable(dest: Ipv4Addr) -> bool {
    !(dest.is_loopback()
        || dest.is_link_local()
        || dest.is_multicast()
        || dest.is_broadcast()
        || dest.is_unspecified())
}

/// Serves redirected connections on `listener` until `shutdown` completes.
pub async fn serve_sni(
    listener: TcpListener,
    gate: Arc<dyn SniGate>,
    stats: Arc<SniStats>,
    shutdown: impl Future,
) {
    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "sni proxy listening");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let (gate, stats) = (Arc::clone(&gate), Arc::clone(&stats));
        tokio::spawn(async move {
            let _slot = slot;
            let SocketAddr::V4(peer) = peer else { return };
            match proxy(stream, *peer.ip(), gate.as_ref()).await {
                Ok(()) => {
                    stats.allowed.fetch_add(1, Ordering::Relaxed);
                }
                Err(why) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(guest = %peer.ip(), %why, "sni proxy refused a connection");
                }
            }
        });
    }
    tracing::info!(address = ?local, "sni proxy stopped");
}

/// One connection: gate, then connect and copy. `Err` only for refusals and failures
/// before the copy starts.
async fn proxy(mut guest: TcpStream, guest_ip: Ipv4Addr, gate: &dyn SniGate) -> Result<(), String> {
    let dest = original_destination(&guest).ok_or("no original destination")?;
    let mut buf = Vec::with_capacity(2048);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            match parse_client_hello(&buf) {
                Hello::NeedBytes(n) if n <= MAX_RECORD => {}
                other => return Ok(other),
            }
            let mut chunk = [0u8; 4096];
            let read = guest.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("the guest closed before its ClientHello".to_string());
            }
            buf.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .map_err(|_| format!("no ClientHello within {HELLO_TIMEOUT:?}"))??;
    let server = match &hello {
        Hello::Sni(name) => Some(name.as_str()),
        _ => None,
    };
    if !proxyable(*dest.ip()) {
        return Err(format!("{dest} is not a destination the proxy connects to"));
    }
    gate.decide(guest_ip, dest, server)
        .map_err(|why| format!("{dest} ({}): {why}", server.unwrap_or("no server name")))?;
    let mut upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dest))
        .await
        .map_err(|_| format!("{dest}: connect timed out"))?
        .map_err(|e| format!("{dest}: {e}"))?;
    upstream
        .write_all(&buf)
        .await
        .map_err(|e| format!("{dest}: {e}"))?;
    let _ = tokio::io::copy_bidirectional(&mut guest, &mut upstream).await;
    Ok(())
}
