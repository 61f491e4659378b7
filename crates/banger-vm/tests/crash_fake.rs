//! A daemon killed at every point of a delete, a stop and a snapshot (`banger_vm::fault`),
//! against the fake VMM and agent (`support`): the operation's task dies at the point
//! (a panic in the fault hook: nothing after it runs; banger-vm has no `Drop` clean-up
//! that a kill -9 would skip), the service is dropped, and a new service on the same
//! state directory reconciles. Then the orphans are counted: VMM processes no running
//! VM owns, guests left paused, files and directories no row explains, rows in a
//! transient state, and snapshots that are neither gone nor complete. Each must be 0,
//! and what survived must be usable (started, stopped, deleted). Taps and NAT rules are
//! not in this picture: the fake service has no helper (the e2e `crash` tests cover
//! them on real guests). With `BANGER_RELIABILITY_OUT=DIR` the counts go to
//! `DIR/crash_<operation>.json` for `cargo xtask reliability`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_model::VmState;
use banger_model::progress::NoProgress;
use banger_requires::require;
use banger_vm::fault::{DELETE_POINTS, SNAPSHOT_POINTS, STOP_POINTS};
use banger_vm::warm::{READY, SnapshotPaths};
use banger_vm::{CreateRequest, VmService};
use support::{Bench, IMAGE};

fn request(name: &str) -> CreateRequest {
    CreateRequest {
        name: Some(name.into()),
        image: Some(IMAGE.into()),
        disk_mib: Some(1024),
        memory_mib: Some(256),
        vcpus: Some(1),
        ..CreateRequest::default()
    }
}

macro_rules! require_disk_tools {
    () => {
        require!(
            Tool("mkfs.ext4"),
            Tool("e2fsck"),
            Tool("debugfs"),
            Tool("resize2fs")
        )
    };
}

/// What a crash left once the next daemon reconciled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct Orphans {
    /// Fake VMM processes that no running VM owns.
    processes: usize,
    /// Running VMMs whose guest a snapshot paused and nothing resumed.
    paused: usize,
    /// Entries under the VM and snapshot directories (state and runtime) that no row
    /// explains, and leftovers inside a ready snapshot.
    files: usize,
    /// VMs neither running nor stopped; snapshots not ready.
    rows: usize,
    /// Ready snapshots missing one of their files.
    broken_snapshots: usize,
}

impl Orphans {
    fn total(&self) -> usize {
        self.processes + self.paused + self.files + self.rows + self.broken_snapshots
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn count_orphans(bench: &Bench, service: &VmService) -> Orphans {
    let mut orphans = Orphans::default();
    let vms = service.list().unwrap();
    let running: Vec<String> = vms
        .iter()
        .filter(|vm| vm.state == VmState::Running)
        .map(|vm| vm.id.to_string())
        .collect();
    let owned: Vec<u32> = vms
        .iter()
        .filter(|vm| vm.state == VmState::Running)
        .filter_map(|vm| service.pid_of(&vm.id))
        .collect();
    let live = bench.driver.live_pids();
    orphans.processes = live.iter().filter(|pid| !owned.contains(pid)).count();
    orphans.paused = bench
        .driver
        .paused
        .lock()
        .unwrap()
        .iter()
        .filter(|pid| live.contains(pid))
        .count();
    orphans.rows = vms
        .iter()
        .filter(|vm| !matches!(vm.state, VmState::Running | VmState::Stopped))
        .count();
    let ids: Vec<String> = vms.iter().map(|vm| vm.id.to_string()).collect();
    orphans.files += entries(&bench.dirs.state.join("vms"))
        .iter()
        .filter(|name| !ids.contains(name))
        .count();
    // A delete unlinks the root disk it moved to the trash on a blocking thread: give
    // that a bounded moment, then count what is still there.
    let trash = bench.dirs.state.join("trash");
    let waited = std::time::Instant::now();
    while !entries(&trash).is_empty() && waited.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    orphans.files += entries(&trash).len();
    orphans.files += entries(&bench.dirs.runtime.join("vms"))
        .iter()
        .filter(|name| !running.contains(name))
        .count();
    let snapshots = service.list_snapshots().unwrap();
    orphans.rows += snapshots.iter().filter(|s| s.state != READY).count();
    let ready: Vec<&str> = snapshots
        .iter()
        .filter(|s| s.state == READY)
        .map(|s| s.id.as_str())
        .collect();
    orphans.files += entries(&bench.dirs.state.join("snapshots"))
        .iter()
        .filter(|name| !ready.contains(&name.as_str()))
        .count();
    orphans.files += entries(&bench.dirs.runtime.join("snapshots")).len();
    for id in &ready {
        let paths = SnapshotPaths::new(&bench.dirs, id);
        if ![&paths.state, &paths.mem, &paths.disk]
            .iter()
            .all(|file| file.is_file())
        {
            orphans.broken_snapshots += 1;
        }
        orphans.files += entries(&paths.dir)
            .iter()
            .filter(|name| !["state", "mem", "disk.ext4"].contains(&name.as_str()))
            .count();
    }
    orphans
}

/// Sets a hook on `service` that kills the operation at `point`.
fn crash_at(service: &VmService, point: &'static str) -> Arc<std::sync::atomic::AtomicBool> {
    let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&reached);
    service.set_fault_hook(Some(Arc::new(move |at: &str| {
        if at == point {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            std::panic::panic_any("the daemon was killed here");
        }
    })));
    reached
}

/// Waits until `vm` has `state` (a stop the reconcile resumed runs in the background).
async fn wait_for_state(service: &VmService, vm: &str, state: VmState) -> VmState {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = service
            .find(vm)
            .map(|vm| vm.state)
            .unwrap_or(VmState::Error);
        if now == state || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, serde::Serialize)]
struct Outcome {
    point: &'static str,
    outcome: &'static str,
    orphans: Orphans,
}

#[allow(
    clippy::print_stderr,
    reason = "the figures are shown with --no-capture"
)]
fn record(operation: &str, outcomes: &[Outcome]) {
    let total: usize = outcomes.iter().map(|o| o.orphans.total()).sum();
    eprintln!(
        "crash during {operation}: {} points, {total} orphans after reconcile",
        outcomes.len()
    );
    for outcome in outcomes {
        eprintln!(
            "  {}: {} ({:?})",
            outcome.point, outcome.outcome, outcome.orphans
        );
    }
    if let Some(out) = std::env::var_os("BANGER_RELIABILITY_OUT") {
        std::fs::create_dir_all(&out).unwrap();
        let json =
            serde_json::json!({ "operation": operation, "points": outcomes, "orphans": total });
        std::fs::write(
            Path::new(&out).join(format!("crash_{operation}.json")),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_each_delete_point_leaves_nothing_after_reconcile() {
    require_disk_tools!();
    let mut outcomes = Vec::new();
    for point in DELETE_POINTS {
        let bench = Bench::new();
        let crashed = bench.service();
        crashed
            .create(request("victim"), &NoProgress)
            .await
            .unwrap();
        let reached = crash_at(&crashed, point);
        let task = {
            let service = Arc::clone(&crashed);
            tokio::spawn(async move { service.delete("victim", true).await })
        };
        assert!(task.await.unwrap_err().is_panic(), "{point}: not killed");
        assert!(reached.load(std::sync::atomic::Ordering::SeqCst), "{point}");
        drop(crashed);

        let service = bench.service();
        let report = service.reconcile().await.unwrap();
        let orphans = count_orphans(&bench, &service);
        // A delete once begun is finished by the next daemon: the VM is gone.
        assert!(service.list().unwrap().is_empty(), "{point}: {report:?}");
        assert_eq!(orphans, Orphans::default(), "{point}: {report:?}");
        // And the name is free again.
        service
            .create(request("victim"), &NoProgress)
            .await
            .unwrap();
        service.delete("victim", true).await.unwrap();
        assert_eq!(count_orphans(&bench, &service), Orphans::default());
        outcomes.push(Outcome {
            point,
            outcome: "gone",
            orphans,
        });
    }
    record("delete", &outcomes);
    assert_eq!(outcomes.len(), DELETE_POINTS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_each_stop_point_leaves_a_stopped_vm_after_reconcile() {
    require_disk_tools!();
    let mut outcomes = Vec::new();
    for point in STOP_POINTS {
        let bench = Bench::new();
        let crashed = bench.service();
        crashed
            .create(request("victim"), &NoProgress)
            .await
            .unwrap();
        let reached = crash_at(&crashed, point);
        let task = {
            let service = Arc::clone(&crashed);
            tokio::spawn(async move { service.stop("victim", None).await })
        };
        assert!(task.await.unwrap_err().is_panic(), "{point}: not killed");
        assert!(reached.load(std::sync::atomic::Ordering::SeqCst), "{point}");
        drop(crashed);

        let service = bench.service();
        let report = service.reconcile().await.unwrap();
        // A stop once begun is finished (in the background when the VMM still ran).
        let state = wait_for_state(&service, "victim", VmState::Stopped).await;
        assert_eq!(state, VmState::Stopped, "{point}: {report:?}");
        // The VMM's exit watch can mark the VM stopped before the resumed stop has
        // removed its run files: count once that stop is through (or 15 s passed).
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut orphans = count_orphans(&bench, &service);
        while orphans != Orphans::default() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            orphans = count_orphans(&bench, &service);
        }
        assert_eq!(orphans, Orphans::default(), "{point}: {report:?}");
        // The VM is usable: it starts, stops and goes.
        service.start("victim", &NoProgress).await.unwrap();
        service.stop("victim", None).await.unwrap();
        service.delete("victim", false).await.unwrap();
        assert_eq!(count_orphans(&bench, &service), Orphans::default());
        assert!(service.list().unwrap().is_empty());
        outcomes.push(Outcome {
            point,
            outcome: "stopped",
            orphans,
        });
    }
    record("stop", &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_each_snapshot_point_leaves_a_running_source_and_all_or_nothing() {
    require_disk_tools!();
    killed_at_each_snapshot_point(Bench::new, SNAPSHOT_POINTS, "snapshot").await;
}

/// The same on Firecracker, whose save is one call (no converting VMM): its points are
/// QEMU's without the converter's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_each_firecracker_snapshot_point_leaves_all_or_nothing() {
    require_disk_tools!();
    let points: Vec<&str> = SNAPSHOT_POINTS
        .iter()
        .copied()
        .filter(|point| !point.contains("converter") && *point != "snapshot: state saved")
        .collect();
    killed_at_each_snapshot_point(Bench::firecracker, &points, "snapshot_firecracker").await;
}

async fn killed_at_each_snapshot_point(
    new_bench: fn() -> Bench,
    points: &[&'static str],
    label: &str,
) {
    let mut outcomes = Vec::new();
    for &point in points {
        let bench = new_bench();
        let crashed = bench.service();
        crashed
            .create(request("source"), &NoProgress)
            .await
            .unwrap();
        let reached = crash_at(&crashed, point);
        let task = {
            let service = Arc::clone(&crashed);
            tokio::spawn(async move {
                service
                    .snapshot("source", Some("snap".into()), &NoProgress)
                    .await
            })
        };
        assert!(task.await.unwrap_err().is_panic(), "{point}: not killed");
        assert!(reached.load(std::sync::atomic::Ordering::SeqCst), "{point}");
        drop(crashed);

        let service = bench.service();
        let report = service.reconcile().await.unwrap();
        let orphans = count_orphans(&bench, &service);
        assert_eq!(orphans, Orphans::default(), "{point}: {report:?}");
        let source = service.find("source").unwrap();
        assert_eq!(source.state, VmState::Running, "{point}: {report:?}");
        let snapshots = service.list_snapshots().unwrap();
        let outcome = match snapshots.as_slice() {
            [] => "gone",
            [snapshot] if snapshot.state == READY => {
                // Complete (checked above) and deletable.
                service.delete_snapshot("snap").await.unwrap();
                "ready"
            }
            more => panic!("{point}: {more:?}"),
        };
        // The source still works, and a new snapshot of it can be taken.
        service
            .snapshot("source", Some("again".into()), &NoProgress)
            .await
            .unwrap();
        service.delete_snapshot("again").await.unwrap();
        service.delete("source", true).await.unwrap();
        assert_eq!(count_orphans(&bench, &service), Orphans::default());
        outcomes.push(Outcome {
            point,
            outcome,
            orphans,
        });
    }
    record(label, &outcomes);
    // Only the last point (the row already `ready`) keeps the snapshot.
    let kept: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.outcome == "ready")
        .map(|o| o.point)
        .collect();
    assert_eq!(kept, ["snapshot: row ready"]);
}
