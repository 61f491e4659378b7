//! The VM service's snapshot and fork on Firecracker, against the fake driver reporting
//! itself as Firecracker (`support`): the save is one pause, a disk copy, and one
//! snapshot call that writes the memory file and names the disk copy (no converting
//! VMM, unlike QEMU); a fork restores from that state and memory file with its own disk
//! and becomes a new machine. The request sequence Firecracker itself sees is
//! contract-tested in `banger-vmm` (`firecracker_contract.rs`).

mod support;

use std::os::unix::fs::PermissionsExt as _;

use banger_model::VmState;
use banger_model::progress::NoProgress;
use banger_requires::require;
use banger_vm::{CreateRequest, ForkRequest, SnapshotPaths};
use support::{Bench, Call, IMAGE};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_firecracker_snapshot_is_one_save_and_its_forks_use_their_own_disks() {
    require!(
        Tool("mkfs.ext4"),
        Tool("e2fsck"),
        Tool("debugfs"),
        Tool("resize2fs")
    );
    let bench = Bench::firecracker();
    let service = bench.service();
    let source = service
        .create(
            CreateRequest {
                name: Some("source".into()),
                image: Some(IMAGE.into()),
                disk_mib: Some(1024),
                memory_mib: Some(256),
                vcpus: Some(1),
                ..CreateRequest::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();

    let snapshot = service
        .snapshot("source", Some("snap".into()), &NoProgress)
        .await
        .unwrap();
    assert_eq!(snapshot.driver, "firecracker");
    let paths = SnapshotPaths::new(&bench.dirs, &snapshot.id);
    let calls = bench.driver.calls.lock().unwrap().clone();
    let [Call::Pause, Call::Snapshot(saved), Call::Resume] = calls.as_slice() else {
        panic!("one pause, one save, one resume; no converting VMM: {calls:?}");
    };
    assert_eq!(saved.state_file, paths.state);
    assert_eq!(saved.memory_file.as_ref(), Some(&paths.mem));
    let swap = saved
        .root_disk
        .as_ref()
        .expect("the state names the disk copy");
    assert_eq!(swap.saved_as, paths.disk);
    assert!(
        swap.live
            .starts_with(bench.dirs.state.join("vms").join(source.id.as_str())),
        "the source's own disk: {swap:?}"
    );
    assert_eq!(mode(&paths.state), 0o400);
    assert_eq!(mode(&paths.mem), 0o400);
    // Firecracker opens a restored drive read-write before the fork's patch.
    assert_eq!(mode(&paths.disk), 0o600);
    assert!(
        !paths.stream.exists(),
        "no self-contained stream on Firecracker"
    );
    // Saved through the source VM's outbox (what its confined VMM may write), then
    // moved to the snapshot's own path: a directory, no longer a link, the outbox empty.
    let outbox = bench
        .dirs
        .state
        .join("vms")
        .join(source.id.as_str())
        .join("outbox");
    assert!(
        std::fs::symlink_metadata(&paths.dir).unwrap().is_dir(),
        "{paths:?}"
    );
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0, "{outbox:?}");
    assert!(
        bench.driver.paused.lock().unwrap().is_empty(),
        "source resumed"
    );

    bench.driver.calls.lock().unwrap().clear();
    let forks = service
        .fork(
            ForkRequest {
                source: "snap".into(),
                name: Some("clone".into()),
                count: 2,
            },
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(forks.len(), 2);
    let calls = bench.driver.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let mut disks = Vec::new();
    for (call, fork) in calls.iter().zip(&forks) {
        let Call::LaunchWarm { warm, root_disk } = call else {
            panic!("{call:?}");
        };
        assert_eq!(warm.incoming.as_ref(), Some(&paths.state));
        let memory = warm.memory.as_ref().unwrap();
        assert_eq!(memory.path, paths.mem);
        assert!(!memory.shared, "mapped copy-on-write");
        assert_eq!(
            warm.saved_disk.as_ref(),
            Some(&paths.disk),
            "the disk the state names is allowed at load"
        );
        assert!(!warm.paused);
        assert!(
            root_disk.starts_with(bench.dirs.state.join("vms").join(fork.id.as_str())),
            "{root_disk:?}"
        );
        assert!(root_disk.exists());
        disks.push(root_disk.clone());
        let fork = service.find(fork.id.as_str()).unwrap();
        assert_eq!(fork.state, VmState::Running);
        assert_eq!(
            fork.runtime
                .forked_from
                .as_ref()
                .map(|f| f.snapshot.as_str()),
            Some("snap")
        );
    }
    assert_ne!(disks[0], disks[1]);
    for fork in &forks {
        service.delete(fork.id.as_str(), true).await.unwrap();
    }
    service.delete_snapshot("snap").await.unwrap();
    assert!(!paths.dir.exists());
    service.delete("source", true).await.unwrap();
}
