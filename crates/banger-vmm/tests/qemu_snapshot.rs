//! Saving and restoring through the QEMU driver against a real `qemu-system-x86_64`
//! (a recorded skip, fatal under CI=true, when QEMU is not installed), on the 36-byte halting multiboot
//! "kernel" the driver tests use: no guest OS is needed to prove the VMM side. A guest
//! booted with anonymous RAM is saved to a stream; a QEMU with file-backed shared RAM
//! loads it paused and saves it again without RAM (`x-ignore-shared`); two clones then
//! run at once from the RAM file mapped copy-on-write, which stays byte-identical.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_vmm::qemu::QmpClient;
use banger_vmm::{
    DiskFormat, LaunchSpec, MemoryFile, QemuDriver, SnapshotRequest, VmmDriver, VmmError,
    VmmHandle, WarmLaunch,
};

mod qemu_support;

use qemu_support::{KillOnDrop, halting_kernel, require_qemu};

const MEMORY_MIB: u64 = 64;

fn spec(dir: &Path, name: &str, kernel: &Path) -> LaunchSpec {
    let vm_dir = dir.join(name);
    std::fs::create_dir_all(&vm_dir).unwrap();
    let disk = vm_dir.join("root.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    LaunchSpec {
        vm_name: name.into(),
        vcpus: 1,
        memory_mib: MEMORY_MIB,
        kernel: kernel.to_path_buf(),
        initramfs: None,
        cmdline: "console=ttyS0".into(),
        root_disk: disk,
        root_disk_format: DiskFormat::Raw,
        extra_disks: Vec::new(),
        run_dir: vm_dir.join("run"),
        serial_log: vm_dir.join("serial.log"),
        net: None,
        outbox: None,
    }
}

fn driver(binary: PathBuf) -> QemuDriver {
    qemu_support::driver(binary, Duration::from_secs(30))
}

async fn status(handle: &VmmHandle) -> String {
    let mut client = QmpClient::connect(&handle.control_socket).await.unwrap();
    client.query_status().await.unwrap().status
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn save_convert_and_restore_two_clones_copy_on_write() {
    let binary = require_qemu!();
    let dir = tempfile::tempdir().unwrap();
    let kernel = halting_kernel(dir.path());
    let qemu = driver(binary);

    // 1. A normally booted guest, saved to a self-contained stream, then resumed.
    let source_spec = spec(dir.path(), "source", &kernel);
    let source = qemu.launch(&source_spec).await.unwrap();
    let _source_guard = KillOnDrop::new(&source);
    let stream = dir.path().join("stream");
    let report = qemu
        .snapshot(
            &source,
            &SnapshotRequest {
                state_file: stream.clone(),
                ignore_shared: false,
                memory_file: None,
                root_disk: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(status(&source).await, "postmigrate");
    assert_eq!(mode(&stream), 0o600);
    assert!(report.state_bytes > 0);
    qemu.resume(&source).await.unwrap();
    assert_eq!(status(&source).await, "running");
    qemu.kill(&source, libc::SIGKILL).await.unwrap();

    // 2. Loaded paused into shared file-backed RAM, saved again without the RAM.
    let mem = dir.path().join("mem");
    let state = dir.path().join("state");
    let convert_spec = spec(dir.path(), "convert", &kernel);
    let converter = qemu
        .launch_warm(
            &convert_spec,
            &WarmLaunch {
                memory: Some(MemoryFile {
                    path: mem.clone(),
                    shared: true,
                }),
                incoming: Some(stream.clone()),
                paused: true,
                ..WarmLaunch::default()
            },
        )
        .await
        .unwrap();
    let _converter_guard = KillOnDrop::new(&converter);
    assert_eq!(status(&converter).await, "paused");
    let lean = qemu
        .snapshot(
            &converter,
            &SnapshotRequest {
                state_file: state.clone(),
                ignore_shared: true,
                memory_file: None,
                root_disk: None,
            },
        )
        .await
        .unwrap();
    qemu.kill(&converter, libc::SIGKILL).await.unwrap();
    qemu.wait_exit(&converter).await;
    assert!(
        lean.state_bytes < report.state_bytes,
        "RAM left out: {} vs {}",
        lean.state_bytes,
        report.state_bytes
    );
    assert_eq!(
        std::fs::metadata(&mem).unwrap().len(),
        MEMORY_MIB << 20,
        "the RAM file holds the guest's memory"
    );
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&mem, std::fs::Permissions::from_mode(0o400)).unwrap();
    let before = digest(&mem);

    // 3. Two clones at once, each mapping the read-only RAM file copy-on-write.
    let mut clones = Vec::new();
    for name in ["clone-a", "clone-b"] {
        let clone_spec = spec(dir.path(), name, &kernel);
        let clone = qemu
            .launch_warm(
                &clone_spec,
                &WarmLaunch {
                    memory: Some(MemoryFile {
                        path: mem.clone(),
                        shared: false,
                    }),
                    incoming: Some(state.clone()),
                    ignore_shared: true,
                    ..WarmLaunch::default()
                },
            )
            .await
            .unwrap();
        clones.push((KillOnDrop::new(&clone), clone));
    }
    for (_, clone) in &clones {
        assert_eq!(status(clone).await, "running");
        assert!(qemu.is_alive(clone));
    }
    for (_, clone) in &clones {
        qemu.kill(clone, libc::SIGKILL).await.unwrap();
        qemu.wait_exit(clone).await;
    }
    assert!(
        before == digest(&mem),
        "the RAM file changed under its clones"
    );

    // 4. A state that does not match the command line is refused with QEMU's reason,
    //    and no process is left.
    let mut wrong = spec(dir.path(), "wrong", &kernel);
    wrong.memory_mib = MEMORY_MIB * 2;
    let error = qemu
        .launch_warm(
            &wrong,
            &WarmLaunch {
                incoming: Some(stream.clone()),
                ..WarmLaunch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, VmmError::Restore { .. }), "{error}");
}
