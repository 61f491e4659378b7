//! `cargo xtask`: the project's automation in Rust, so it runs the same everywhere.
//!
//! - `ci`: everything CI checks, in order: fmt, clippy, tidy, the static guest agent, the
//!   fast test profile, then the real-guest `vm` profile.
//! - `tidy`: conventions the compiler cannot check (file headers, crate layering).
//! - `agent`: builds the static guest agent and prints its path.
//! - `bench`: end-to-end benchmarks; writes BENCHMARKS.md.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "xtask is a developer command: it reports on the terminal and runs tools as a user would"
)]

mod bench;
mod disk;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root, &args[1..]),
        Some("tidy") => tidy::run(&root),
        Some("agent") => {
            let path = build_agent(&root)?;
            println!("{}", path.display());
            Ok(())
        }
        Some("bench") => bench::run(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci [--fast]|tidy|agent|bench>");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command in the workspace root, failing with its command line.
pub(crate) fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci(root: &Path, args: &[String]) -> Result<()> {
    let fast = args.iter().any(|a| a == "--fast");
    let started = std::time::Instant::now();
    disk::report(root, "start");
    run(root, "cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    tidy::run(root)?;
    build_agent(root)?;
    run(
        root,
        "cargo",
        &["nextest", "run", "--workspace", "--no-fail-fast"],
    )?;
    if fast {
        eprintln!("xtask: --fast: skipping the real-guest profile");
    } else {
        // The e2e tests drive the real binaries.
        build_binaries(root, false)?;
        disk::report(root, "before the real-guest profile");
        run(
            root,
            "cargo",
            &[
                "nextest",
                "run",
                "--workspace",
                "--profile",
                "vm",
                "--no-fail-fast",
            ],
        )?;
    }
    eprintln!(
        "xtask: ci passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the host binaries the e2e tests and benchmarks drive: banger, bangerd and
/// banger-helper.
pub(crate) fn build_binaries(root: &Path, release: bool) -> Result<()> {
    let mut args = vec!["build"];
    if release {
        args.push("--release");
    }
    args.extend(["-p", "banger", "-p", "bangerd", "-p", "banger-helper"]);
    run(root, "cargo", &args)
}

/// Builds `banger-agent` as a static binary (it runs inside guests whose libc we do not
/// control). A separate target dir keeps the `crt-static` flag away from host builds.
pub(crate) fn build_agent(root: &Path) -> Result<PathBuf> {
    let target_dir = root.join("target/agent");
    eprintln!("xtask: building the static guest agent");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "banger-agent",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(root)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building banger-agent failed ({status})");
    }
    Ok(target_dir.join("x86_64-unknown-linux-gnu/release/banger-agent"))
}
