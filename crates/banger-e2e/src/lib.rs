//! The harness for end-to-end tests on real guests.
//!
//! A [`TestHost`] is one isolated banger installation: its own state, runtime and config
//! directories under a temp dir, and its own `bangerd` process, started from the binaries
//! `cargo build` produced. Kernels and images go to a cache shared by all tests of a run
//! (`target/e2e-cache`), so the Debian-package builds happen once. Dropping a `TestHost`
//! stops its daemon and kills any VMM process still running from its directories, so a
//! failed test leaks nothing.
//!
//! Every test starts with [`require_vm!`]: a host without QEMU (or another requirement)
//! gives a recorded skip, fatal under `CI=true`; stale or missing binaries fail.

mod figures;
mod file_server;
mod freshness;
mod git;
mod host;
pub mod mcp;
mod net_lab;
pub mod registry;
mod terminal;
mod tmpfs;
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use figures::{Figures, figures_dir};
pub use file_server::FileServer;
pub use git::git;
pub use host::{HostOptions, TestHost, exit_code, text};
pub use net_lab::{NetLab, NetState};
pub use terminal::TerminalSession;
pub use tmpfs::Tmpfs;
pub use wait::{pid_alive, wait_until};

/// The workspace's target directory (`target`): the parent of [`bin_dir`].
pub fn target_dir() -> PathBuf {
    bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Directory holding `banger` and `bangerd` (`target/debug`), found from the running
/// executable: a test binary (`target/debug/deps/NAME-HASH`) or a workspace binary that
/// uses the harness, such as `xtask` (`target/debug/xtask`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    bin_dir_of(&exe).unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// The profile directory of `exe`: its own directory, or that directory's parent when it
/// is cargo's `deps`.
fn bin_dir_of(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
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

/// What every real-guest test starts with: `require_vm!()` (or `require_vm!(Root, ...)`
/// with more requirements). QEMU and the other requirements missing is a recorded skip
/// (fatal under `CI=true`, see `banger_requires`); binaries that are missing or older
/// than their sources fail the test, because the harness must run what the tree builds
/// (the `vm` profile's setup script builds them: `.config/nextest.toml`).
#[macro_export]
macro_rules! require_vm {
    ($($req:expr),* $(,)?) => {{
        $crate::banger_requires::require!(Qemu $(, $req)*);
        $crate::ensure_built();
    }};
}

pub use banger_requires;

/// Panics unless `banger`, `bangerd`, `banger-helper` and the static agent are built and
/// newer than every source file they were built from. Checked once per test process.
pub fn ensure_built() {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let verdict = CHECKED.get_or_init(|| {
        let mut binaries: Vec<(PathBuf, &str)> = ["banger", "bangerd", "banger-helper"]
            .into_iter()
            .map(|bin| {
                (
                    bin_dir().join(bin),
                    "cargo build -p banger -p bangerd -p banger-helper",
                )
            })
            .collect();
        binaries.push((agent_binary(), "cargo xtask agent"));
        for (binary, build) in binaries {
            freshness::check(&binary).map_err(|problem| {
                format!(
                    "{problem}; run `{build}` (`cargo nextest run --profile vm` builds it first)"
                )
            })?;
        }
        Ok(())
    });
    if let Err(problem) = verdict {
        panic!("{problem}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_dir_is_found_from_a_test_binary_and_from_xtask() {
        assert_eq!(
            bin_dir_of(Path::new("/w/target/debug/deps/vm-0123abcd")),
            Some(PathBuf::from("/w/target/debug"))
        );
        assert_eq!(
            bin_dir_of(Path::new("/w/target/debug/xtask")),
            Some(PathBuf::from("/w/target/debug"))
        );
    }
}
