//! `cargo xtask`: the project's automation in Rust, so it runs the same everywhere.
//!
//! - `ci`: everything CI checks, in order: fmt, clippy, tidy, the static guest agent, the
//!   fast test profile, `reliability --check`, then the real-guest `vm` profile.
//! - `test`: one nextest profile, then how many tests ran and every skip (fatal under
//!   `CI=true`).
//! - `tidy`: conventions the compiler cannot check (file headers, crate layering).
//! - `layers`: the layering check alone; `--write` regenerates ARCHITECTURE.md's table.
//! - `agent`: builds the static guest agent and prints its path.
//! - `bench`: end-to-end benchmarks; writes BENCHMARKS.md.
//! - `reliability`: bad inputs, floods and concurrency; writes RELIABILITY.md (`--check`
//!   in CI).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "xtask is a developer command: it reports on the terminal and runs tools as a user would"
)]

mod bench;
mod disk;
mod layers;
mod reliability;
mod reliability_guests;
mod testrun;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root, &args[1..]),
        Some("test") => testrun::cli(&root, &args[1..]),
        Some("tidy") => tidy::run(&root),
        Some("layers") => layers::cli(&root, &args[1..]),
        Some("reliability") => reliability::run(&root, &args[1..]),
        Some("agent") => {
            let path = build_agent(&root)?;
            println!("{}", path.display());
            Ok(())
        }
        Some("bench") => bench::run(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci [--fast]|test [--profile P]|tidy|layers [--write]|agent|bench [images|warm|templates|workspaces|mcp|tty|export|...]|reliability [--check]>"
            );
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
    let mut outcomes = vec![testrun::run(root, "default", &[])?];
    // Bad inputs, the connection flood and 1000 clients against a real daemon (~30 s).
    reliability::run(root, &["--check".to_owned()])?;
    if fast {
        eprintln!("xtask: --fast: not running the real-guest profile");
    } else {
        // The vm profile's setup scripts build the binaries the e2e tests drive.
        disk::report(root, "before the real-guest profile");
        outcomes.push(testrun::run(root, "vm", &[])?);
    }
    let summary: Vec<String> = outcomes.iter().map(testrun::Outcome::summary).collect();
    eprintln!(
        "xtask: ci passed in {:.0}s: {}",
        started.elapsed().as_secs_f64(),
        summary.join("; ")
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
