//! The policy resolver over real UDP on loopback, against a stand-in upstream: an
//! allowed name is forwarded and its address handed to the learner before the answer
//! arrives (and not again while it is fresh), a denied name is refused without reaching
//! the upstream, a guest without a policy is refused, and a failing learner makes the
//! answer SERVFAIL.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_dns::policy_server::{AllowEntry, LearnFuture, Learner, ResolverConfig, ResolverStats};
use banger_dns::{PolicyTable, serve_policy};
use banger_model::NetPolicy;
use tokio::net::UdpSocket;

#[derive(Default)]
struct Recording {
    calls: Mutex<Vec<Vec<AllowEntry>>>,
    fail: AtomicBool,
}

impl Learner for Recording {
    fn learn(&self, _guest: Ipv4Addr, entries: Vec<AllowEntry>) -> LearnFuture {
        self.calls.lock().unwrap().push(entries);
        let fail = self.fail.load(Ordering::Relaxed);
        Box::pin(async move {
            if fail {
                Err("helper down".into())
            } else {
                Ok(())
            }
        })
    }
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

async fn upstream(socket: UdpSocket, asked: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        asked.fetch_add(1, Ordering::Relaxed);
        let mut reply = buf[..len].to_vec();
        reply[2] |= 0x80;
        reply[3] = 0x80;
        reply[6..8].copy_from_slice(&1u16.to_be_bytes());
        reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        let _ = socket.send_to(&reply, peer).await;
    }
}

async fn ask(server: SocketAddr, id: u16, name: &str) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(id, name), server).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf.truncate(len);
    buf
}

#[tokio::test]
async fn forwards_allowed_names_learns_first_and_refuses_the_rest() {
    let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let asked = Arc::new(AtomicU64::new(0));
    tokio::spawn(upstream(up, asked.clone()));
    let table = Arc::new(PolicyTable::default());
    table.insert(
        Ipv4Addr::LOCALHOST,
        NetPolicy::parse(&["allowed.test:8080", "allowed.test:443"]).unwrap(),
    );
    let learner = Arc::new(Recording::default());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = socket.local_addr().unwrap();
    tokio::spawn(serve_policy(
        socket,
        table.clone(),
        learner.clone(),
        ResolverConfig {
            upstreams: vec![up_addr],
            timeout: Duration::from_secs(2),
            pool: (Ipv4Addr::new(172, 30, 0, 0), 24),
        },
        Arc::new(ResolverStats::default()),
        std::future::pending::<()>(),
    ));

    let answer = ask(server, 1, "allowed.test").await;
    assert_eq!(answer[3] & 0x0F, 0, "NOERROR");
    assert_eq!(&answer[answer.len() - 4..], &[192, 0, 2, 1]);
    let calls = learner.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let mut ports: Vec<Option<u16>> = calls[0].iter().map(|e| e.port).collect();
    ports.sort();
    assert_eq!(ports, [Some(443), Some(8080)]);
    assert!(table.is_learned(Ipv4Addr::LOCALHOST, Ipv4Addr::new(192, 0, 2, 1), 443));

    // Asked again while fresh: answered, the helper is not asked again.
    let again = ask(server, 2, "allowed.test").await;
    assert_eq!(again[3] & 0x0F, 0);
    assert_eq!(learner.calls.lock().unwrap().len(), 1);

    let before = asked.load(Ordering::Relaxed);
    let refused = ask(server, 3, "denied.test").await;
    assert_eq!(refused[3] & 0x0F, 5, "REFUSED");
    assert_eq!(
        asked.load(Ordering::Relaxed),
        before,
        "a denied name reached the upstream"
    );

    // A new policy forgets what was learned; a failing learner means SERVFAIL.
    table.insert(
        Ipv4Addr::LOCALHOST,
        NetPolicy::parse(&["allowed.test:443"]).unwrap(),
    );
    learner.fail.store(true, Ordering::Relaxed);
    let failed = ask(server, 4, "allowed.test").await;
    assert_eq!(failed[3] & 0x0F, 2, "SERVFAIL");

    table.remove(Ipv4Addr::LOCALHOST);
    let unknown = ask(server, 5, "allowed.test").await;
    assert_eq!(unknown[3] & 0x0F, 5, "a guest without a policy is refused");
}
