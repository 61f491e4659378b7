//! End-to-end tests of guest networking and guest access on real guests: the root helper
//! and the daemon run inside a network namespace made for the test ("the host"), joined
//! by a veth pair to a second namespace ("the internet") that runs an HTTP server
//! recording client addresses. No traffic leaves the namespaces the test creates.
//!
//! Needs root (namespaces, the helper) plus what every VM test needs; otherwise each test
//! is a recorded skip (`require_lab!`), fatal under `CI=true`.

// Test code: measurements go to stderr, and the lab's tools run directly.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use banger_e2e::{HostOptions, TestHost, bin_dir, require_vm, tail, wait_until};

/// The guest pool inside the lab's host namespace (the helper's default).
const BRIDGE_IP: &str = "172.30.0.1";
/// The lab's uplink: the host side of the veth pair, and the internet side.
const UPLINK: &str = "bgup0";
const UPLINK_HOST_IP: &str = "172.31.0.1";
const INTERNET_IP: &str = "172.31.0.2";
const HTTP_PORT: u16 = 8080;
const DNS_PORT: &str = "42069";

/// What every test here needs besides a VM host: root for the namespaces and the helper,
/// and the lab's tools.
macro_rules! require_lab {
    () => {
        require_vm!(
            Root,
            Tool("ip"),
            Tool("nft"),
            Tool("python3"),
            Tool("dig"),
            Tool("ssh")
        )
    };
}

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

/// Two namespaces, the veth between them, the HTTP server and the root helper. Dropped
/// after the [`TestHost`] (declare it first), it stops both processes and deletes the
/// namespaces with everything in them.
struct Lab {
    ns: String,
    internet: String,
    dir: tempfile::TempDir,
    http: Option<Child>,
    helper: Option<Child>,
}

impl Lab {
    /// `dig +short NAME` against the daemon's DNS on the bridge, from the host's
    /// namespace: `timeout` seconds a try, `tries` tries.
    fn dig(&self, name: &str, timeout: u32, tries: u32) -> Result<String> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "dig",
            &format!("@{BRIDGE_IP}"),
            "-p",
            DNS_PORT,
            name,
            "+short",
            &format!("+time={timeout}"),
            &format!("+tries={tries}"),
        ]))
    }

    fn new() -> Result<Lab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            ns: format!("bgnet-{id}"),
            internet: format!("bginet-{id}"),
            dir: tempfile::Builder::new().prefix("banger-lab-").tempdir()?,
            http: None,
            helper: None,
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
            "bgup1",
            "netns",
            &lab.internet,
        ])?;
        ip(&[
            "-n",
            &lab.ns,
            "addr",
            "add",
            &format!("{UPLINK_HOST_IP}/30"),
            "dev",
            UPLINK,
        ])?;
        ip(&["-n", &lab.ns, "link", "set", UPLINK, "up"])?;
        ip(&[
            "-n",
            &lab.internet,
            "addr",
            "add",
            &format!("{INTERNET_IP}/30"),
            "dev",
            "bgup1",
        ])?;
        ip(&["-n", &lab.internet, "link", "set", "bgup1", "up"])?;
        // The host's default route goes to "the internet", which has no route back to
        // the guest pool: only masqueraded traffic gets answers.
        ip(&["-n", &lab.ns, "route", "add", "default", "via", INTERNET_IP])?;
        // The lab host's resolvers (`ip netns exec` mounts this over /etc/resolv.conf): a
        // loopback stub a guest cannot use, and a server "on the internet" it can.
        let etc = PathBuf::from(format!("/etc/netns/{}", lab.ns));
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver 127.0.0.53\nnameserver {INTERNET_IP}\n"),
        )?;
        Ok(lab)
    }

    fn http_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("http.log")).unwrap_or_default()
    }

    /// Serves `marker.txt` from "the internet", logging each client's address.
    fn start_http(&mut self) -> Result<()> {
        let root = self.dir.path().join("www");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("marker.txt"), "banger-ok\n")?;
        let log = std::fs::File::create(self.dir.path().join("http.log"))?;
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.internet,
                "python3",
                "-u",
                "-m",
                "http.server",
            ])
            .arg(HTTP_PORT.to_string())
            .args(["--bind", INTERNET_IP, "--directory"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.http = Some(child);
        wait_until("the HTTP server listens", Duration::from_secs(20), || {
            let log = self.http_log();
            if log.contains("Serving HTTP") {
                Ok(())
            } else {
                Err(log)
            }
        });
        Ok(())
    }

    fn helper_socket(&self) -> PathBuf {
        self.dir.path().join("helper.sock")
    }

    /// Starts banger-helper as root inside the lab's host namespace.
    fn start_helper(&mut self, host: &TestHost) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("helper.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin_dir().join("banger-helper"))
            .args(["--owner-uid", "0", "--state-dir"])
            .arg(host.state_dir())
            .arg("--runtime-dir")
            .arg(host.root().join("runtime"))
            .arg("--socket")
            .arg(self.helper_socket())
            .args(["--uplink", UPLINK])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.helper = Some(child);
        let socket = self.helper_socket();
        wait_until("banger-helper listens", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .map(drop)
                .map_err(|e| format!("{e}; helper log:\n{}", self.helper_log()))
        });
        Ok(())
    }

    fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    /// `nft -j list ruleset` in the lab's host namespace.
    fn ruleset(&self) -> serde_json::Value {
        let text =
            run(Command::new("ip")
                .args(["netns", "exec", &self.ns, "nft", "-j", "list", "ruleset"]))
            .expect("nft list ruleset");
        serde_json::from_str(&text).expect("nft JSON")
    }

    /// The NAT (masquerade) rules for `guest_ip`, each checked to match exactly that
    /// address (a `/32`, which nft shows as a bare address, never a prefix).
    fn nat_rules(&self, guest_ip: &str) -> Vec<serde_json::Value> {
        let ruleset = self.ruleset();
        let rules: Vec<serde_json::Value> = ruleset["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule["table"] == "banger")
            .filter(|rule| rule.to_string().contains(&format!("\"{guest_ip}\"")))
            .filter(|rule| rule.to_string().contains("masquerade"))
            .cloned()
            .collect();
        for rule in &rules {
            let text = rule.to_string();
            assert!(!text.contains("prefix"), "NAT rule is not a /32: {text}");
        }
        rules
    }

    /// Every rule in banger's table that mentions `guest_ip`.
    fn rules_mentioning(&self, guest_ip: &str) -> usize {
        self.ruleset()["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule.to_string().contains(&format!("\"{guest_ip}\"")))
            .count()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [self.helper.take(), self.http.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["netns", "del", &self.internet]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

/// Pulls the tiny image and its kernel into the shared cache from the host's own
/// namespace: the lab's namespaces have no route to the Debian mirror.
fn warm_cache() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let host = TestHost::start().expect("a daemon outside the lab");
        let image = host.banger_json(&["image", "pull", "tiny"]);
        let kernel = image["kernel"]
            .as_str()
            .expect("the image names its kernel");
        host.banger_ok(&["kernel", "pull", kernel]);
    });
}

/// A lab with the helper and a daemon inside it.
fn lab_and_host() -> Result<(Lab, TestHost)> {
    warm_cache();
    let mut lab = Lab::new()?;
    lab.start_http()?;
    let mut host = TestHost::prepare(HostOptions {
        netns: Some(lab.ns.clone()),
        env: vec![(
            "BANGER_HELPER_SOCKET".into(),
            lab.helper_socket().display().to_string(),
        )],
        ..HostOptions::default()
    })?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    let log = host.daemon_log();
    assert!(
        !log.contains("guest networking is off"),
        "the daemon did not enable networking:\n{}\nhelper log:\n{}",
        tail(&log, 20),
        lab.helper_log()
    );
    Ok((lab, host))
}

fn address_of(host: &TestHost, vm: &str) -> String {
    let info = host.banger_json(&["vm", "show", vm]);
    info["address"]
        .as_str()
        .unwrap_or_else(|| panic!("VM {vm} has no address: {info}"))
        .to_string()
}

/// `ip=<addr>::<gw>:<mask>:<host>:eth0:off` from a guest's `/proc/cmdline`.
fn ip_param(cmdline: &str) -> Option<(String, String)> {
    let param = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("ip="))?;
    let fields: Vec<&str> = param.split(':').collect();
    Some((fields.first()?.to_string(), fields.get(4)?.to_string()))
}

#[test]
fn run_exit_code_and_parallel_runs_get_distinct_names_and_addresses() -> Result<()> {
    require_lab!();
    let (_lab, host) = lab_and_host()?;

    let out = host.banger(&[
        "vm", "run", "--rm", "--image", "tiny", "--", "sh", "-c", "exit 42",
    ]);
    assert_eq!(
        out.status.code(),
        Some(42),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Measured, not asserted: the whole `vm run` against the guest's boot-to-ready.
    let started = Instant::now();
    let out = host.banger(&["vm", "run", "--rm", "--image", "tiny", "--", "true"]);
    let total = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ready = stderr
        .lines()
        .find(|l| l.contains("ready in"))
        .unwrap_or("(no ready line)");
    eprintln!("vm run --rm -- true: total {total:.1?}; {ready}");

    let outputs: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    host.banger_ok(&[
                        "vm",
                        "run",
                        "--rm",
                        "--image",
                        "tiny",
                        "--",
                        "cat",
                        "/proc/cmdline",
                    ])
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("vm run thread"))
            .collect()
    });
    let params: Vec<(String, String)> = outputs
        .iter()
        .map(|out| ip_param(out).unwrap_or_else(|| panic!("no ip= in {out:?}")))
        .collect();
    assert_ne!(params[0].0, params[1].0, "same address: {params:?}");
    assert_ne!(params[0].1, params[1].1, "same name: {params:?}");
    for (address, _) in &params {
        assert!(address.starts_with("172.30.0."), "{params:?}");
    }
    Ok(())
}

#[test]
fn nat_guest_reaches_the_internet_masqueraded_and_rules_follow_the_lifecycle() -> Result<()> {
    require_lab!();
    let (lab, host) = lab_and_host()?;
    let url = format!("http://{INTERNET_IP}:{HTTP_PORT}/marker.txt");

    host.banger_ok(&[
        "vm", "create", "--image", "tiny", "--nat", "--name", "natty",
    ]);
    let address = address_of(&host, "natty");
    assert_eq!(lab.nat_rules(&address).len(), 1, "{}", lab.ruleset());

    // busybox's `wget -T` crashes in this busybox build; `timeout` bounds it instead.
    let fetched = host.banger_ok(&[
        "vm", "exec", "natty", "--", "timeout", "20", "wget", "-q", "-O", "-", &url,
    ]);
    assert_eq!(fetched.trim(), "banger-ok");
    let log = lab.http_log();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{UPLINK_HOST_IP} ")) && l.contains("GET /marker.txt")),
        "the server did not see the masqueraded address {UPLINK_HOST_IP}:\n{log}"
    );
    assert!(
        !log.contains(&address),
        "the guest address leaked past NAT:\n{log}"
    );
    // It resolves through the host's reachable name server, not the loopback stub.
    let resolv = host.banger_ok(&["vm", "exec", "natty", "--", "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(servers, [format!("nameserver {INTERNET_IP}")], "{resolv}");

    // A guest without --nat cannot get out, and gets no resolv.conf from banger (tiny
    // has none of its own): exit 7 would mean it did.
    let script = format!("[ -e /etc/resolv.conf ] && exit 7; timeout 5 wget -q -O - {url}");
    let blocked = host.banger(&[
        "vm", "run", "--rm", "--image", "tiny", "--", "sh", "-c", &script,
    ]);
    assert!(
        !matches!(blocked.status.code(), Some(0) | Some(7)),
        "a guest without NAT reached the internet or got a resolv.conf ({:?}): {}",
        blocked.status.code(),
        String::from_utf8_lossy(&blocked.stdout)
    );

    host.banger_ok(&["vm", "stop", "natty"]);
    assert_eq!(lab.rules_mentioning(&address), 0, "{}", lab.ruleset());
    let shown = host.banger_json(&["vm", "show", "natty"]);
    assert!(
        shown["address"].is_null(),
        "a stopped VM shows an address: {shown}"
    );

    host.banger_ok(&["vm", "start", "natty"]);
    assert_eq!(address_of(&host, "natty"), address, "the VM kept its lease");
    assert_eq!(lab.nat_rules(&address).len(), 1, "{}", lab.ruleset());

    host.banger_ok(&["vm", "restart", "natty"]);
    assert_eq!(lab.nat_rules(&address).len(), 1, "{}", lab.ruleset());

    host.banger_ok(&["vm", "delete", "--force", "natty"]);
    assert_eq!(lab.rules_mentioning(&address), 0, "{}", lab.ruleset());
    let taps = run(Command::new("ip").args(["-n", &lab.ns, "-o", "link", "show", "type", "tun"]))?;
    assert!(taps.trim().is_empty(), "taps left after delete: {taps}");
    Ok(())
}

#[test]
fn dns_ports_ssh_and_ssh_config() -> Result<()> {
    require_lab!();
    let (lab, host) = lab_and_host()?;
    host.banger_ok(&["vm", "create", "--image", "tiny", "--name", "web"]);
    let address = address_of(&host, "web");

    let answer = lab.dig("web.vm", 2, 3)?;
    assert_eq!(answer.trim(), address, "dig answered {answer:?}");

    let ports = host.banger_ok(&["vm", "ports", "web"]);
    assert!(ports.contains("web.vm:22"), "vm ports:\n{ports}");

    let started = Instant::now();
    let hi = host.banger_ok(&["vm", "ssh", "web", "--", "echo", "hi"]);
    let ssh_time = started.elapsed();
    assert_eq!(hi.trim(), "hi");
    let known_hosts = std::fs::read_to_string(host.root().join("config/ssh/known_hosts"))?;
    assert!(
        known_hosts
            .lines()
            .any(|l| l.contains("web.vm") && l.contains("ssh-ed25519")),
        "known_hosts:\n{known_hosts}"
    );
    let started = Instant::now();
    let exec_hi = host.banger_ok(&["vm", "exec", "web", "--", "echo", "hi"]);
    let exec_time = started.elapsed();
    assert_eq!(exec_hi.trim(), "hi");
    eprintln!("round trip: vm ssh {ssh_time:?}, vm exec {exec_time:?}");

    // ssh-config round trip on a seeded config in the isolated HOME.
    let ssh_dir = host.root().join("home/.ssh");
    std::fs::create_dir_all(&ssh_dir)?;
    let config = ssh_dir.join("config");
    let seeded = "Host example\n    User bob\n";
    std::fs::File::create(&config)?.write_all(seeded.as_bytes())?;
    host.banger_ok(&["ssh-config", "--install"]);
    let installed = std::fs::read_to_string(&config)?;
    assert!(installed.contains("Include"), "{installed}");
    assert!(installed.ends_with(seeded), "{installed}");
    // Plain `ssh web.vm` with that config reaches the VM, with strict host key checking,
    // though nothing on this host resolves `.vm`: the block's ProxyCommand (`banger
    // ssh-proxy`) finds the VM through the daemon.
    let plain = run(host
        .command("ssh")
        .args(["-F"])
        .arg(&config)
        .args(["-o", "BatchMode=yes", "web.vm", "echo", "plain"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(host.env()))?;
    assert_eq!(plain.trim(), "plain");
    // A name that is only a prefix of a VM's is not that VM.
    let prefix = host
        .command("ssh")
        .args(["-F"])
        .arg(&config)
        .args(["-o", "BatchMode=yes", "we.vm", "true"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(host.env())
        .output()?;
    assert!(!prefix.status.success());
    let stderr = String::from_utf8_lossy(&prefix.stderr);
    assert!(stderr.contains("no VM is named `we`"), "{stderr}");
    host.banger_ok(&["ssh-config", "--uninstall"]);
    assert_eq!(std::fs::read_to_string(&config)?, seeded);
    assert!(!ssh_dir.join("banger_config").exists());

    host.banger_ok(&["vm", "delete", "--force", "web"]);
    let known_hosts = std::fs::read_to_string(host.root().join("config/ssh/known_hosts"))?;
    assert!(
        !known_hosts.contains("web.vm") && !known_hosts.contains(&address),
        "the deleted VM's host key stayed:\n{known_hosts}"
    );
    wait_until("the name is gone", Duration::from_secs(10), || {
        let answer = lab.dig("web.vm", 1, 1).map_err(|e| e.to_string())?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("dig answered {answer:?}"))
        }
    });

    // `vm run` with no command is an interactive ssh session. On a terminal (script(1)
    // makes one), typed input reaches the guest's shell, the shell's exit code is
    // banger's, and --rm deletes the VM afterwards.
    let banger = bin_dir().join("banger");
    let mut session = host
        .command("script")
        .args([
            "-qec",
            &format!("{} vm run --image tiny --rm", banger.display()),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(host.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    session
        .stdin
        .take()
        .context("script's stdin")?
        .write_all(b"echo marker-$((6*7)); exit 3\n")?;
    let out = session.wait_with_output()?;
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{transcript}");
    assert!(transcript.contains("marker-42"), "{transcript}");
    assert!(
        host.vm_names().is_empty(),
        "vm run --rm left {:?}",
        host.vm_names()
    );
    Ok(())
}

/// When a `--nat` create is cut short by `kill -9` of the daemon.
#[derive(Debug, Clone, Copy)]
enum NatKill {
    /// This long after the request, before (or whatever) the daemon reported.
    After(Duration),
    /// When this stage reports this state.
    Stage(&'static str, banger_api::StageState),
    /// This long after the stage reports the state: inside the unreported work that
    /// follows (after `prepare guest` is done: the kernel, the tap, NAT).
    AfterStage(&'static str, banger_api::StageState, Duration),
    /// As soon as the VM's tap shows in `ip link`: mid-way through the network set-up,
    /// which no stage reports (NAT may or may not be added yet).
    TapAppears,
}

impl Lab {
    /// `bgt-*` taps in the lab's host namespace.
    fn taps(&self) -> Vec<String> {
        let text = ip(&["-n", &self.ns, "-j", "link", "show", "type", "tun"]).unwrap_or_default();
        let links: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        links
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|name| name.starts_with("bgt-"))
            .map(str::to_string)
            .collect()
    }

    /// The guest addresses banger's per-VM NAT rules name (one entry per rule).
    fn nat_rule_guests(&self) -> Vec<String> {
        self.ruleset()["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule["table"] == "banger")
            .filter_map(|rule| rule["comment"].as_str())
            .filter_map(|c| c.strip_prefix("banger-vm="))
            .filter_map(|c| c.split(',').next())
            .map(str::to_string)
            .collect()
    }
}

/// The issue's reproduction, at every point of a `--nat` create: the daemon is killed
/// (`kill -9`) after 0.1, 0.25 and 0.5 s and at each stage event, and restarted. Then
/// no tap and no per-guest rule of banger's exists that a running VM does not own, and
/// at the end a VM without `--nat`, leased an address that had leaked rules before a
/// restart, cannot reach the internet namespace.
#[test]
fn daemon_killed_during_a_nat_create_leaves_no_tap_or_rule_behind() -> Result<()> {
    use banger_api::StageState::{Done, Started};
    use banger_api::methods::{VmCreate, VmCreateParams};
    require_lab!();
    let (lab, mut host) = lab_and_host()?;
    let points = [
        NatKill::After(Duration::from_millis(100)),
        NatKill::After(Duration::from_millis(250)),
        NatKill::After(Duration::from_millis(500)),
        NatKill::Stage("reserve name", Done),
        NatKill::Stage("root disk", Started),
        NatKill::Stage("prepare guest", Started),
        NatKill::Stage("prepare guest", Done),
        NatKill::AfterStage("prepare guest", Done, Duration::from_millis(300)),
        NatKill::AfterStage("prepare guest", Done, Duration::from_millis(1000)),
        NatKill::TapAppears,
        NatKill::Stage("boot", Started),
        NatKill::Stage("boot", Done),
        NatKill::Stage("agent ready", Started),
    ];
    let params = VmCreateParams {
        name: Some("natcrash".into()),
        image: Some("tiny".into()),
        nat: true,
        ..VmCreateParams::default()
    };
    let mut leaked = Vec::new();
    for point in points {
        let daemon = host.daemon_pid().context("the daemon runs")?;
        let kill = || {
            let _ = Command::new("kill")
                .args(["-9", &daemon.to_string()])
                .status();
        };
        let started = Instant::now();
        host.block_on(async {
            let mut client = host.client().await.expect("connect");
            let mut fired = false;
            let call = client.call::<VmCreate>(&params, |event| {
                let (name, state, delay) = match point {
                    NatKill::Stage(name, state) => (name, state, None),
                    NatKill::AfterStage(name, state, delay) => (name, state, Some(delay)),
                    NatKill::After(_) | NatKill::TapAppears => return,
                };
                if let banger_api::Event::Stage {
                    stage, state: s, ..
                } = &event
                    && !fired
                    && stage == name
                    && *s == state
                {
                    fired = true;
                    match delay {
                        None => kill(),
                        // The crash is injected at a time, not awaited: a timer thread.
                        Some(delay) => drop(std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let _ = Command::new("kill")
                                .args(["-9", &daemon.to_string()])
                                .status();
                        })),
                    }
                }
            });
            match point {
                NatKill::After(delay) => {
                    tokio::select! {
                        result = call => panic!("the create finished before {delay:?}: {result:?}"),
                        () = tokio::time::sleep(delay) => kill(),
                    }
                }
                NatKill::TapAppears => {
                    let ns = lab.ns.clone();
                    let watcher = std::thread::spawn(move || {
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while Instant::now() < deadline {
                            let links = ip(&["-n", &ns, "-o", "link", "show", "type", "tun"])
                                .unwrap_or_default();
                            if links.contains("bgt-") {
                                let _ = Command::new("kill")
                                    .args(["-9", &daemon.to_string()])
                                    .status();
                                return true;
                            }
                        }
                        false
                    });
                    let result = call.await;
                    assert!(watcher.join().unwrap(), "no tap appeared: {result:?}");
                }
                NatKill::Stage(..) | NatKill::AfterStage(..) => {
                    let result = call.await;
                    assert!(result.is_err(), "{point:?} never came: {result:?}");
                }
            }
        });
        let killed_after = started.elapsed();
        host.kill_daemon(9)?;
        let (taps_before, rules_before) = (lab.taps(), lab.nat_rule_guests());
        leaked.extend(rules_before.iter().cloned());
        host.start_daemon()?;

        let vms = host.vm_list();
        let owned_taps: Vec<String> = vms
            .iter()
            .filter(|vm| vm["state"] == "running")
            .filter_map(|vm| vm["id"].as_str())
            .map(|id| format!("bgt-{}", &id[..8]))
            .collect();
        let owned_rules: Vec<String> = vms
            .iter()
            .filter(|vm| vm["state"] == "running" && vm["nat"] == true)
            .filter_map(|vm| vm["address"].as_str().map(str::to_string))
            .collect();
        let (taps_after, rules_after) = (lab.taps(), lab.nat_rule_guests());
        eprintln!(
            "MEASURE kill at {point:?} ({:.2}s): before restart {} taps, {} rules; after {} taps, {} rules; VMs {:?}",
            killed_after.as_secs_f64(),
            taps_before.len(),
            rules_before.len(),
            taps_after.len(),
            rules_after.len(),
            vms.iter()
                .map(|vm| format!("{}={}", vm["name"], vm["state"]))
                .collect::<Vec<_>>()
        );
        let stray_taps: Vec<&String> = taps_after
            .iter()
            .filter(|t| !owned_taps.contains(t))
            .collect();
        let stray_rules: Vec<&String> = rules_after
            .iter()
            .filter(|r| !owned_rules.contains(r))
            .collect();
        assert!(
            stray_taps.is_empty() && stray_rules.is_empty(),
            "killed at {point:?}: taps {stray_taps:?} and rules for {stray_rules:?} outlived \
             the restart\n{}",
            tail(&host.daemon_log(), 30)
        );
        for vm in &vms {
            assert_ne!(vm["state"], "creating", "killed at {point:?}: {vm}");
            let name = vm["name"].as_str().unwrap_or_default();
            host.banger_ok(&["vm", "delete", "--force", name]);
        }
        assert!(lab.taps().is_empty() && lab.nat_rule_guests().is_empty());
    }
    assert!(
        !leaked.is_empty(),
        "no kill point left rules behind before a restart, so none tested their removal"
    );

    // The address that leaked goes to a VM without NAT, which must stay offline.
    host.banger_ok(&["vm", "create", "--image", "tiny", "--name", "nonat"]);
    let address = address_of(&host, "nonat");
    assert!(leaked.contains(&address), "{address} not among {leaked:?}");
    assert_eq!(lab.rules_mentioning(&address), 0, "{}", lab.ruleset());
    let url = format!("http://{INTERNET_IP}:{HTTP_PORT}/marker.txt");
    let out = host.exec("nonat", &["timeout", "5", "wget", "-q", "-O", "-", &url]);
    assert!(
        !out.status.success(),
        "a VM without NAT on a leaked address reached the internet: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    host.banger_ok(&["vm", "delete", "--force", "nonat"]);
    Ok(())
}

/// Serves the lab's `www` over HTTPS on "the internet" with the given key and certificate.
const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
srv = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("Serving HTTPS", flush=True)
srv.serve_forever()
"#;
const HTTPS_PORT: u16 = 8443;

/// A CA made for the test and a server certificate it signs for `INTERNET_IP`, as a
/// TLS-inspecting proxy's would be: `(ca dir with ca.crt, server cert, server key)`.
fn make_ca(dir: &std::path::Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir)?;
    std::fs::write(
        dir.join("srv.ext"),
        format!("subjectAltName=IP:{INTERNET_IP}\nbasicConstraints=CA:FALSE\n"),
    )?;
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=banger test proxy CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca/test-proxy.crt",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={INTERNET_IP}"),
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca/test-proxy.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "srv.ext",
        "-out",
        "srv.crt",
    ])?;
    Ok((ca_dir, dir.join("srv.crt"), dir.join("srv.key")))
}

impl Lab {
    fn https_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("https.log")).unwrap_or_default()
    }

    fn start_https(&self, crt: &std::path::Path, key: &std::path::Path) -> Result<Child> {
        let root = self.dir.path().join("www");
        let log = std::fs::File::create(self.dir.path().join("https.log"))?;
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.internet,
                "python3",
                "-u",
                "-c",
                HTTPS_SERVER,
            ])
            .arg(INTERNET_IP)
            .arg(HTTPS_PORT.to_string())
            .arg(crt)
            .arg(key)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        wait_until("the HTTPS server listens", Duration::from_secs(20), || {
            let log = self.https_log();
            if log.contains("Serving HTTPS") {
                Ok(())
            } else {
                Err(log)
            }
        });
        Ok(child)
    }
}

/// Pulls `debian-bookworm` (it has curl and ca-certificates) into the shared cache from
/// the host's own namespace.
fn warm_debian() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let host = TestHost::start().expect("a daemon outside the lab");
        let image = host.banger_json(&["image", "pull", "debian-bookworm"]);
        let kernel = image["kernel"]
            .as_str()
            .expect("the image names its kernel");
        host.banger_ok(&["kernel", "pull", kernel]);
    });
}

/// How long an ssh straight after `vm run -d` may take: a connection and a command under
/// TCG, with nothing left to wait for.
const READY_SSH_BOUND: Duration = Duration::from_secs(15);

/// Ready means ready: `vm run -d` on debian-bookworm (whose sshd systemd starts late in
/// the boot, after the agent answers) returns only once the guest's sshd answers, so
/// `vm ssh VM -- true` straight after it connects at once: it succeeds, quickly, and
/// does not have to wait for ssh in the guest first.
#[test]
fn run_detached_returns_once_ssh_answers_on_debian() -> Result<()> {
    require_lab!();
    warm_debian();
    let (_lab, host) = lab_and_host()?;
    let run = [
        "vm",
        "run",
        "-d",
        "--image",
        "debian-bookworm",
        "--name",
        "ready",
    ];
    let started = Instant::now();
    let out = host.banger_timeout(&run, Duration::from_secs(600));
    banger_e2e::report_timing("vm run -d --image debian-bookworm", started.elapsed());
    host.expect_success(&run, &out);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(
        !notes.contains("still coming up"),
        "vm run -d returned before ssh answered:\n{notes}"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("banger vm ssh ready"), "{printed}");

    let ssh = ["vm", "ssh", "ready", "--", "true"];
    let started = Instant::now();
    let out = host.banger_timeout(&ssh, READY_SSH_BOUND);
    let took = started.elapsed();
    banger_e2e::report_timing("vm ssh -- true right after vm run -d", took);
    host.expect_success(&ssh, &out);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(
        !notes.contains("waiting for ssh"),
        "vm ssh right after vm run -d still waited for the guest's sshd:\n{notes}"
    );
    host.banger_ok(&["vm", "delete", "--force", "ready"]);
    Ok(())
}

/// A TLS-inspecting proxy's CA, simulated: an HTTPS server on "the internet" whose
/// certificate comes from a CA the test makes. `curl` in a `--nat` guest refuses it
/// without `--host-ca`; with `--host-ca=DIR` (the CA in DIR) the guest trusts it.
#[test]
fn host_ca_makes_a_nat_guest_trust_the_hosts_extra_ca() -> Result<()> {
    require_vm!(
        Root,
        Tool("ip"),
        Tool("nft"),
        Tool("python3"),
        Tool("dig"),
        Tool("ssh"),
        Tool("openssl")
    );
    warm_debian();
    let (lab, host) = lab_and_host()?;
    let (ca_dir, crt, key) = make_ca(lab.dir.path())?;
    let mut https = lab.start_https(&crt, &key)?;
    let url = format!("https://{INTERNET_IP}:{HTTPS_PORT}/marker.txt");
    let curl = [
        "vm",
        "exec",
        "",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "20",
        url.as_str(),
    ];
    let curl_in = |vm: &str| {
        let mut argv = curl;
        argv[2] = vm;
        host.banger(&argv)
    };

    host.banger_ok(&[
        "vm",
        "create",
        "--image",
        "debian-bookworm",
        "--nat",
        "--name",
        "plain",
    ]);
    let refused = curl_in("plain");
    assert_eq!(
        refused.status.code(),
        Some(60),
        "curl without --host-ca: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    host.banger_ok(&["vm", "delete", "--force", "plain"]);

    let ca_flag = format!("--host-ca={}", ca_dir.display());
    let out = host.banger(&[
        "vm",
        "create",
        "--image",
        "debian-bookworm",
        "--nat",
        "--name",
        "trusting",
        &ca_flag,
    ]);
    host.expect_success(&["vm", "create", &ca_flag], &out);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(notes.contains("trusting 1 CA certificate"), "{notes}");
    let fetched = curl_in("trusting");
    assert_eq!(
        fetched.status.code(),
        Some(0),
        "curl with --host-ca: {}\nserver log:\n{}",
        String::from_utf8_lossy(&fetched.stderr),
        lab.https_log()
    );
    assert_eq!(String::from_utf8_lossy(&fetched.stdout).trim(), "banger-ok");
    host.banger_ok(&["vm", "delete", "--force", "trusting"]);
    let _ = https.kill();
    let _ = https.wait();
    Ok(())
}

/// A GET of `http://ADDR:PORT/` from the lab's host namespace (where the daemon runs):
/// the body, or the error (connection refused, reset, timeout).
fn lab_get(lab: &Lab, addr: &str, port: u16) -> Result<String> {
    let script = format!(
        "import urllib.request,sys\n\
         sys.stdout.write(urllib.request.urlopen('http://{addr}:{port}/', timeout=5).read().decode())"
    );
    run(Command::new("ip").args(["netns", "exec", &lab.ns, "python3", "-c", &script]))
}

/// Starts busybox httpd on the guest's port 80, serving one line.
fn serve_http(host: &TestHost, vm: &str) {
    host.exec_ok(
        vm,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-the-guest > /www/index.html && httpd -p 80 -h /www",
        ],
    );
}

#[test]
fn published_ports_reach_a_guest_server_and_follow_its_lifecycle() -> Result<()> {
    require_lab!();
    let (lab, mut host) = lab_and_host()?;
    let expected = "hello-from-the-guest\n";

    // A bad spec is refused before any VM exists.
    let bad = host.banger(&[
        "vm", "create", "--image", "tiny", "--name", "web", "-p", "8080",
    ]);
    assert_ne!(bad.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("is not a port spec"), "{stderr}");
    assert!(host.vm_names().is_empty());

    host.banger_ok(&[
        "vm", "create", "--image", "tiny", "--name", "web", "-p", "18080:80",
    ]);
    let address = address_of(&host, "web");
    // Listening already, but nothing in the guest yet: the connection closes.
    assert!(lab_get(&lab, "127.0.0.1", 18080).is_err());
    serve_http(&host, "web");
    let body = wait_until(
        "the published port never answered",
        Duration::from_secs(10),
        || lab_get(&lab, "127.0.0.1", 18080).map_err(|e| format!("{e:#}")),
    );
    assert_eq!(body, expected);
    // 127.0.0.1 only, by default: not on the host's other addresses.
    assert!(lab_get(&lab, UPLINK_HOST_IP, 18080).is_err());

    // vm ports: the published port, and the guest's listener by name and by address.
    let ports = host.banger_json(&["vm", "ports", "web"]);
    let published = &ports["published"][0];
    assert_eq!(published["host_endpoint"], "127.0.0.1:18080", "{ports}");
    assert_eq!(
        published["guest_endpoint"],
        format!("{address}:80"),
        "{ports}"
    );
    assert_eq!(published["active"], true, "{ports}");
    let http = ports["listening"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["port"] == 80))
        .unwrap_or_else(|| panic!("nothing on 80 in {ports}"));
    assert_eq!(http["endpoint"], "web.vm:80");
    assert_eq!(http["address_endpoint"], format!("{address}:80"));
    for key in ["vm", "state", "address", "published", "listening"] {
        assert!(ports.get(key).is_some(), "{key} missing: {ports}");
    }
    let table = host.banger_ok(&["vm", "ports", "web"]);
    assert!(table.contains("127.0.0.1:18080"), "{table}");

    // A host port someone else holds: refused, naming it and its holder.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "python3", "-c"])
        .arg("import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',18081))\ns.listen()\nprint('up',flush=True)\ntime.sleep(600)")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().context("stdout")?),
        &mut line,
    )?;
    let taken = host.banger(&["vm", "port", "publish", "web", "18081:80"]);
    let _ = holder.kill();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert_ne!(taken.status.code(), Some(0));
    assert!(
        stderr.contains("host port 127.0.0.1:18081/tcp is in use by pid")
            && stderr.contains("python3"),
        "{stderr}"
    );

    // Gone after stop; back after start.
    host.banger_ok(&["vm", "stop", "web"]);
    assert!(lab_get(&lab, "127.0.0.1", 18080).is_err());
    let stopped = host.banger_json(&["vm", "ports", "web"]);
    assert_eq!(stopped["published"][0]["active"], false, "{stopped}");
    let refused = host.banger(&["vm", "port", "publish", "web", "18082:80"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is stopped"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    host.banger_ok(&["vm", "start", "web"]);
    serve_http(&host, "web");
    let body = wait_until(
        "the published port did not come back after start",
        Duration::from_secs(10),
        || lab_get(&lab, "127.0.0.1", 18080).map_err(|e| format!("{e:#}")),
    );
    assert_eq!(body, expected);

    // A daemon killed and started again opens the running VM's ports again.
    host.kill_daemon(9)?;
    assert!(lab_get(&lab, "127.0.0.1", 18080).is_err());
    host.start_daemon()?;
    let body = wait_until(
        "the published port did not come back after a daemon restart",
        Duration::from_secs(10),
        || lab_get(&lab, "127.0.0.1", 18080).map_err(|e| format!("{e:#}")),
    );
    assert_eq!(body, expected);

    // publish on the running VM, then unpublish closes it.
    host.banger_ok(&["vm", "port", "publish", "web", "18082:80"]);
    assert_eq!(lab_get(&lab, "127.0.0.1", 18082)?, expected);
    host.banger_ok(&["vm", "port", "unpublish", "web", "18080"]);
    assert!(lab_get(&lab, "127.0.0.1", 18080).is_err());
    assert_eq!(lab_get(&lab, "127.0.0.1", 18082)?, expected);
    let missing = host.banger(&["vm", "port", "unpublish", "web", "18080"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("publishes no port"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    host.banger_ok(&["vm", "delete", "--force", "web"]);
    assert!(lab_get(&lab, "127.0.0.1", 18082).is_err());
    Ok(())
}
