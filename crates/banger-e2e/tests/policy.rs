//! Network policies on a real guest. The root helper and the daemon run in a network
//! namespace made for the test ("the host"), joined by a veth to a second one ("the
//! internet") that runs an HTTP server on two addresses and a test DNS server (the
//! policy resolver's upstream, `BANGER_POLICY_DNS_UPSTREAM`) that logs every name it is
//! asked. A `tiny` guest created with `--allow allowed.test:8080` resolves and fetches
//! that name, and cannot: reach the other address, resolve a denied name (which never
//! reaches the upstream, TXT included), query the DNS server directly (UDP or TCP 53),
//! ping out; on port 443, where allowed.test and denied.test share one address, only a
//! ClientHello naming allowed.test gets through. A daemon killed and restarted re-applies it. `vm policy set` on the running guest swaps what is reachable at once; the
//! rules are gone after delete. No traffic leaves the namespaces the test creates.
//!
//! Needs root plus what every VM test needs; otherwise it is a recorded skip
//! (`require_vm!`), fatal under `CI=true`.

// Test code: skips and measurements go to stderr, and the lab's tools run directly.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use banger_e2e::{HostOptions, TestHost, bin_dir, require_vm, wait_until};

const UPLINK: &str = "bgpu0";
const UPLINK_HOST_IP: &str = "172.31.0.1";
/// The test DNS server and the allowed HTTP server.
const INTERNET_IP: &str = "172.31.0.2";
/// The same HTTP server on an address no name points to.
const OTHER_IP: &str = "172.31.0.3";
const HTTP_PORT: u16 = 8080;

/// A DNS server answering A queries from a fixed table (NXDOMAIN otherwise, TXT with a
/// fixed string), logging each question name and type, one per line, to argv[2]; on TCP
/// 53 it sends `tcp53` to whoever connects; on TCP 443 (both addresses: a TLS server
/// shared by two names) it logs the first bytes it got and sends `tls-ok`.
const DNS_SERVER: &str = r#"
import socket, struct, sys, threading
def tcp():
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((sys.argv[1], 53))
    t.listen(8)
    while True:
        c, _ = t.accept()
        c.sendall(b"tcp53")
        c.close()
threading.Thread(target=tcp, daemon=True).start()
def tls():
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", 443))
    t.listen(8)
    while True:
        c, _ = t.accept()
        first = c.recv(4096)
        log.write("tls %d %s\n" % (len(first), "hello" if first[:1] == b"\x16" else "other"))
        c.sendall(b"tls-ok")
        c.close()
threading.Thread(target=tls, daemon=True).start()
table = {"allowed.test": "172.31.0.2", "denied.test": "172.31.0.2", "probe.test": "172.31.0.2"}
log = open(sys.argv[2], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
log.write("ready\n")
while True:
    q, peer = s.recvfrom(2048)
    if len(q) < 12:
        continue
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace").lower())
        i += 1 + q[i]
    name = ".".join(labels)
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    log.write("%s %d\n" % (name, qtype))
    addr = table.get(name)
    flags = 0x8180 if addr else 0x8183
    answers = b""
    if addr and qtype == 1:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
    elif addr and qtype == 16:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 60, 3) + b"\x02ok"
    count = 1 if answers else 0
    s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, count, 0, 0) + question + answers, peer)
"#;

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// The two namespaces, their servers and the helper; dropped after the [`TestHost`]
/// (declare it first), it stops the processes and deletes the namespaces.
struct Lab {
    ns: String,
    internet: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Result<Lab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            ns: format!("bgpol-{id}"),
            internet: format!("bgpoli-{id}"),
            dir: tempfile::Builder::new().prefix("banger-pol-").tempdir()?,
            children: Vec::new(),
        };
        ip(&["netns", "add", &lab.ns])?;
        ip(&["netns", "add", &lab.internet])?;
        for ns in [&lab.ns, &lab.internet] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            &lab.ns,
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "bgpu1",
            "netns",
            &lab.internet,
        ])?;
        ip(&[
            "-n",
            &lab.ns,
            "addr",
            "add",
            &format!("{UPLINK_HOST_IP}/29"),
            "dev",
            UPLINK,
        ])?;
        ip(&["-n", &lab.ns, "link", "set", UPLINK, "up"])?;
        for address in [INTERNET_IP, OTHER_IP] {
            ip(&[
                "-n",
                &lab.internet,
                "addr",
                "add",
                &format!("{address}/29"),
                "dev",
                "bgpu1",
            ])?;
        }
        ip(&["-n", &lab.internet, "link", "set", "bgpu1", "up"])?;
        ip(&["-n", &lab.ns, "route", "add", "default", "via", INTERNET_IP])?;
        Ok(lab)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn spawn_in(&mut self, ns: &str, argv: &[&str], log: &str) -> Result<()> {
        let log = std::fs::File::create(self.path(log))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.push(child);
        Ok(())
    }

    fn start_servers(&mut self) -> Result<()> {
        let www = self.path("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("marker.txt"), "banger-ok\n")?;
        let internet = self.internet.clone();
        let port = HTTP_PORT.to_string();
        let www = www.display().to_string();
        self.spawn_in(
            &internet,
            &[
                "python3",
                "-u",
                "-m",
                "http.server",
                &port,
                "--bind",
                "0.0.0.0",
                "--directory",
                &www,
            ],
            "http.log",
        )?;
        std::fs::write(self.path("dns.py"), DNS_SERVER)?;
        let script = self.path("dns.py").display().to_string();
        let queries = self.path("queries.log").display().to_string();
        self.spawn_in(
            &internet,
            &["python3", "-u", &script, INTERNET_IP, &queries],
            "dns.log",
        )?;
        wait_until("the lab's servers listen", Duration::from_secs(20), || {
            let (http, dns) = (self.read("http.log"), self.read("queries.log"));
            if http.contains("Serving HTTP") && dns.contains("ready") {
                Ok(())
            } else {
                Err(format!(
                    "http: {http}\ndns: {dns}\n{}",
                    self.read("dns.log")
                ))
            }
        });
        Ok(())
    }

    fn helper_socket(&self) -> PathBuf {
        self.path("helper.sock")
    }

    fn start_helper(&mut self, host: &TestHost) -> Result<()> {
        self.start_helper_with(host, &[])
    }

    /// The helper with extra arguments (`--fail-op OP`: fault injection).
    fn start_helper_with(&mut self, host: &TestHost, extra: &[&str]) -> Result<()> {
        let helper = bin_dir().join("banger-helper").display().to_string();
        let state = host.state_dir().display().to_string();
        let runtime = host.root().join("runtime").display().to_string();
        let socket = self.helper_socket().display().to_string();
        let ns = self.ns.clone();
        self.spawn_in(
            &ns,
            &[
                &helper,
                "--owner-uid",
                "0",
                "--state-dir",
                &state,
                "--runtime-dir",
                &runtime,
                "--socket",
                &socket,
                "--uplink",
                UPLINK,
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<&str>>(),
            "helper.log",
        )?;
        let socket = self.helper_socket();
        wait_until("banger-helper listens", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .map(drop)
                .map_err(|e| format!("{e}; helper log:\n{}", self.read("helper.log")))
        });
        Ok(())
    }

    fn ruleset(&self) -> String {
        run(Command::new("ip").args(["netns", "exec", &self.ns, "nft", "list", "ruleset"]))
            .unwrap_or_default()
    }

    /// The names the test DNS server was asked, in order.
    fn queries(&self) -> Vec<String> {
        self.read("queries.log")
            .lines()
            .filter(|l| *l != "ready")
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["netns", "del", &self.internet]);
    }
}

/// Pulls the tiny image and its kernel into the shared cache from the host's own
/// namespace: the lab's namespaces have no route to the Debian mirror.
fn warm_cache() {
    let host = TestHost::start().expect("a daemon outside the lab");
    let image = host.banger_json(&["image", "pull", "tiny"]);
    let kernel = image["kernel"]
        .as_str()
        .expect("the image names its kernel");
    host.banger_ok(&["kernel", "pull", kernel]);
}

/// One probe run in the guest: a shell line and whether it must succeed.
struct Probe {
    what: &'static str,
    script: String,
    allowed: bool,
}

fn probe(what: &'static str, script: String, allowed: bool) -> Probe {
    Probe {
        what,
        script,
        allowed,
    }
}

fn wget(address: &str) -> String {
    format!("timeout 5 wget -q -O - http://{address}:{HTTP_PORT}/marker.txt")
}

/// Runs each probe in the guest and checks its outcome; returns how many ran.
fn check(lab: &Lab, host: &TestHost, vm: &str, probes: &[Probe]) -> usize {
    for p in probes {
        let started = Instant::now();
        let out = host.exec(vm, &["sh", "-c", &p.script]);
        let ok = out.status.success();
        eprintln!(
            "probe {:<60} {} in {:.1}s",
            p.what,
            if ok { "succeeded" } else { "failed" },
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            ok,
            p.allowed,
            "{}: `{}` exited {:?}\nstdout: {}\nstderr: {}\n{}",
            p.what,
            p.script,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            format_args!(
                "upstream saw: {:?}\nruleset:\n{}",
                lab.queries(),
                lab.ruleset()
            )
        );
    }
    probes.len()
}

/// After the probes above: `vm show` counts what was denied, `vm logs --policy` lists
/// each denied destination and refused name, and `vm policy check` says why (exit 0
/// allowed, 1 denied). Returns how many cases it tried.
fn denials_are_counted_listed_and_explained(host: &TestHost) -> usize {
    let shown = host.vm_show("pol");
    assert!(
        shown["policy_dropped_packets"].as_u64().unwrap_or(0) > 0
            && shown["policy_denied_destinations"].as_u64().unwrap_or(0) >= 3,
        "vm show counts the denials: {shown}"
    );
    let log = host.banger_json(&["vm", "logs", "--policy", "pol"]);
    let denied = log["denied"].as_array().cloned().unwrap_or_default();
    let has = |address: &str, protocol: &str, port: Option<u16>| {
        denied.iter().any(|d| {
            d["address"] == address
                && d["protocol"] == protocol
                && d["port"].as_u64().map(|p| p as u16) == port
                && d["packets"].as_u64().unwrap_or(0) > 0
        })
    };
    let listed = [
        (OTHER_IP, "tcp", Some(HTTP_PORT)),
        (INTERNET_IP, "tcp", Some(8081)),
        (INTERNET_IP, "udp", Some(53)),
        (INTERNET_IP, "tcp", Some(53)),
        (INTERNET_IP, "icmp", None),
    ];
    for (address, protocol, port) in listed {
        assert!(
            has(address, protocol, port),
            "{address} {protocol} {port:?} not listed as denied: {log}"
        );
    }
    let refused: Vec<&str> = log["refused_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str())
        .collect();
    for name in ["denied.test", "c2vjcmv0.denied.test"] {
        assert!(
            refused.contains(&name),
            "{name} not among the refused: {log}"
        );
    }
    let text = host.banger_ok(&["vm", "logs", "--policy", "pol"]);
    assert!(
        text.contains(&format!("denied tcp    {OTHER_IP}:{HTTP_PORT}")),
        "{text}"
    );
    // (destination, allowed, rule, a word of the reason)
    let checks: [(String, bool, Option<&str>, &str); 7] = [
        (
            "allowed.test:8080".into(),
            true,
            Some("allowed.test:8080"),
            "resolver",
        ),
        (
            "ALLOWED.test.:443".into(),
            true,
            Some("allowed.test:443"),
            "SNI",
        ),
        ("allowed.test:22".into(), false, None, "only on port"),
        ("denied.test:8080".into(), false, None, "REFUSED"),
        // Answered to this guest for allowed.test: open on the allowed port only.
        (format!("{INTERNET_IP}:{HTTP_PORT}"), true, None, "answered"),
        (format!("{INTERNET_IP}:8081"), false, None, "not answered"),
        (
            format!("{OTHER_IP}:{HTTP_PORT}"),
            false,
            None,
            "no address rule",
        ),
    ];
    for (dest, allowed, rule, word) in &checks {
        let out = host.banger(&["vm", "policy", "check", "pol", dest, "--json"]);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("vm policy check {dest}: {e}: {out:?}"));
        assert_eq!(
            out.status.code(),
            Some(if *allowed { 0 } else { 1 }),
            "{dest}: {answer}"
        );
        assert_eq!(answer["allowed"], *allowed, "{dest}: {answer}");
        assert_eq!(answer["rule"].as_str(), *rule, "{dest}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap_or("").contains(word),
            "{dest}: {answer}"
        );
    }
    eprintln!("policy check cases tried: {}", checks.len());
    listed.len() + 2 + checks.len()
}

#[test]
fn a_policy_guest_reaches_only_what_it_is_allowed() -> Result<()> {
    require_vm!(Root, Tool("ip"), Tool("nft"), Tool("python3"));
    warm_cache();
    let mut lab = Lab::new()?;
    lab.start_servers()?;
    let mut host = lab_host(&lab)?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    // A create with a policy fails when the policy resolver is not served (fail closed),
    // so the create below also checks that the daemon serves it.
    let started = Instant::now();
    host.banger_ok(&[
        "vm",
        "create",
        "--image",
        "tiny",
        "--name",
        "pol",
        "--allow",
        "allowed.test:8080",
        "--allow",
        "allowed.test:443",
    ]);
    eprintln!(
        "MEASURE create with a policy: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let shown = host.banger_json(&["vm", "show", "pol"]);
    assert_eq!(
        shown["policy"],
        serde_json::json!(["allowed.test:8080", "allowed.test:443"]),
        "{shown}"
    );
    let ruleset = lab.ruleset();
    assert!(ruleset.contains("banger-pol="), "{ruleset}");

    let resolv = host.exec_ok("pol", &["cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 172.30.0.1"), "{resolv}");

    // The guest's first lookup (its link just came up) may need a retry.
    let started = Instant::now();
    wait_until(
        "the guest resolves the allowed name",
        Duration::from_secs(30),
        || {
            let out = host.exec(
                "pol",
                &["sh", "-c", "timeout 4 nslookup -type=a allowed.test 2>&1"],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(INTERNET_IP) {
                Ok(())
            } else {
                Err(format!(
                    "{text}\nupstream saw: {:?}\nhelper log:\n{}",
                    lab.queries(),
                    lab.read("helper.log")
                ))
            }
        },
    );
    eprintln!(
        "MEASURE first allowed lookup answered after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // One query per lookup (`-type=a`): an A and an AAAA query sent at once from one
    // socket race each other in conntrack's redirect and one may be dropped (retried
    // after 5 s); see ARCHITECTURE.md.
    let lookup =
        |name: &str| format!("timeout 6 nslookup -type=a {name} 2>&1 | grep -q {INTERNET_IP}");
    let mut tried = check(
        &lab,
        &host,
        "pol",
        &[
            probe(
                "the allowed name resolves (banger's resolver)",
                lookup("allowed.test"),
                true,
            ),
            probe(
                "the allowed name's address on the allowed port",
                wget(INTERNET_IP),
                true,
            ),
            probe("an address no allowed name has", wget(OTHER_IP), false),
            probe(
                "the allowed address on another port",
                format!("timeout 5 wget -q -O - http://{INTERNET_IP}:8081/"),
                false,
            ),
            probe(
                "a denied name does not resolve",
                lookup("denied.test"),
                false,
            ),
            probe(
                "a TXT query under a denied domain (a tunnel)",
                "timeout 6 nslookup -type=txt c2VjcmV0.denied.test 2>&1 | grep -q ok".into(),
                false,
            ),
            probe(
                "DNS straight to the DNS server (UDP 53)",
                format!(
                    "timeout 6 nslookup -type=a probe.test {INTERNET_IP} 2>&1 | grep -q {INTERNET_IP}"
                ),
                false,
            ),
            probe(
                "TCP 53 to the DNS server",
                format!("echo | timeout 5 nc {INTERNET_IP} 53 | grep -q tcp53"),
                false,
            ),
            probe("ICMP out", format!("ping -c 1 -W 2 {INTERNET_IP}"), false),
            probe(
                "ICMP to the gateway",
                "ping -c 1 -W 2 172.30.0.1".into(),
                false,
            ),
        ],
    );

    // Port 443 goes through the SNI check: allowed.test and denied.test share one address.
    let tls = |server: Option<&str>, to: &str| {
        let hello: String = banger_net::sni::client_hello(server)
            .iter()
            .map(|b| format!("\\{b:03o}"))
            .collect();
        format!("printf '{hello}' | timeout 5 nc {to} 443 | grep -q tls-ok")
    };
    tried += check(
        &lab,
        &host,
        "pol",
        &[
            probe(
                "TLS naming the allowed server",
                tls(Some("allowed.test"), INTERNET_IP),
                true,
            ),
            probe(
                "TLS naming a denied server on the same address",
                tls(Some("denied.test"), INTERNET_IP),
                false,
            ),
            probe("TLS without a server name", tls(None, INTERNET_IP), false),
            probe(
                "TLS naming the allowed server at an address not answered for it",
                tls(Some("allowed.test"), OTHER_IP),
                false,
            ),
        ],
    );
    let tls_seen: Vec<String> = lab
        .queries()
        .into_iter()
        .filter(|q| q.starts_with("tls "))
        .collect();
    assert_eq!(
        tls_seen.len(),
        1,
        "only the allowed TLS connection reached the server: {tls_seen:?}"
    );
    assert!(
        tls_seen[0].ends_with(" hello"),
        "the ClientHello was replayed: {tls_seen:?}"
    );

    // Nothing the policy refused reached the upstream: no denied name, no direct probe.
    let queries: Vec<String> = lab
        .queries()
        .into_iter()
        .filter(|q| !q.starts_with("tls "))
        .collect();
    assert!(
        queries.iter().any(|q| q.starts_with("allowed.test ")),
        "the allowed name was never forwarded: {queries:?}"
    );
    for leaked in ["denied.test", "c2vjcmv0.denied.test", "probe.test"] {
        assert!(
            !queries.iter().any(|q| q.starts_with(&format!("{leaked} "))),
            "{leaked} reached the upstream: {queries:?}"
        );
    }

    let shown = host.banger_json(&["vm", "policy", "show", "pol"]);
    let dropped = shown["dropped_packets"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "no drops counted: {shown}");
    eprintln!("vm policy show: {dropped} packets dropped");
    tried += denials_are_counted_listed_and_explained(&host);

    // The daemon killed and restarted: its reconcile re-applies the policy and the
    // resolver knows the guest again.
    host.kill_daemon(9)?;
    host.start_daemon()?;
    tried += check(
        &lab,
        &host,
        "pol",
        &[
            probe(
                "after a daemon restart, the allowed name",
                lookup("allowed.test"),
                true,
            ),
            probe(
                "after a daemon restart, its address",
                wget(INTERNET_IP),
                true,
            ),
            probe(
                "after a daemon restart, a denied name",
                lookup("denied.test"),
                false,
            ),
        ],
    );
    let ruleset = lab.ruleset();
    assert_eq!(
        ruleset.matches("jump g_172_30_0_").count(),
        2,
        "one set of rules after the re-apply:\n{ruleset}"
    );

    // Changed on the running VM, at once: the other address opens, the name closes.
    let started = Instant::now();
    host.banger_ok(&[
        "vm",
        "policy",
        "set",
        "pol",
        "--allow",
        &format!("{OTHER_IP}:{HTTP_PORT}"),
    ]);
    eprintln!(
        "MEASURE vm policy set on a running VM: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    tried += check(
        &lab,
        &host,
        "pol",
        &[
            probe("the newly allowed address", wget(OTHER_IP), true),
            probe("the name no longer allowed", lookup("allowed.test"), false),
            probe(
                "its address, learned before the change",
                wget(INTERNET_IP),
                false,
            ),
        ],
    );
    host.banger_ok(&["vm", "policy", "set", "pol", "--deny-all"]);
    tried += check(
        &lab,
        &host,
        "pol",
        &[probe("anything, under --deny-all", wget(OTHER_IP), false)],
    );
    eprintln!("policy probes tried in the guest: {tried}");

    host.banger_ok(&["vm", "delete", "--force", "pol"]);
    let ruleset = lab.ruleset();
    assert!(
        !ruleset.contains("banger-pol=") && !ruleset.contains("g_172_30"),
        "policy rules outlived the VM:\n{ruleset}"
    );
    Ok(())
}

/// A host for the lab: the daemon in its namespace, the lab's helper, the test DNS
/// server as the policy resolver's upstream.
fn lab_host(lab: &Lab) -> Result<TestHost> {
    TestHost::prepare(HostOptions {
        netns: Some(lab.ns.clone()),
        env: vec![
            (
                "BANGER_HELPER_SOCKET".into(),
                lab.helper_socket().display().to_string(),
            ),
            (
                "BANGER_POLICY_DNS_UPSTREAM".into(),
                format!("{INTERNET_IP}:53"),
            ),
        ],
        ..HostOptions::default()
    })
}

/// The guest addresses of the pool (172.30.0.N, N > 1) a ruleset names.
fn guest_addresses_in(ruleset: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in ruleset.match_indices("172.30.0.") {
        let digits: String = ruleset[at + 9..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !matches!(digits.as_str(), "0" | "1") {
            found.push(format!("172.30.0.{digits}"));
        }
    }
    found
}

/// Fail closed: a helper that cannot install a policy (`--fail-op set_policy`, the
/// helper's fault injection for tests) makes `vm create --allow` and `--deny-all` fail
/// cleanly, leaving no VM (row, directory, VMM), no tap, no NAT and no policy rule; on
/// the same helper a VM without a policy still starts, so the failure was the policy's.
#[test]
fn a_helper_failing_to_install_the_policy_starts_no_vm_and_leaks_nothing() -> Result<()> {
    require_vm!(Root, Tool("ip"), Tool("nft"), Tool("python3"));
    warm_cache();
    let mut lab = Lab::new()?;
    lab.start_servers()?;
    let mut host = lab_host(&lab)?;
    lab.start_helper_with(&host, &["--fail-op", "set_policy"])?;
    host.start_daemon()?;
    let cases: [&[&str]; 2] = [&["--allow", "allowed.test:8080"], &["--deny-all"]];
    for extra in cases {
        let mut args = vec!["vm", "create", "--image", "tiny", "--name", "closed"];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let out = host.banger(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "create {} with the helper failing set_policy: exit {:?} in {:.1}s",
            extra.join(" "),
            out.status.code(),
            started.elapsed().as_secs_f64()
        );
        assert!(!out.status.success(), "{extra:?} started open: {stderr}");
        assert!(
            stderr.contains("set_policy"),
            "the error names the step: {stderr}"
        );
        host.assert_no_vm_left(&format!("after the failed create {extra:?}"));
        let ruleset = lab.ruleset();
        assert!(
            !ruleset.contains("banger-pol=") && !ruleset.contains("g_172_30"),
            "{extra:?}: policy rules left:\n{ruleset}"
        );
        assert_eq!(
            guest_addresses_in(&ruleset),
            Vec::<String>::new(),
            "{extra:?}: rules (NAT) for a guest left:\n{ruleset}"
        );
        let links = ip(&["-n", &lab.ns, "-o", "link", "show"])?;
        assert!(!links.contains("bgt-"), "{extra:?}: a tap left:\n{links}");
    }
    // The control: the same helper starts a VM that has no policy.
    host.create_vm("open", &["--image", "tiny", "--nat"]);
    let links = ip(&["-n", &lab.ns, "-o", "link", "show"])?;
    assert!(
        links.contains("bgt-"),
        "the control VM has its tap:\n{links}"
    );
    host.banger_ok(&["vm", "delete", "--force", "open"]);
    host.assert_no_vm_left("after the control");
    eprintln!("fail-closed cases tried: 3");
    Ok(())
}

/// `banger mcp` on the lab: `vm_run` with an allow-list reaches the allowed destination
/// and not another address; a VM made by `vm_create` with an allow-list and forked with
/// `vm_fork` gives a fork under the same policy (its own rules; the other address
/// still refused); the run profile owns the fork.
#[test]
fn mcp_vm_run_with_an_allow_list_and_its_forks_keep_to_the_policy() -> Result<()> {
    require_vm!(Root, Tool("ip"), Tool("nft"), Tool("python3"));
    warm_cache();
    let mut lab = Lab::new()?;
    lab.start_servers()?;
    let mut host = lab_host(&lab)?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    let mut mcp = banger_e2e::mcp::Mcp::start(&host, &["--profile", "run"]);
    // The first lookup (the guest's link just came up) may need a retry.
    let script = format!(
        "for i in 1 2 3 4 5 6; do timeout 4 nslookup -type=a allowed.test 2>&1 | grep -q {INTERNET_IP} && break; sleep 1; done; \
         {} && echo reached; if {} >/dev/null 2>&1; then echo other-reached; else echo other-refused; fi",
        wget(INTERNET_IP),
        wget(OTHER_IP)
    );
    let started = Instant::now();
    let run = mcp.call_ok(
        "vm_run",
        serde_json::json!({"image": "tiny", "allow": [format!("allowed.test:{HTTP_PORT}")],
                           "argv": ["sh", "-c", script]}),
    );
    banger_e2e::report_timing("mcp vm_run with an allow-list (tiny)", started.elapsed());
    let stdout = run["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.contains("banger-ok") && stdout.contains("reached\nother-refused"),
        "{run}\nupstream saw: {:?}",
        lab.queries()
    );
    assert_eq!(run["vm"], serde_json::Value::Null, "vm_run deleted its VM");

    let created = mcp.call_ok(
        "vm_create",
        serde_json::json!({"image": "tiny", "name": "src",
                           "allow": [format!("allowed.test:{HTTP_PORT}")]}),
    );
    assert_eq!(
        created["policy"],
        serde_json::json!([format!("allowed.test:{HTTP_PORT}")])
    );
    let started = Instant::now();
    let forked = mcp.call_ok(
        "vm_fork",
        serde_json::json!({"source": "src", "name": "kid"}),
    );
    banger_e2e::report_timing("mcp vm_fork of a running tiny VM", started.elapsed());
    assert_eq!(forked["vms"][0]["name"], "kid", "{forked}");
    assert_eq!(
        forked["vms"][0]["created_by_this_session"], true,
        "{forked}"
    );
    assert_eq!(
        forked["vms"][0]["policy"],
        serde_json::json!([format!("allowed.test:{HTTP_PORT}")]),
        "the fork keeps its source's policy: {forked}"
    );
    let ruleset = lab.ruleset();
    assert_eq!(
        ruleset.matches("jump g_172_30_0_").count(),
        4,
        "the source and the fork each have their rules:\n{ruleset}"
    );
    let exec = mcp.call_ok(
        "vm_exec",
        serde_json::json!({"vm": "kid", "argv": ["sh", "-c", script]}),
    );
    let stdout = exec["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.contains("banger-ok") && stdout.contains("reached\nother-refused"),
        "the fork is confined like its source: {exec}"
    );
    // Another session did not make `src`: it may not fork it.
    let mut other = banger_e2e::mcp::Mcp::start(&host, &["--profile", "run"]);
    let id = other.start_call("vm_fork", serde_json::json!({"source": "src"}));
    let refused = other.wait(id, None);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    other.finish();
    for vm in ["kid", "src"] {
        mcp.call_ok("vm_delete", serde_json::json!({"vm": vm, "force": true}));
    }
    mcp.finish();
    host.assert_no_vm_left("after the MCP session");
    let ruleset = lab.ruleset();
    assert!(
        !ruleset.contains("banger-pol=") && !ruleset.contains("g_172_30"),
        "policy rules outlived the VMs:\n{ruleset}"
    );
    eprintln!("mcp policy cases tried: 6");
    Ok(())
}
