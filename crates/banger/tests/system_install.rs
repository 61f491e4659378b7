//! `banger system install` end to end in supervised mode, below a temporary root
//! (`BANGER_SYSTEM_ROOT`) with its own bridge and pool: both services start and answer,
//! a daemon killed with SIGKILL is restarted by its supervisor, a second install
//! (upgrade in place) keeps the database, and uninstall leaves no process, file, bridge
//! or nftables rule behind. Needs root (the helper creates a bridge); without it the test
//! prints SKIPPED, and under CI=true it fails. Uses the `bangerd` and `banger-helper`
//! built beside this test's `banger` (`cargo build -p banger -p bangerd -p banger-helper`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn banger() -> &'static str {
    env!("CARGO_BIN_EXE_banger")
}

fn bin_dir() -> PathBuf {
    Path::new(banger()).parent().unwrap().to_path_buf()
}

fn run(root: &Path, args: &[&str]) -> (bool, String, String) {
    let child = Command::new(banger())
        .args(args)
        .env("BANGER_SYSTEM_ROOT", root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(root: &Path) -> serde_json::Value {
    let (ok, out, err) = run(root, &["system", "status", "--json"]);
    assert!(ok, "status failed: {err}");
    serde_json::from_str(&out).unwrap()
}

fn daemon(status: &serde_json::Value) -> &serde_json::Value {
    &status["services"][1]
}

/// Processes whose command line names `root`.
fn processes_under(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn nft_ruleset() -> String {
    match Command::new("nft")
        .args(["list", "ruleset"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => {
            String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
        }
        Err(_) => String::new(),
    }
}

#[test]
fn supervised_install_restart_on_crash_upgrade_and_clean_uninstall() {
    banger_requires::require!(Root);
    for binary in ["bangerd", "banger-helper"] {
        assert!(
            bin_dir().join(binary).is_file(),
            "build {binary} first: cargo build -p banger -p bangerd -p banger-helper"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let n = std::process::id() % 200 + 20;
    let bridge = format!("bangerit{n}");
    let subnet = format!("10.233.{n}.0/24");
    let port = (43000 + n).to_string();
    let from = bin_dir().display().to_string();
    let install = [
        "system",
        "install",
        "--mode",
        "supervised",
        "--from",
        &from,
        "--bridge",
        &bridge,
        "--subnet",
        &subnet,
        "--dns-port",
        &port,
    ];

    let (ok, out, err) = run(&root, &install);
    assert!(ok, "install failed: {out}{err}");
    assert!(out.contains("supervised background processes"), "{out}");
    let first = status(&root);
    assert_eq!(first["mode"], "supervised");
    for service in first["services"].as_array().unwrap() {
        assert_eq!(service["state"], "running", "{service}");
        assert_eq!(service["answers"], true, "{service}");
    }
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    let helper_mode = std::fs::metadata(root.join("usr/local/lib/banger/banger-helper")).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!((helper_mode.uid(), helper_mode.mode() & 0o777), (0, 0o755));

    // A crashed daemon is started again by its supervisor.
    let pid = daemon(&first)["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        let now = status(&root);
        let d = daemon(&now);
        if d["answers"] == true && d["pid"].as_i64().is_some_and(|p| p != pid) {
            break now;
        }
        assert!(Instant::now() < deadline, "daemon not restarted: {now}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(root.join("var/log/banger/bangerd.log")).unwrap();
    assert!(log.contains(&format!("pid {pid} exited")), "{log}");

    // Upgrade in place: the database stays.
    let database = root.join("owner/state/banger.db");
    assert!(database.exists(), "no database at {}", database.display());
    let inode = std::fs::metadata(&database).unwrap().ino();
    let (ok, out, err) = run(&root, &install);
    assert!(ok, "second install failed: {out}{err}");
    let upgraded = status(&root);
    assert_eq!(daemon(&upgraded)["answers"], true);
    assert_ne!(daemon(&upgraded)["pid"], daemon(&restarted)["pid"]);
    assert_eq!(std::fs::metadata(&database).unwrap().ino(), inode);

    // Uninstall without a terminal refuses --purge without --yes, then removes it all.
    let (ok, _, err) = run(&root, &["system", "uninstall", "--purge"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = run(&root, &["system", "uninstall", "--purge", "--yes"]);
    assert!(ok, "uninstall failed: {out}{err}");
    // Uninstall stops the services before it returns; wait (bounded) for the kernel to
    // reap them rather than for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_under(&root).is_empty() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(processes_under(&root), Vec::<String>::new());
    let mut left = Vec::new();
    files_under(&root, &mut left);
    assert_eq!(left, Vec::<PathBuf>::new());
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
    let ruleset = nft_ruleset();
    assert!(!ruleset.contains(&bridge), "{ruleset}");
    let (ok, _, err) = run(&root, &["system", "status"]);
    assert!(!ok && err.contains("not installed"), "{err}");
}
