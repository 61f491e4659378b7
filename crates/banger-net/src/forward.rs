//! Published ports: a user-space forwarder in the daemon. Each published port is one
//! listening socket on the host (127.0.0.1 unless the user chose another address) and one
//! task that copies to the guest's address on its bridge: TCP connection by connection,
//! UDP datagram by datagram with one host-side socket per client (so replies find their
//! way back), closed after [`UDP_IDLE`] without traffic. Dropping a [`Forward`] closes the
//! listener and every connection it carries (the tasks live in one `JoinSet`).
//!
//! Why not DNAT in the helper's nftables table: packets to 127.0.0.1 never reach
//! PREROUTING (locally generated traffic goes through OUTPUT and would need
//! `route_localnet`, which opens 127/8 to martian routing on the bridge), and the helper
//! would have to learn per-port rules; here the daemon, running as the user, owns the
//! socket, a port in use is an ordinary `EADDRINUSE` at bind time, and the forward goes
//! with the process that made it.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_model::{PortProto, PortSpec};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// How long a TCP connection to the guest may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A UDP client's host-side socket closes after this long without a datagram either way.
pub const UDP_IDLE: Duration = Duration::from_secs(120);
/// At most this many UDP clients at once per published port; a new one past it is
/// dropped (its datagram is not forwarded).
const UDP_MAX_CLIENTS: usize = 1024;
/// At most this many TCP connections at once per published port; past it a new one is
/// closed at once.
const TCP_MAX_CONNECTIONS: usize = 4096;

/// Why a port could not be published.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("host port {endpoint}/{proto} is in use{}", owner.as_deref().map(|o| format!(" by {o}")).unwrap_or_default())]
    InUse {
        endpoint: String,
        proto: PortProto,
        owner: Option<String>,
    },
    #[error(
        "binding {endpoint}/{proto} needs privileges the daemon does not have (ports below 1024 are reserved for root); choose a host port above 1023"
    )]
    Denied { endpoint: String, proto: PortProto },
    #[error("{endpoint} is not an address of this host")]
    NotLocal { endpoint: String },
    #[error("cannot listen on {endpoint}/{proto}")]
    Bind {
        endpoint: String,
        proto: PortProto,
        #[source]
        source: io::Error,
    },
}

/// One published port, forwarding while it lives.
#[derive(Debug)]
pub struct Forward {
    spec: PortSpec,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forward {
    /// Listens on the spec's host address and forwards to `guest` (the guest's address
    /// and the spec's guest port). Must be called inside a tokio runtime.
    pub fn bind(spec: PortSpec, guest: SocketAddrV4) -> Result<Forward, ForwardError> {
        let at = SocketAddr::from((spec.host_ip, spec.host_port));
        let bind_error = |source: io::Error| match source.kind() {
            io::ErrorKind::AddrInUse => ForwardError::InUse {
                endpoint: spec.host_endpoint(),
                proto: spec.proto,
                owner: crate::port_owner::owner_of(spec.proto, spec.host_port),
            },
            io::ErrorKind::PermissionDenied => ForwardError::Denied {
                endpoint: spec.host_endpoint(),
                proto: spec.proto,
            },
            io::ErrorKind::AddrNotAvailable => ForwardError::NotLocal {
                endpoint: spec.host_endpoint(),
            },
            _ => ForwardError::Bind {
                endpoint: spec.host_endpoint(),
                proto: spec.proto,
                source,
            },
        };
        let (local, task) = match spec.proto {
            PortProto::Tcp => {
                // std sets SO_REUSEADDR, so a port published again right after a stop
                // binds despite connections in TIME_WAIT.
                let listener = std::net::TcpListener::bind(at).map_err(bind_error)?;
                listener.set_nonblocking(true).map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let listener = TcpListener::from_std(listener).map_err(bind_error)?;
                (local, tokio::spawn(serve_tcp(listener, guest)))
            }
            PortProto::Udp => {
                let socket = std::net::UdpSocket::bind(at).map_err(bind_error)?;
                socket.set_nonblocking(true).map_err(bind_error)?;
                let local = socket.local_addr().map_err(bind_error)?;
                let socket = UdpSocket::from_std(socket).map_err(bind_error)?;
                (local, tokio::spawn(serve_udp(Arc::new(socket), guest)))
            }
        };
        Ok(Forward { spec, local, task })
    }

    pub fn spec(&self) -> &PortSpec {
        &self.spec
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

async fn serve_tcp(listener: TcpListener, guest: SocketAddrV4) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) if connections.len() < TCP_MAX_CONNECTIONS => {
                    connections.spawn(carry_tcp(client, guest));
                }
                Ok(_) => tracing::warn!(%guest, "too many forwarded connections; refusing one"),
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(%guest, %error, "cannot accept a forwarded connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One TCP connection: opened to the guest, then copied both ways until either side
/// closes. A guest that does not answer closes the client's connection.
async fn carry_tcp(mut client: TcpStream, guest: SocketAddrV4) {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(guest)).await;
    let mut upstream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%guest, %error, "the guest refused a forwarded connection");
            return;
        }
        Err(_) => {
            tracing::debug!(%guest, "the guest did not answer a forwarded connection");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

type Clients = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

async fn serve_udp(listener: Arc<UdpSocket>, guest: SocketAddrV4) {
    let clients: Clients = Arc::default();
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            received = listener.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%guest, %error, "cannot receive a forwarded datagram");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let known = clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&client)
                    .cloned();
                let upstream = match known {
                    Some(upstream) => upstream,
                    None => {
                        if replies.len() >= UDP_MAX_CLIENTS {
                            continue;
                        }
                        let Ok(upstream) = open_upstream(guest).await else {
                            continue;
                        };
                        clients
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(client, Arc::clone(&upstream));
                        replies.spawn(carry_replies(
                            Arc::clone(&listener),
                            Arc::clone(&upstream),
                            client,
                            Arc::clone(&clients),
                        ));
                        upstream
                    }
                };
                let _ = upstream.send(&buf[..len]).await;
            }
            Some(_) = replies.join_next(), if !replies.is_empty() => {}
        }
    }
}

async fn open_upstream(guest: SocketAddrV4) -> io::Result<Arc<UdpSocket>> {
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(guest).await?;
    Ok(Arc::new(socket))
}

/// Sends the guest's datagrams for one client back from the published port, until the
/// pair has been idle for [`UDP_IDLE`].
async fn carry_replies(
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    clients: Clients,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(len)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = listener.send_to(&buf[..len], client).await;
    }
    clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&client);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn spec(proto: PortProto, host_port: u16, guest_port: u16) -> PortSpec {
        PortSpec {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port,
            guest_port,
            proto,
        }
    }

    /// A free port on loopback for `proto` (bound, then released).
    fn free_port(proto: PortProto) -> u16 {
        match proto {
            PortProto::Tcp => std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            PortProto::Udp => std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        }
    }

    fn v4(addr: SocketAddr) -> SocketAddrV4 {
        match addr {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => unreachable!("bound on 127.0.0.1"),
        }
    }

    #[tokio::test]
    async fn tcp_is_carried_both_ways_and_stops_with_the_forward() {
        // The "guest": an echo server that upper-cases, on loopback.
        let guest = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let guest_addr = v4(guest.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = guest.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = conn.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        conn.write_all(&buf[..n].to_ascii_uppercase())
                            .await
                            .unwrap();
                    }
                });
            }
        });
        let host_port = free_port(PortProto::Tcp);
        let forward = Forward::bind(
            spec(PortProto::Tcp, host_port, guest_addr.port()),
            guest_addr,
        )
        .unwrap();
        assert_eq!(forward.local_addr().port(), host_port);
        let mut client = TcpStream::connect(("127.0.0.1", host_port)).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"HELLO");

        // A second forward on the same port is refused, naming the port.
        let error = Forward::bind(
            spec(PortProto::Tcp, host_port, guest_addr.port()),
            guest_addr,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("host port 127.0.0.1:{host_port}/tcp is in use")),
            "{error}"
        );

        // Dropping the forward closes the listener and the open connection.
        drop(forward);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the carried connection closes");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let mut closed = false;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", host_port)).await.is_err() {
                closed = true;
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(closed, "nothing listens after the forward is dropped");
        // And the port can be published again at once.
        let again = Forward::bind(
            spec(PortProto::Tcp, host_port, guest_addr.port()),
            guest_addr,
        );
        assert!(again.is_ok(), "{again:?}");
    }

    #[tokio::test]
    async fn a_large_tcp_transfer_arrives_whole() {
        let guest = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let guest_addr = v4(guest.local_addr().unwrap());
        let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        tokio::spawn(async move {
            let (mut conn, _) = guest.accept().await.unwrap();
            conn.write_all(&sent).await.unwrap();
        });
        let host_port = free_port(PortProto::Tcp);
        let _forward = Forward::bind(
            spec(PortProto::Tcp, host_port, guest_addr.port()),
            guest_addr,
        )
        .unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", host_port)).await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert!(received == payload, "{} bytes arrived", received.len());
    }

    #[tokio::test]
    async fn a_guest_that_refuses_closes_the_client() {
        let dead = v4(std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap());
        let host_port = free_port(PortProto::Tcp);
        let _forward = Forward::bind(spec(PortProto::Tcp, host_port, dead.port()), dead).unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", host_port)).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn udp_replies_go_back_to_each_client() {
        let guest = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let guest_addr = v4(guest.local_addr().unwrap());
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                let (n, from) = guest.recv_from(&mut buf).await.unwrap();
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                guest.send_to(&reply, from).await.unwrap();
            }
        });
        let host_port = free_port(PortProto::Udp);
        let forward = Forward::bind(
            spec(PortProto::Udp, host_port, guest_addr.port()),
            guest_addr,
        )
        .unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (client, text) in [(&a, "one"), (&b, "two"), (&a, "three")] {
            client
                .send_to(text.as_bytes(), ("127.0.0.1", host_port))
                .await
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                    .await
                    .expect("a reply")
                    .unwrap();
            assert_eq!(&buf[..n], format!("re:{text}").as_bytes());
            assert_eq!(
                from.port(),
                host_port,
                "the reply comes from the published port"
            );
        }
        let error = Forward::bind(spec(PortProto::Udp, host_port, 1), guest_addr).unwrap_err();
        assert!(matches!(error, ForwardError::InUse { .. }), "{error}");
        drop(forward);
        let mut freed = false;
        for _ in 0..100 {
            if std::net::UdpSocket::bind(("127.0.0.1", host_port)).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(freed, "the host port is free once the forward is dropped");
    }
}
