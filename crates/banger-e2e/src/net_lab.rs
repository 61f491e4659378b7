//! [`NetLab`]: a network namespace with the root helper in it, for tests that need guest
//! networking (taps, the bridge, NAT rules) to count what a VM leaves on the host. The
//! namespace's uplink is one end of a veth pair whose other end is in it too, so NAT rules are made but nothing leaves it.
//! Dropped after the [`TestHost`] (declare it first), it stops the helper and deletes
//! the namespace with everything in it. Needs root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::{HostOptions, TestHost, bin_dir, tail, text, wait_until};

const UPLINK: &str = "bgup0";

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(Child::wait_with_output)
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed ({}): {}",
            out.status,
            text(&out.stderr)
        );
    }
    Ok(text(&out.stdout))
}

/// What banger has on the lab's host at one moment: its taps, the guest addresses its
/// per-VM rules name, and every network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetState {
    /// `bgt-*` taps.
    pub taps: Vec<String>,
    /// One entry per per-guest rule of banger's tables (`banger`, `bangerpol`): the guest
    /// address it is for.
    pub rule_guests: Vec<String>,
    /// Every rule in banger's tables, per-guest or not.
    pub rules: usize,
    /// Every interface of the namespace (bridge, taps, uplink, lo).
    pub links: Vec<String>,
}

/// A namespace with the root helper serving a host's daemon.
#[derive(Debug)]
pub struct NetLab {
    ns: String,
    dir: tempfile::TempDir,
    helper: Option<Child>,
}

impl NetLab {
    /// Makes the namespace (loopback and a dummy uplink with a default route).
    pub fn new() -> Result<NetLab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let lab = NetLab {
            ns: format!(
                "bgrel-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            dir: tempfile::Builder::new()
                .prefix("banger-netlab-")
                .tempdir()?,
            helper: None,
        };
        run("ip", &["netns", "add", &lab.ns])?;
        let ns = lab.ns.as_str();
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        // A veth pair with both ends inside: a dummy interface may not be built in.
        let peer = "bgup1";
        run(
            "ip",
            &[
                "-n", ns, "link", "add", UPLINK, "type", "veth", "peer", "name", peer,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", peer, "up"])?;
        run(
            "ip",
            &["-n", ns, "addr", "add", "172.31.0.1/30", "dev", UPLINK],
        )?;
        run("ip", &["-n", ns, "link", "set", UPLINK, "up"])?;
        run(
            "ip",
            &["-n", ns, "route", "add", "default", "via", "172.31.0.2"],
        )?;
        Ok(lab)
    }

    /// Options for a [`TestHost`] whose daemon and CLI run in the lab and use its helper.
    pub fn host_options(&self) -> HostOptions {
        HostOptions {
            netns: Some(self.ns.clone()),
            env: vec![(
                "BANGER_HELPER_SOCKET".into(),
                self.helper_socket().display().to_string(),
            )],
            ..HostOptions::default()
        }
    }

    fn helper_socket(&self) -> PathBuf {
        self.dir.path().join("helper.sock")
    }

    pub fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    /// Starts banger-helper as root in the namespace for `host` (prepared, not started).
    pub fn start_helper(&mut self, host: &TestHost) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("helper.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin_dir().join("banger-helper"))
            .args(["--owner-uid", "0", "--state-dir"])
            .arg(host.state_dir())
            .arg("--runtime-dir")
            .arg(host.runtime_dir())
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

    /// Whether a guest's sshd greets a TCP connection to `address` from the lab.
    pub fn ssh_banner(&self, address: &str) -> bool {
        let script = format!("exec 3<>/dev/tcp/{address}/22 && head -c 4 <&3");
        run(
            "ip",
            &[
                "netns", "exec", &self.ns, "timeout", "5", "bash", "-c", &script,
            ],
        )
        .is_ok_and(|out| out.starts_with("SSH-"))
    }

    /// A lab and a host whose daemon runs in it with networking on (checked in its log).
    pub fn with_host() -> Result<(NetLab, TestHost)> {
        let mut lab = NetLab::new()?;
        let mut host = TestHost::prepare(lab.host_options())?;
        lab.start_helper(&host)?;
        host.start_daemon()?;
        let log = host.daemon_log();
        if log.contains("guest networking is off") {
            bail!(
                "the daemon did not enable networking:\n{}\nhelper log:\n{}",
                tail(&log, 20),
                lab.helper_log()
            );
        }
        Ok((lab, host))
    }

    /// What banger has in the namespace now.
    pub fn state(&self) -> NetState {
        let links_json = run("ip", &["-n", &self.ns, "-j", "link", "show"]).unwrap_or_default();
        let links: Vec<serde_json::Value> = serde_json::from_str(&links_json).unwrap_or_default();
        let mut names: Vec<String> = links
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .map(str::to_string)
            .collect();
        names.sort();
        let mut taps: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with("bgt-"))
            .cloned()
            .collect();
        taps.sort();
        let (mut rule_guests, rules) = self.rules();
        rule_guests.sort();
        NetState {
            taps,
            rule_guests,
            rules,
            links: names,
        }
    }

    /// The guest address of every per-guest rule in banger's tables: NAT rules carry a
    /// `banger-vm=ADDR,...` comment; policy chains are named `g_ADDR` with `_` for dots.
    /// Also the number of rules in those tables.
    fn rules(&self) -> (Vec<String>, usize) {
        let text = run(
            "ip",
            &["netns", "exec", &self.ns, "nft", "-j", "list", "ruleset"],
        )
        .unwrap_or_default();
        let ruleset: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut guests = Vec::new();
        let mut rules = 0;
        for item in ruleset["nftables"].as_array().into_iter().flatten() {
            let ours =
                |table: &serde_json::Value| matches!(table.as_str(), Some("banger" | "bangerpol"));
            if item.get("rule").is_some_and(|rule| ours(&rule["table"])) {
                rules += 1;
            }
            if let Some(rule) = item.get("rule")
                && ours(&rule["table"])
                && let Some(comment) = rule["comment"].as_str()
                && let Some(rest) = comment.strip_prefix("banger-vm=")
            {
                guests.push(rest.split(',').next().unwrap_or(rest).to_string());
            }
            if let Some(chain) = item.get("chain")
                && chain["table"] == "bangerpol"
                && let Some(name) = chain["name"].as_str()
                && let Some(guest) = name.strip_prefix("g_")
            {
                guests.push(format!("policy {guest}"));
            }
        }
        (guests, rules)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}
