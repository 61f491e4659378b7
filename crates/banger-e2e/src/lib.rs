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

mod file_server;
mod host;
pub mod registry;
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use file_server::FileServer;
pub use host::{HostOptions, TestHost, exit_code, text};
pub use wait::{pid_alive, wait_until};

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

/// True when `program --version` runs (used for host tools the tests call).
pub fn tool_available(program: &str) -> bool {
    let status = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(status, Ok(s) if s.success())
}

/// Returns `Some(reason)` when real guests cannot run here; the caller prints it and returns.
pub fn vm_capability_missing() -> Option<String> {
    if !tool_available("qemu-system-x86_64") {
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
    skip_if(test, vm_capability_missing())
}

/// Prints `SKIPPED <test>: <reason>` when there is a reason, and returns whether there was.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test must say why on its output"
)]
pub fn skip_if(test: &str, reason: Option<String>) -> bool {
    match reason {
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            true
        }
        None => false,
    }
}

/// Prints a measurement in a fixed format, so a run's timings can be grepped from the
/// test output (`cargo nextest run --profile vm --no-capture | grep TIMING`).
#[expect(
    clippy::print_stderr,
    reason = "measurements are part of the test output"
)]
pub fn report_timing(what: &str, elapsed: std::time::Duration) {
    eprintln!("TIMING {what}: {:.1}s", elapsed.as_secs_f64());
}

/// Prints an observation worth keeping in the test output (e.g. which outcome a crash
/// test saw); helper functions of tests use this rather than `eprintln!`.
#[expect(
    clippy::print_stderr,
    reason = "observations are part of the test output"
)]
pub fn note(message: &str) {
    eprintln!("{message}");
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
