//! The helper's operations against the real kernel, inside a network namespace each test
//! creates (and deletes on drop), with the helper binary started under `ip netns exec`:
//! bridge and tap creation (idempotent), a tap descriptor received over the socket, NAT
//! rules in banger's nftables table (one `/32` rule per guest however often it is added,
//! none after removal) with timings, and `banger-helper cleanup` removing the bridge.
//! These need root; without it each test is recorded as skipped (`banger_requires`), and
//! under `CI=true` fails.

mod support;

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use banger_proto::helper::{HelperOutcome, HelperRequest, NetworkListing};
use banger_requires::require;
use serde_json::Value;
use support::{Netns, RunningHelper, current_uid, run};

fn done(helper: &RunningHelper, request: HelperRequest) {
    let shown = format!("{request:?}");
    let answer = helper
        .call(request)
        .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
    assert_eq!(answer.outcome, HelperOutcome::Done, "{shown}");
}

/// What `list_network` reports.
fn listing(helper: &RunningHelper) -> NetworkListing {
    match helper.call(HelperRequest::ListNetwork).unwrap().outcome {
        HelperOutcome::Network(listing) => listing,
        other => panic!("list_network answered {other:?}"),
    }
}

fn links(ns: &Netns) -> Vec<Value> {
    serde_json::from_str(&ns.ip(&["-j", "-d", "link", "show"])).unwrap()
}

fn link<'a>(links: &'a [Value], name: &str) -> Option<&'a Value> {
    links.iter().find(|l| l["ifname"] == name)
}

#[test]
fn bridge_and_tap_lifecycle() {
    require!(Root, Tool("ip"));
    let ns = Netns::new();
    let helper = RunningHelper::start(Some(&ns), current_uid(), &[]);

    done(&helper, HelperRequest::EnsureBridge);
    done(&helper, HelperRequest::EnsureBridge);
    let all = links(&ns);
    let bridge = link(&all, "banger0").expect("bridge exists");
    assert_eq!(bridge["linkinfo"]["info_kind"], "bridge");
    let addresses: Vec<Value> =
        serde_json::from_str(&ns.ip(&["-j", "addr", "show", "dev", "banger0"])).unwrap();
    let inet: Vec<String> = addresses[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(inet, ["172.30.0.1/24"], "exactly the gateway, once");

    let tap = "bgt-0123abcd";
    for _ in 0..2 {
        done(&helper, HelperRequest::CreateTap { name: tap.into() });
    }
    let all = links(&ns);
    let created = link(&all, tap).expect("tap exists");
    assert_eq!(created["linkinfo"]["info_kind"], "tun");
    assert_eq!(created["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(created["linkinfo"]["info_data"]["persist"], true);
    assert_eq!(created["master"], "banger0");
    assert!(
        created["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"),
        "{created}"
    );
    let taps = all
        .iter()
        .filter(|l| l["ifname"].as_str().unwrap().starts_with("bgt-"))
        .count();
    assert_eq!(taps, 1);
    assert_eq!(listing(&helper).taps, [tap]);

    // The descriptor arrives over the socket and is attached to that tap.
    let answer = helper
        .call(HelperRequest::OpenTap { name: tap.into() })
        .unwrap();
    assert_eq!(
        answer.outcome,
        HelperOutcome::TapOpened { name: tap.into() }
    );
    let fd = answer.fd.expect("a descriptor");
    let info = banger_sys::tap::tap_info(fd.as_fd()).unwrap();
    assert_eq!(info.name, tap);
    assert!(info.is_tap() && info.has_vnet_hdr(), "{info:?}");
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    assert!(fdinfo.contains(&format!("iff:\t{tap}")), "{fdinfo}");
    drop(fd);
    // Closing the descriptor leaves the persistent tap in place.
    assert!(link(&links(&ns), tap).is_some());

    // A tap that does not exist is not created behind our back by opening it.
    let missing = helper.call(HelperRequest::OpenTap {
        name: "bgt-missing".into(),
    });
    assert!(missing.is_err());
    assert!(link(&links(&ns), "bgt-missing").is_none());

    for _ in 0..2 {
        done(&helper, HelperRequest::DeleteTap { name: tap.into() });
    }
    assert!(link(&links(&ns), tap).is_none());
    assert_eq!(listing(&helper), NetworkListing::default());
    // What `system uninstall` runs; a second run finds nothing to do.
    for _ in 0..2 {
        let helper_binary = support::helper_binary();
        run("ip", &["netns", "exec", &ns.name, helper_binary, "cleanup"]);
    }
    assert!(link(&links(&ns), "banger0").is_none());
}

/// The rules of banger's table whose comment names `ip`: (chain, source match, oifname,
/// verdict).
fn rules_for(ns: &Netns, ip: Ipv4Addr) -> Vec<(String, Value, String, String)> {
    let listing: Value =
        serde_json::from_str(&ns.exec("nft", &["-j", "list", "table", "ip", "banger"])).unwrap();
    let wanted = format!("banger-vm={ip},");
    let mut found = Vec::new();
    for rule in listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
    {
        let comment = rule["comment"].as_str().unwrap_or_default();
        if !comment.starts_with(&wanted) {
            continue;
        }
        let exprs = rule["expr"].as_array().unwrap();
        let mut source = Value::Null;
        let mut oif = String::new();
        let mut verdict = String::new();
        for expr in exprs {
            if let Some(m) = expr.get("match") {
                if m["left"]["payload"]["field"] == "saddr" {
                    source = m["right"].clone();
                }
                if m["left"]["meta"]["key"] == "oifname" {
                    oif = m["right"].as_str().unwrap().to_owned();
                }
            }
            for key in ["accept", "masquerade", "drop"] {
                if expr.get(key).is_some() {
                    verdict = key.to_owned();
                }
            }
        }
        found.push((
            rule["chain"].as_str().unwrap().to_owned(),
            source,
            oif,
            verdict,
        ));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn nat_rules_are_scoped_idempotent_and_removable() {
    require!(Root, Tool("ip"), Tool("nft"));
    let ns = Netns::new();
    // An uplink with a default route; the helper finds it by itself (no --uplink).
    // (A veth pair: this kernel has no dummy interfaces.)
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["link", "set", "up1", "up"]);
    ns.ip(&["addr", "add", "10.99.0.2/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["route", "add", "default", "via", "10.99.0.1"]);
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=0"]);
    let helper = RunningHelper::start(Some(&ns), current_uid(), &[]);
    done(&helper, HelperRequest::EnsureBridge);

    let guest = ip("172.30.0.2");
    let other = ip("172.30.0.20");
    assert_eq!(listing(&helper), NetworkListing::default(), "no table yet");
    for _ in 0..2 {
        done(&helper, HelperRequest::AddNat { guest_ip: guest });
    }
    done(&helper, HelperRequest::AddNat { guest_ip: other });
    assert_eq!(listing(&helper).nat_guests, [guest, other]);
    let expected = |addr: &str| {
        vec![
            (
                "egress".to_owned(),
                Value::from(addr),
                "up0".to_owned(),
                "accept".to_owned(),
            ),
            (
                "postrouting".to_owned(),
                Value::from(addr),
                "up0".to_owned(),
                "masquerade".to_owned(),
            ),
        ]
    };
    // A bare address in nft's JSON is a /32 match (a wider one would be a `prefix`).
    assert_eq!(rules_for(&ns, guest), expected("172.30.0.2"));
    assert_eq!(rules_for(&ns, other), expected("172.30.0.20"));
    let forward = ns.exec("cat", &["/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forward.trim(), "1");
    let table = ns.exec("nft", &["list", "table", "ip", "banger"]);
    assert_eq!(table.matches("jump egress").count(), 1, "{table}");
    assert_eq!(
        table.matches("iifname \"banger0\" drop").count(),
        1,
        "{table}"
    );

    for _ in 0..2 {
        done(&helper, HelperRequest::RemoveNat { guest_ip: guest });
    }
    assert_eq!(rules_for(&ns, guest), []);
    assert_eq!(
        rules_for(&ns, other),
        expected("172.30.0.20"),
        "the other guest keeps its rules"
    );
    done(&helper, HelperRequest::RemoveNat { guest_ip: other });
    assert_eq!(rules_for(&ns, other), []);
    assert_eq!(listing(&helper), NetworkListing::default());

    // Round-trip timings through the socket, for the report.
    let rounds = 20u8;
    let mut adds = Vec::new();
    let mut readds = Vec::new();
    let mut removes = Vec::new();
    for i in 0..rounds {
        let guest_ip = Ipv4Addr::new(172, 30, 0, 100 + i);
        let started = Instant::now();
        done(&helper, HelperRequest::AddNat { guest_ip });
        adds.push(started.elapsed());
        let started = Instant::now();
        done(&helper, HelperRequest::AddNat { guest_ip });
        readds.push(started.elapsed());
    }
    for i in 0..rounds {
        let guest_ip = Ipv4Addr::new(172, 30, 0, 100 + i);
        let started = Instant::now();
        done(&helper, HelperRequest::RemoveNat { guest_ip });
        removes.push(started.elapsed());
    }
    for (name, times) in [
        ("add_nat (new)", &adds),
        ("add_nat (already there)", &readds),
        ("remove_nat", &removes),
    ] {
        let total: Duration = times.iter().sum();
        let min = times.iter().min().unwrap();
        let max = times.iter().max().unwrap();
        eprintln!(
            "MEASURE {name}: mean {:.1} ms, min {:.1} ms, max {:.1} ms over {} round trips",
            total.as_secs_f64() * 1000.0 / times.len() as f64,
            min.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0,
            times.len()
        );
    }
}

#[test]
fn nat_with_iptables_when_asked() {
    require!(Root, Tool("ip"), Tool("iptables"));
    let ns = Netns::new();
    let helper = RunningHelper::start(
        Some(&ns),
        current_uid(),
        &["--uplink", "up0", "--nat-backend", "iptables"],
    );
    let guest = ip("172.30.0.5");
    for _ in 0..2 {
        done(&helper, HelperRequest::AddNat { guest_ip: guest });
    }
    let nat = ns.exec("iptables", &["-w", "-t", "nat", "-S", "POSTROUTING"]);
    let forward = ns.exec("iptables", &["-w", "-S", "FORWARD"]);
    assert_eq!(nat.matches("-s 172.30.0.5/32 -o up0").count(), 1, "{nat}");
    assert_eq!(
        forward.matches("banger-vm=172.30.0.5,").count(),
        2,
        "{forward}"
    );
    assert_eq!(
        forward.matches("banger-base=banger0").count(),
        1,
        "{forward}"
    );
    assert_eq!(listing(&helper).nat_guests, [guest]);
    done(&helper, HelperRequest::RemoveNat { guest_ip: guest });
    assert!(listing(&helper).nat_guests.is_empty());
    let nat = ns.exec("iptables", &["-w", "-t", "nat", "-S", "POSTROUTING"]);
    let forward = ns.exec("iptables", &["-w", "-S", "FORWARD"]);
    assert!(!nat.contains("172.30.0.5"), "{nat}");
    assert!(!forward.contains("172.30.0.5"), "{forward}");
}

/// Runs `work` on a thread that has entered the network namespace `ns` (setns is per
/// thread, so the rest of the test process stays where it is).
fn in_netns<T: Send + 'static>(
    ns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
}

/// From inside `guest`, connects to `server` and returns the address the server saw.
fn peer_seen_by_server(guest: &Netns, server: std::net::SocketAddr) -> std::io::Result<String> {
    in_netns(&guest.name, move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut seen = String::new();
        stream.read_to_string(&mut seen)?;
        Ok(seen)
    })
    .join()
    .unwrap()
}

#[test]
fn nat_lets_only_the_natted_guest_out() {
    require!(Root, Tool("ip"), Tool("nft"));
    // host: the helper's namespace. up: the outside; it has a route back to the pool,
    // so every "cannot get out" below is banger's forward rules and not a missing route,
    // and masquerading shows in the address the server sees. guest: stands in for a VM,
    // on a veth enslaved to the bridge.
    let host = Netns::new();
    let up = Netns::new();
    let guest = Netns::new();
    host.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &up.name,
    ]);
    host.ip(&["addr", "add", "10.99.0.2/24", "dev", "up0"]);
    host.ip(&["link", "set", "up0", "up"]);
    host.ip(&["route", "add", "default", "via", "10.99.0.1"]);
    host.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    up.ip(&["addr", "add", "10.99.0.1/24", "dev", "up1"]);
    up.ip(&["link", "set", "up1", "up"]);
    up.ip(&["route", "add", "172.30.0.0/24", "via", "10.99.0.2"]);

    let helper = RunningHelper::start(Some(&host), current_uid(), &[]);
    done(&helper, HelperRequest::EnsureBridge);
    host.ip(&[
        "link",
        "add",
        "g0",
        "type",
        "veth",
        "peer",
        "name",
        "g1",
        "netns",
        &guest.name,
    ]);
    host.ip(&["link", "set", "g0", "master", "banger0", "up"]);
    guest.ip(&["addr", "add", "172.30.0.2/24", "dev", "g1"]);
    guest.ip(&["link", "set", "g1", "up"]);
    guest.ip(&["route", "add", "default", "via", "172.30.0.1"]);

    // A server in `up` that tells each client the address it connected from. Bound
    // before the thread reports back, so it is ready when we connect.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let _server = in_netns(&up.name, move || {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("10.99.0.1:0").unwrap();
        ready_tx.send(listener.local_addr().unwrap()).unwrap();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let peer = stream.peer_addr().unwrap().ip().to_string();
            let _ = stream.write_all(peer.as_bytes());
        }
    });
    let server = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // Control: before banger has any rules, plain routing lets the guest out unNATed.
    assert_eq!(peer_seen_by_server(&guest, server).unwrap(), "172.30.0.2");

    // Once banger's table exists (another guest's NAT), a guest without NAT stays in.
    done(
        &helper,
        HelperRequest::AddNat {
            guest_ip: ip("172.30.0.99"),
        },
    );
    assert!(
        peer_seen_by_server(&guest, server).is_err(),
        "a guest without NAT got out"
    );

    done(
        &helper,
        HelperRequest::AddNat {
            guest_ip: ip("172.30.0.2"),
        },
    );
    let seen = peer_seen_by_server(&guest, server).unwrap();
    assert_eq!(seen, "10.99.0.2", "the guest's traffic is masqueraded");

    done(
        &helper,
        HelperRequest::RemoveNat {
            guest_ip: ip("172.30.0.2"),
        },
    );
    assert!(
        peer_seen_by_server(&guest, server).is_err(),
        "NAT removal did not stick"
    );
}
