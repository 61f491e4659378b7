//! The harness for end-to-end tests on real guests.
//!
//! A [`TestHost`] is one isolated banger installation: its own state, runtime and config
//! directories under a temp dir, and its own `bangerd` process, started from the binaries
//! `cargo build` produced. Kernels and images go to a cache shared by all tests of a run
//! (`target/e2e-cache`), so the Debian-package builds happen once. Dropping a `TestHost`
//! stops its daemon and kills any VMM process still running from its directories, so a
//! failed test leaks nothing.
//!
//! Tests that need something this host lacks call [`skip_unless_vm_capable`], which prints
//! why the test is skipped; they never pass silently.

// A test harness: it reports skips on stderr and runs the binaries under test directly
// (their output is what the tests check), not through banger-exec's runner.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace's target directory (tests run from `target/<profile>/deps`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-binary -> target
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Directory holding `banger` and `bangerd` (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// The static guest agent built by `cargo xtask agent`.
pub fn agent_binary() -> PathBuf {
    target_dir().join("agent/x86_64-unknown-linux-gnu/release/banger-agent")
}

/// Returns `Some(reason)` when real guests cannot run here; the caller prints it and returns.
pub fn vm_capability_missing() -> Option<String> {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(qemu, Ok(s) if s.success()) {
        return Some("qemu-system-x86_64 is not installed (scripts/install-deps.sh)".into());
    }
    for bin in ["banger", "bangerd"] {
        if !bin_dir().join(bin).exists() {
            return Some(format!(
                "{bin} is not built (cargo build -p banger -p bangerd)"
            ));
        }
    }
    if !agent_binary().exists() {
        return Some("the static guest agent is not built (cargo xtask agent)".into());
    }
    None
}

/// Prints the skip reason and returns true when the test must not run.
pub fn skip_unless_vm_capable(test: &str) -> bool {
    match vm_capability_missing() {
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            true
        }
        None => false,
    }
}

/// How a [`TestHost`] runs its processes.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Run `bangerd` and every CLI call inside this network namespace
    /// (`ip netns exec NS ...`), so guests' addresses are reachable from the CLI's ssh.
    pub netns: Option<String>,
    /// Extra environment for the daemon and the CLI (e.g. `BANGER_HELPER_SOCKET`).
    pub env: Vec<(String, String)>,
}

/// One isolated banger installation with its own daemon.
#[derive(Debug)]
pub struct TestHost {
    root: tempfile::TempDir,
    daemon: Option<Child>,
    options: HostOptions,
}

impl TestHost {
    /// Creates the directories and starts `bangerd`, returning once it answers `ping`.
    pub fn start() -> Result<TestHost> {
        let mut host = TestHost::prepare(HostOptions::default())?;
        host.start_daemon()?;
        Ok(host)
    }

    /// Creates the directories without starting the daemon (a test starts what the
    /// daemon needs first, e.g. the root helper, then calls [`TestHost::start_daemon`]).
    pub fn prepare(options: HostOptions) -> Result<TestHost> {
        let root = tempfile::Builder::new()
            .prefix("banger-e2e-")
            .tempdir_in(short_tmp())?;
        for dir in ["state", "runtime", "config", "home"] {
            std::fs::create_dir_all(root.path().join(dir))?;
        }
        Ok(TestHost {
            root,
            daemon: None,
            options,
        })
    }

    /// A command for `program`, inside the host's network namespace when it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.options.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns.as_str()]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.root.path().join("runtime/bangerd.sock")
    }

    /// Environment that points banger at this host's directories.
    pub fn env(&self) -> Vec<(String, String)> {
        let root = self.root.path();
        let cache = target_dir().join("e2e-cache");
        vec![
            ("HOME".into(), root.join("home").display().to_string()),
            (
                "BANGER_STATE_DIR".into(),
                root.join("state").display().to_string(),
            ),
            (
                "BANGER_RUNTIME_DIR".into(),
                root.join("runtime").display().to_string(),
            ),
            (
                "BANGER_CONFIG_DIR".into(),
                root.join("config").display().to_string(),
            ),
            ("BANGER_CACHE_DIR".into(), cache.display().to_string()),
            ("BANGER_AGENT".into(), agent_binary().display().to_string()),
            ("NO_COLOR".into(), "1".into()),
            ("RUST_LOG".into(), "info".into()),
        ]
        .into_iter()
        .chain(self.options.env.iter().cloned())
        .collect()
    }

    /// Starts (or restarts) the daemon.
    pub fn start_daemon(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("bangerd.log"))?;
        // `ip netns exec` execs the daemon in place, so the child's pid is bangerd's.
        let mut cmd = self.command(bin_dir().join("bangerd"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start bangerd")?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.daemon.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "bangerd exited ({status}) before listening: {}",
                    self.daemon_log()
                );
            }
            if Instant::now() > deadline {
                bail!("bangerd did not listen within 20 s: {}", self.daemon_log());
            }
            std::thread::yield_now();
            wait_a_moment();
        }
    }

    /// Kills the daemon with `signal` (e.g. 9) and reaps it; VMs keep running.
    pub fn kill_daemon(&mut self, signal: i32) -> Result<()> {
        if let Some(mut child) = self.daemon.take() {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()?;
            if !status.success() {
                bail!("kill -{signal} bangerd failed");
            }
            child.wait()?;
        }
        Ok(())
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("bangerd.log")).unwrap_or_default()
    }

    /// Runs the CLI with this host's environment.
    pub fn banger(&self, args: &[&str]) -> Output {
        self.command(bin_dir().join("banger"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("cannot run banger")
    }

    /// Runs the CLI and fails with its output unless it exits 0; returns stdout.
    pub fn banger_ok(&self, args: &[&str]) -> String {
        let out = self.banger(args);
        assert!(
            out.status.success(),
            "banger {} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.daemon_log(), 40),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Parses `banger ... --json` output.
    pub fn banger_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let text = self.banger_ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad JSON from banger {args:?}: {e}\n{text}"))
    }

    /// Pids of VMM processes whose command line mentions this host's directories.
    pub fn vmm_pids(&self) -> Vec<u32> {
        let needle = self.root.path().display().to_string();
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let is_vmm = cmdline.starts_with("qemu-system")
                || cmdline.contains("/qemu-system")
                || cmdline.contains("firecracker");
            if is_vmm && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.kill_daemon(15);
        for pid in self.vmm_pids() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Temp dirs under `/tmp` keep socket paths short (`sun_path` is 108 bytes).
fn short_tmp() -> PathBuf {
    PathBuf::from("/tmp")
}

/// Polling interval for the daemon's socket while it starts; bounded by a deadline above.
fn wait_a_moment() {
    std::thread::park_timeout(Duration::from_millis(20));
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
