//! Network policies against the real kernel, without a VM: three namespaces the test
//! creates ("host" with the helper and banger's bridge, "guest" joined to the bridge by
//! a veth whose host end has a tap's name, "internet" behind the host's uplink), the
//! helper's `set_policy` / `add_policy_addresses` / `remove_policy`, and traffic from
//! the guest namespace: the allowed address connects, others do not; ICMP, DNS to
//! another server and a spoofed source address are dropped; DNS to the gateway reaches
//! the resolver port and TCP 443 to the SNI proxy's; a learned address opens; removal restores what NAT alone gives.
//! Needs root, nft and python3 (the traffic is made with python's socket module);
//! otherwise it is recorded as skipped (`banger_requires`).

mod support;

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banger_proto::helper::{HelperOutcome, HelperRequest, PolicyAddress, PolicyNet};
use banger_requires::require;
use support::{Netns, RunningHelper, current_uid};

const GUEST: &str = "172.30.0.5";
const RESOLVER_PORT: u16 = 42070;
const SNI_PORT: u16 = 42071;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn done(helper: &RunningHelper, request: HelperRequest) -> Duration {
    let shown = format!("{request:?}");
    let started = Instant::now();
    let answer = helper
        .call(request)
        .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
    assert_eq!(answer.outcome, HelperOutcome::Done, "{shown}");
    started.elapsed()
}

/// Runs a python snippet in a namespace; true when it exits 0.
fn py(ns: &Netns, script: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tcp(to: &str, port: u16) -> String {
    format!("import socket; socket.create_connection(('{to}', {port}), 2)")
}

fn tcp_from(from: &str, to: &str, port: u16) -> String {
    format!(
        "import socket; socket.create_connection(('{to}', {port}), 2, source_address=('{from}', 0))"
    )
}

fn udp(to: &str, port: u16) -> String {
    format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); \
         s.sendto(b'q', ('{to}', {port})); s.recvfrom(64)"
    )
}

/// An ICMP echo request (its id the process's, so each is a new conntrack flow), and a
/// wait for the echo reply from `to`.
fn icmp(to: &str) -> String {
    format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
         s.settimeout(2)\n\
         pkt = bytearray(b'\\x08\\x00\\x00\\x00\\x12\\x34\\x00\\x01banger')\n\
         import os\n\
         pkt[4] = (os.getpid() >> 8) & 0xff; pkt[5] = os.getpid() & 0xff\n\
         c = sum((pkt[i] << 8) + pkt[i + 1] for i in range(0, len(pkt), 2))\n\
         c = (c >> 16) + (c & 0xffff); c = ~(c + (c >> 16)) & 0xffff\n\
         pkt[2] = c >> 8; pkt[3] = c & 0xff\n\
         s.sendto(bytes(pkt), ('{to}', 0))\n\
         end = time.time() + 2\n\
         while time.time() < end:\n\
         \x20   data, (src, _) = s.recvfrom(256)\n\
         \x20   if src == '{to}' and data[20] == 0: raise SystemExit(0)\n\
         raise SystemExit(1)\n"
    )
}

/// A UDP server answering `pong` to anything, in a namespace.
fn udp_server(ns: &Netns, at: &str, port: u16) -> Child {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{at}', {port}))\nwhile True:\n    d, a = s.recvfrom(512)\n    s.sendto(b'pong', a)\n"
    );
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policy_rules_hold_against_real_traffic() {
    require!(Root, Tool("ip"), Tool("nft"), Tool("python3"));
    let host = Netns::new();
    let guest = Netns::new();
    let internet = Netns::new();
    // The uplink: host 10.99.0.1 <-> internet 10.99.0.2 and .3 (two servers).
    host.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "netns",
        &internet.name,
    ]);
    host.ip(&["addr", "add", "10.99.0.1/24", "dev", "up0"]);
    host.ip(&["link", "set", "up0", "up"]);
    internet.ip(&["addr", "add", "10.99.0.2/24", "dev", "up1"]);
    internet.ip(&["addr", "add", "10.99.0.3/24", "dev", "up1"]);
    internet.ip(&["link", "set", "up1", "up"]);
    host.ip(&["route", "add", "default", "via", "10.99.0.2"]);

    let helper = RunningHelper::start(Some(&host), current_uid(), &["--uplink", "up0"]);
    done(&helper, HelperRequest::EnsureBridge);
    // The "guest": a veth whose bridge end has a tap's name.
    let tap = "bgt-pol0test";
    host.ip(&[
        "link",
        "add",
        tap,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &guest.name,
    ]);
    host.ip(&["link", "set", tap, "master", "banger0", "up"]);
    guest.ip(&["addr", "add", &format!("{GUEST}/24"), "dev", "eth0"]);
    guest.ip(&["link", "set", "eth0", "up"]);
    guest.ip(&["route", "add", "default", "via", "172.30.0.1"]);

    let mut servers = Children(Vec::new());
    let http = Command::new("ip")
        .args([
            "netns",
            "exec",
            &internet.name,
            "python3",
            "-m",
            "http.server",
            "8080",
        ])
        .args(["--bind", "0.0.0.0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    servers.0.push(http);
    servers.0.push(udp_server(&internet, "0.0.0.0", 53));
    servers
        .0
        .push(udp_server(&host, "172.30.0.1", RESOLVER_PORT));
    // The SNI proxy stand-in: answers `sni` to any TCP connection.
    let sni = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('172.30.0.1', {SNI_PORT}))\ns.listen(8)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'sni')\n    c.close()\n"
    );
    servers.0.push(
        Command::new("ip")
            .args(["netns", "exec", &host.name, "python3", "-c", &sni])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    eventually("the internet's servers listen", || {
        py(&internet, &tcp("10.99.0.3", 8080)) && py(&internet, &udp("10.99.0.2", 53))
    });
    eventually("the resolver stand-in listens", || {
        py(&host, &udp("172.30.0.1", RESOLVER_PORT)) && py(&host, &tcp("172.30.0.1", SNI_PORT))
    });

    // NAT alone: everything gets out (the baseline a policy narrows).
    let guest_ip = ip(GUEST);
    done(&helper, HelperRequest::AddNat { guest_ip });
    eventually("the NAT guest reaches the internet", || {
        py(&guest, &tcp("10.99.0.3", 8080))
    });
    assert!(py(&guest, &icmp("10.99.0.2")), "ICMP before the policy");
    assert!(py(&guest, &udp("10.99.0.2", 53)), "DNS before the policy");
    // A second address on the guest, which a NAT guest without a policy holds.
    guest.ip(&["addr", "add", "172.30.0.6/24", "dev", "eth0"]);
    done(
        &helper,
        HelperRequest::AddNat {
            guest_ip: ip("172.30.0.6"),
        },
    );
    assert!(py(&guest, &tcp_from("172.30.0.6", "10.99.0.3", 8080)));

    let nets = vec![PolicyNet {
        addr: ip("10.99.0.2"),
        prefix_len: 32,
        port: Some(8080),
    }];
    let set = HelperRequest::SetPolicy {
        guest_ip,
        tap: tap.into(),
        resolver_port: RESOLVER_PORT,
        sni_port: Some(SNI_PORT),
        nets: nets.clone(),
        keep_learned: false,
    };
    let first = done(&helper, set.clone());
    let again = done(&helper, set);
    eprintln!(
        "MEASURE set_policy: {:.1} ms new, {:.1} ms replacing",
        first.as_secs_f64() * 1e3,
        again.as_secs_f64() * 1e3
    );
    let cases: Vec<(&str, String, bool)> = vec![
        ("the allowed address and port", tcp("10.99.0.2", 8080), true),
        ("another address", tcp("10.99.0.3", 8080), false),
        (
            "the allowed address on another port",
            tcp("10.99.0.2", 8081),
            false,
        ),
        ("ICMP to the allowed address", icmp("10.99.0.2"), false),
        ("DNS to another server", udp("10.99.0.2", 53), false),
        (
            "DNS to the gateway, redirected to the resolver",
            udp("172.30.0.1", 53),
            true,
        ),
        (
            "the host's .vm responder port",
            udp("172.30.0.1", 42069),
            false,
        ),
        (
            "TCP 443 anywhere goes to the SNI proxy",
            "import socket; c = socket.create_connection(('10.99.0.3', 443), 2); \
             assert c.recv(8) == b'sni'"
                .to_string(),
            true,
        ),
        (
            "a spoofed source address (a NAT guest's)",
            tcp_from("172.30.0.6", "10.99.0.3", 8080),
            false,
        ),
    ];
    for (what, script, expected) in &cases {
        assert_eq!(py(&guest, script), *expected, "{what}");
    }
    eprintln!("policy cases tried: {}", cases.len());

    // The replaced policy left exactly one set of rules.
    let ruleset = host.exec("nft", &["list", "ruleset"]);
    assert_eq!(ruleset.matches("jump g_172_30_0_5").count(), 2, "{ruleset}");

    let started = Instant::now();
    done(
        &helper,
        HelperRequest::AddPolicyAddresses {
            guest_ip,
            entries: vec![PolicyAddress {
                ip: ip("10.99.0.3"),
                port: Some(8080),
                timeout_secs: 30,
            }],
        },
    );
    eprintln!(
        "MEASURE add_policy_addresses: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        py(&guest, &tcp("10.99.0.3", 8080)),
        "a learned address opens"
    );
    assert!(!py(&guest, &tcp("10.99.0.3", 8081)), "only on its port");
    let (dropped, denied) = match helper
        .call(HelperRequest::PolicyCounters { guest_ip })
        .unwrap()
        .outcome
    {
        HelperOutcome::PolicyCounters {
            dropped_packets,
            denied,
        } => (dropped_packets, denied),
        other => panic!("{other:?}"),
    };
    assert!(dropped >= 5, "dropped {dropped}");
    // Each denied destination is remembered with its own count.
    let refused = denied
        .iter()
        .find(|d| d.ip.to_string() == "10.99.0.3" && d.port == Some(8081))
        .unwrap_or_else(|| panic!("10.99.0.3:8081 not among the denied: {denied:?}"));
    assert_eq!(refused.protocol, "tcp");
    assert!(refused.packets >= 1, "{refused:?}");
    // ICMP (no port) is remembered too.
    assert!(
        denied
            .iter()
            .any(|d| d.protocol == "icmp" && d.port.is_none()),
        "{denied:?}"
    );

    let listing = match helper.call(HelperRequest::ListNetwork).unwrap().outcome {
        HelperOutcome::Network(listing) => listing,
        other => panic!("{other:?}"),
    };
    assert_eq!(listing.policy_guests, [guest_ip]);

    done(&helper, HelperRequest::RemovePolicy { guest_ip });
    done(&helper, HelperRequest::RemovePolicy { guest_ip });
    let ruleset = host.exec("nft", &["list", "ruleset"]);
    assert!(!ruleset.contains("banger-pol="), "{ruleset}");
    assert!(!ruleset.contains("g_172_30_0_5"), "{ruleset}");
    assert!(
        py(&guest, &icmp("10.99.0.2")),
        "NAT alone again after removal"
    );
    assert!(py(&guest, &tcp("10.99.0.3", 8081).replace("8081", "8080")));
}
