//! The responder over real UDP on loopback: `dig` (the reference client) gets the right
//! answers and statuses, malformed packets and a flood of junk do not stop it, and the
//! shutdown future ends it.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use banger_dns::{StaticNames, serve};
use banger_exec::Cmd;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WEB: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 5);

/// A responder on 127.0.0.1:<ephemeral> serving `web` and `db`.
struct Running {
    address: SocketAddr,
    names: Arc<StaticNames>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start() -> Running {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let names = Arc::new(StaticNames::new());
    names.insert("web", WEB);
    names.insert("db", Ipv4Addr::new(172, 30, 0, 6));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(socket, names.clone(), stopped));
    Running {
        address,
        names,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic");
    }
}

/// Runs dig against the responder; None when dig is not installed (callers `require!` it).
async fn dig(server: SocketAddr, args: &[&str]) -> Option<String> {
    let cmd = Cmd::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=2"])
        .args(args.iter().copied())
        .timeout(Duration::from_secs(20));
    match banger_exec::run(&cmd).await {
        Ok(output) => Some(output.stdout_text()),
        Err(err) if err.is_not_found() => None,
        Err(err) => panic!("{err}"),
    }
}

/// One query over a plain socket, retried a few times because UDP may drop it (the
/// flood test fills socket buffers on purpose). Returns the response.
fn query_until_answered(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..20 {
        client.send_to(packet, server).unwrap();
        loop {
            match client.recv_from(&mut buf) {
                // Responses to earlier attempts carry the same id; any is fine.
                Ok((len, _)) if len >= 2 && buf[..2] == packet[..2] => {
                    return buf[..len].to_vec();
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    panic!("no answer after 20 attempts");
}

/// An A query for `name` with id `id`.
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = id.to_be_bytes().to_vec();
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

/// The A record's address at the end of a one-answer response.
fn answered_address(response: &[u8]) -> Ipv4Addr {
    assert_eq!(response[3] & 0x0F, 0, "rcode NOERROR: {response:02x?}");
    assert_eq!(response[7], 1, "one answer: {response:02x?}");
    let octets: [u8; 4] = response[response.len() - 4..].try_into().unwrap();
    Ipv4Addr::from(octets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_gets_addresses_and_statuses() {
    banger_requires::require!(Tool("dig"));
    let running = start().await;
    let short = dig(running.address, &["web.vm", "+short"]).await.unwrap();
    assert_eq!(short.trim(), "172.30.0.5");
    let upper = dig(running.address, &["DB.VM", "+short"]).await.unwrap();
    assert_eq!(upper.trim(), "172.30.0.6");

    let cases: &[(&[&str], &str)] = &[
        (&["nope.vm"], "status: NXDOMAIN"),
        (&["example.com"], "status: REFUSED"),
        (&["web.vm", "AAAA"], "status: NOERROR"),
        (&["web.vm", "+noedns"], "status: NOERROR"),
    ];
    for (args, status) in cases {
        let output = dig(running.address, args).await.unwrap();
        assert!(output.contains(status), "{args:?}: {output}");
        assert!(!output.contains("WARNING: Message"), "{args:?}: {output}");
    }
    // NODATA: no answer section for AAAA of an existing name, but authoritative.
    let aaaa = dig(running.address, &["web.vm", "AAAA"]).await.unwrap();
    assert!(aaaa.contains("ANSWER: 0"), "{aaaa}");
    assert!(aaaa.contains("flags: qr aa"), "{aaaa}");
    let full = dig(running.address, &["web.vm"]).await.unwrap();
    assert!(full.contains("web.vm.\t\t\t5\tIN\tA\t172.30.0.5"), "{full}");

    // Names added or removed while serving are seen on the next query.
    running.names.insert("late", Ipv4Addr::new(172, 30, 0, 9));
    running.names.remove("web");
    let late = dig(running.address, &["late.vm", "+short"]).await.unwrap();
    assert_eq!(late.trim(), "172.30.0.9");
    let gone = dig(running.address, &["web.vm"]).await.unwrap();
    assert!(gone.contains("status: NXDOMAIN"), "{gone}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packet_then_valid_query() {
    let running = start().await;
    let server = running.address;
    let response = tokio::task::spawn_blocking(move || {
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // A header claiming one question, then garbage: FORMERR, same id.
        let malformed = [0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF];
        client.send_to(&malformed, server).unwrap();
        let mut buf = [0u8; 512];
        let (len, _) = client.recv_from(&mut buf).expect("a FORMERR reply");
        assert_eq!(&buf[..2], &[0x42, 0x42]);
        assert_eq!(buf[3] & 0x0F, 1, "FORMERR: {:02x?}", &buf[..len]);
        // Too short to be DNS: no reply; the next query is still answered.
        client.send_to(&[1, 2, 3], server).unwrap();
        query_until_answered(server, &a_query(7, "web.vm"))
    })
    .await
    .unwrap();
    assert_eq!(answered_address(&response), WEB);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_junk_does_not_stop_it() {
    const PACKETS: usize = 20_000;
    let running = start().await;
    let server = running.address;
    let flood = tokio::task::spawn_blocking(move || {
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rng = fastrand::Rng::with_seed(0xD15);
        let valid = a_query(0x5EED, "web.vm");
        let mut junk = Vec::with_capacity(1500);
        for i in 0..PACKETS {
            junk.clear();
            match i % 4 {
                // Random bytes of random length, up to past the receive buffer.
                0 => {
                    let len = rng.usize(0..1500);
                    junk.resize(len, 0);
                    rng.fill(&mut junk);
                }
                // A plausible header with a random tail: reaches the question parser.
                1 => {
                    let len = rng.usize(12..300);
                    junk.resize(len, 0);
                    rng.fill(&mut junk);
                    junk[2..10].copy_from_slice(&[0x01, 0, 0, 1, 0, 0, 0, 0]);
                }
                // A response, which must be dropped rather than answered.
                2 => {
                    junk.extend_from_slice(&valid);
                    junk[2] |= 0x80;
                }
                _ => junk.extend_from_slice(&valid),
            }
            // The kernel may refuse when buffers are full; a flood does not care.
            let _ = client.send_to(&junk, server);
        }
        // Some of the valid queries were answered during the flood.
        client.set_nonblocking(true).unwrap();
        let mut answered = 0usize;
        let mut buf = [0u8; 512];
        while let Ok((len, _)) = client.recv_from(&mut buf) {
            if buf[..2] == valid[..2] && len == valid.len() + 16 {
                answered += 1;
            }
        }
        answered
    });
    let answered = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood finishes in bounded time")
        .unwrap();
    assert!(answered > 0, "no valid query was answered during the flood");
    assert!(
        !running.task.is_finished(),
        "the server stopped during the flood"
    );
    let after = tokio::task::spawn_blocking(move || {
        query_until_answered(server, &a_query(0x1111, "web.vm"))
    });
    let response = tokio::time::timeout(Duration::from_secs(30), after)
        .await
        .expect("answered after the flood")
        .unwrap();
    assert_eq!(answered_address(&response), WEB);
    eprintln!(
        "flood: {answered} of {} valid queries answered",
        PACKETS / 4
    );
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_serve() {
    let running = start().await;
    running.shutdown().await;
}
