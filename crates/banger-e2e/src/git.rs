//! git on the host for tests that build repositories: a fixed identity and default
//! branch, no system or user configuration (HOME is the repository itself), quiet, and a
//! panic naming the arguments when git fails.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `git ARGS` in `dir` and panics when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    #[allow(
        clippy::disallowed_methods,
        reason = "test fixture: git's exit status is all that is read"
    )]
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} in {}", dir.display());
}
