//! Test support for the real-host tests: a network namespace that deletes itself, the
//! helper binary running (optionally inside a namespace) on a socket in a temp dir and
//! killed on drop, readiness from its "listening on" log line, and a synchronous client.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use banger_net::{HelperAnswer, HelperClientError, HelperTransport, UnixTransport};
use banger_proto::helper::HelperRequest;

/// How long the helper may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Runs a command to completion and returns its stdout; panics with stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A network namespace created for one test and deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bgtest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The helper binary serving a socket in a temp dir.
pub struct RunningHelper {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    command_line: (u32, Vec<String>),
    log: mpsc::Receiver<String>,
}

pub fn helper_binary() -> &'static str {
    env!("CARGO_BIN_EXE_banger-helper")
}

fn serving_args(socket: &Path, owner_uid: u32) -> Vec<String> {
    vec![
        "--socket".into(),
        socket.display().to_string(),
        "--owner-uid".into(),
        owner_uid.to_string(),
    ]
}

/// Spawns `command` with its stderr lines forwarded to a channel.
fn spawn_logging(mut command: Command) -> (Child, mpsc::Receiver<String>) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start banger-helper");
    let stderr = child.stderr.take().unwrap();
    let (sender, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, log)
}

impl RunningHelper {
    /// Starts the helper for `owner_uid` (inside `netns` if given) with `extra` flags
    /// and waits for its "listening on" line.
    pub fn start(netns: Option<&Netns>, owner_uid: u32, extra: &[&str]) -> RunningHelper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/helper.sock");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, helper_binary()]);
                c
            }
            None => Command::new(helper_binary()),
        };
        command.args(serving_args(&socket, owner_uid)).args(extra);
        let (child, log) = spawn_logging(command);
        let helper = RunningHelper {
            child,
            command_line: (owner_uid, extra.iter().map(|s| s.to_string()).collect()),
            dir,
            socket,
            log,
        };
        helper.wait_for_log("listening on");
        helper
    }

    /// The command line of another helper for the same socket and directories.
    pub fn another(&self) -> Command {
        let (owner_uid, extra) = &self.command_line;
        let mut command = Command::new(helper_binary());
        command
            .args(serving_args(&self.socket, *owner_uid))
            .args(extra);
        command
    }

    /// [`Self::another`] run through `wrapper` (e.g. `setpriv ...`), which execs it.
    pub fn another_through(&self, wrapper: &[&str]) -> Command {
        let (owner_uid, extra) = &self.command_line;
        let mut command = Command::new(wrapper[0]);
        command
            .args(&wrapper[1..])
            .arg(helper_binary())
            .args(serving_args(&self.socket, *owner_uid))
            .args(extra);
        command
    }

    /// Starts a new helper on the same socket and directories from `command`.
    pub fn restart_as(&mut self, command: Command) {
        let (child, log) = spawn_logging(command);
        self.child = child;
        self.log = log;
        self.wait_for_log("listening on");
    }

    /// Kills the helper with SIGKILL, leaving its socket file behind as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new helper on the same socket and directories, outside any namespace.
    pub fn restart(&mut self) {
        let (child, log) = spawn_logging(self.another());
        self.child = child;
        self.log = log;
        self.wait_for_log("listening on");
    }

    /// Waits for a log line containing `marker`.
    pub fn wait_for_log(&self, marker: &str) -> String {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no log line with {marker:?}; saw {seen:?}"),
            }
        }
    }

    pub fn call(&self, request: HelperRequest) -> Result<HelperAnswer, HelperClientError> {
        UnixTransport::new(&self.socket).exchange(&request)
    }
}

impl Drop for RunningHelper {
    fn drop(&mut self) {
        self.kill();
    }
}
