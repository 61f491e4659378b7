//! `vm delete --force` when the state directory's file system is full, on a real guest:
//! the state directory is a small tmpfs the test mounts (root only), filled to the last
//! block once the VM runs. The delete must leave the VM gone, or `deleting` with no
//! process (never `running` without one), and once space is back the next delete or a
//! daemon restart finishes the job. A second VM then has its delete fail after the
//! `deleting` mark on purpose (a mount point inside its directory cannot be removed),
//! to show that state is retried, refused for other verbs and finished by a restart.

// Test code: mount tools run directly; observations go to stderr.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use banger_e2e::{HostOptions, TestHost, Tmpfs, note, pid_alive, require_vm, text, wait_until};

/// Room for a 1 GiB sparse root disk (the free-space check wants all of it) and the
/// database; only what is written takes memory.
const TMPFS_SIZE: &str = "1200m";

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
