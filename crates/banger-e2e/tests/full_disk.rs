//! `vm delete --force` when the state directory's file system is full, on a real guest:
//! the state directory is a small tmpfs the test mounts (root only), filled to the last
//! block once the VM runs. The delete must leave the VM gone, or `deleting` with no
//! process (never `running` without one), and once space is back the next delete or a
//! daemon restart finishes the job. A second VM then has its delete fail after the
//! `deleting` mark on purpose (a mount point inside its directory cannot be removed),
//! to show that state is retried, refused for other verbs and finished by a restart.

// Test code: mount tools run directly; observations go to stderr.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use banger_e2e::{HostOptions, TestHost, note, pid_alive, require_vm, text, wait_until};

/// Room for a 1 GiB sparse root disk (the free-space check wants all of it) and the
/// database; only what is written takes memory.
const TMPFS_SIZE: &str = "1200m";

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// A tmpfs mounted on a directory for the test; lazily unmounted on drop, so a daemon
/// still holding files open cannot keep it mounted.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "banger-e2e",
                &path.display().to_string(),
            ],
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// (bytes used, bytes free).
    fn usage(&self) -> (u64, u64) {
        let out = Command::new("stat")
            .args(["-f", "-c", "%S %b %f"])
            .arg(&self.path)
            .output()
            .expect("stat -f");
        let fields: Vec<u64> = text(&out.stdout)
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        let (block, total, free) = (fields[0], fields[1], fields[2]);
        ((total - free) * block, free * block)
    }

    /// Fills the file system to the last block: its size is cut to what is used (plus a
    /// little), and a filler file takes the rest. Nothing but the filler is written.
    fn fill(&self) {
        let (used, _) = self.usage();
        let size_kib = used / 1024 + 64;
        sh(
            "mount",
            &[
                "-o",
                &format!("remount,size={size_kib}k"),
                &self.path.display().to_string(),
            ],
        );
        let filler = self.path.join("filler");
        let _ = std::fs::write(&filler, vec![0x5a; 1024 * 1024]);
        assert_eq!(self.usage().1, 0, "the file system is not full");
    }

    /// Frees the space again: the filler goes and the size comes back.
    fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
        sh(
            "mount",
            &[
                "-o",
                &format!("remount,size={TMPFS_SIZE}"),
                &self.path.display().to_string(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The VM's row, if it is still listed.
fn row(host: &TestHost, name: &str) -> Option<serde_json::Value> {
    host.vm_list().into_iter().find(|vm| vm["name"] == name)
}

/// The state a VM whose delete did not finish must be in: `deleting`, no process.
fn assert_deleting_without_process(host: &TestHost, vm: &serde_json::Value, pid: u32) {
    assert_eq!(vm["state"], "deleting", "{vm}");
    assert!(vm["pid"].is_null(), "{vm}");
    assert!(!pid_alive(pid), "the VMM of a deleting VM still runs");
    assert!(host.vmm_pids().is_empty(), "{:?}", host.vmm_pids());
}

#[test]
fn delete_force_on_a_full_disk_leaves_no_ghost() {
    // Root mounts the small tmpfs.
    require_vm!(Root);
    // The shared cache stays where it is; only the state directory is small.
    let mut host = TestHost::prepare(HostOptions::default()).unwrap();
    let tmpfs = Tmpfs::mount(&host.state_dir(), TMPFS_SIZE);
    host.start_daemon().unwrap();
    host.banger_ok(&["image", "pull", "tiny"]);
    host.create_vm("full", &["--image", "tiny", "--disk", "1G"]);
    let pid = host.vm_show("full")["pid"].as_u64().unwrap() as u32;

    tmpfs.fill();
    let out = host.banger(&["vm", "delete", "--force", "full"]);
    let reserve_used = host.daemon_log().contains("released the space reserve");
    match row(&host, "full") {
        None => {
            assert!(out.status.success(), "{}", text(&out.stderr));
            note(&format!(
                "OUTCOME full disk: deleted at once (space reserve released: {reserve_used})"
            ));
        }
        Some(vm) => {
            assert!(!out.status.success(), "a listed VM was reported deleted");
            assert_deleting_without_process(&host, &vm, pid);
            note(&format!(
                "OUTCOME full disk: left deleting ({}); reserve released: {reserve_used}",
                text(&out.stderr).trim()
            ));
            tmpfs.free();
            host.banger_ok(&["vm", "delete", "full"]);
        }
    }
    tmpfs.free();
    host.assert_no_vm_left("after the full-disk delete");

    // A delete that fails after recording `deleting`: a mount point inside the VM's
    // directory cannot be removed. The VM says what it is, other verbs refuse it, a
    // second delete retries, and a restart finishes the job once the obstacle is gone.
    let vm = host.create_vm("stuck", &["--image", "tiny", "--disk", "1G"]);
    let pid = vm["pid"].as_u64().unwrap() as u32;
    let dir = PathBuf::from(vm["dir"].as_str().expect("the VM's directory"));
    let blocker = dir.join("blocker");
    std::fs::create_dir(&blocker).unwrap();
    let blocker_mount = Tmpfs::mount(&blocker, "1m");
    for attempt in 1..=2 {
        let out = host.banger(&["vm", "delete", "--force", "stuck"]);
        assert!(
            !out.status.success(),
            "attempt {attempt} cannot have finished"
        );
        let vm = row(&host, "stuck").expect("still listed");
        assert_deleting_without_process(&host, &vm, pid);
        assert!(
            vm["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("did not finish")),
            "{vm}"
        );
    }
    let exec = host.exec("stuck", &["true"]);
    assert!(
        text(&exec.stderr).contains("being deleted"),
        "{}",
        text(&exec.stderr)
    );
    let start = host.banger(&["vm", "start", "stuck"]);
    assert!(!start.status.success());
    drop(blocker_mount);
    wait_until("the blocker is unmounted", Duration::from_secs(10), || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(&blocker.display().to_string()) {
            Err("still mounted".to_string())
        } else {
            Ok(())
        }
    });
    host.kill_daemon(15).unwrap();
    host.start_daemon().unwrap();
    // The daemon answers only once its reconcile is done.
    host.assert_no_vm_left("after the restart finished the delete");
    assert!(
        host.daemon_log().contains("finished_deletes=[\"stuck\"]"),
        "the VM went, but not by the restart's reconcile:\n{}",
        banger_e2e::tail(&host.daemon_log(), 20)
    );
    host.kill_daemon(15).unwrap();
    drop(tmpfs);
}
