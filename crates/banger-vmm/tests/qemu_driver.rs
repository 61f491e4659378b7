//! The QEMU driver and its QMP client against a real `qemu-system-x86_64` (a recorded skip,
//! fatal under CI=true, when QEMU is not installed). No real guest is needed: QMP is tested
//! on a QEMU started paused with no kernel at all, and the driver's launch/stop on a
//! 36-byte multiboot "kernel" that only halts, which QEMU loads as readily as a vmlinux.
//! Booting real guests belongs to the e2e crate.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use banger_vmm::qemu::QmpClient;
use banger_vmm::{
    Accelerator, AgentEndpoint, DiskFormat, DriverKind, LaunchSpec, QemuDriver, ShutdownOutcome,
    VmmDriver, VmmError, VmmHandle,
};

mod qemu_support;

use qemu_support::{KillOnDrop, halting_kernel, require_qemu};

const TIMEOUT: Duration = Duration::from_secs(30);

fn spec(dir: &Path, kernel: PathBuf) -> LaunchSpec {
    std::fs::create_dir_all(dir).unwrap();
    let disk = dir.join("root.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    LaunchSpec {
        vm_name: "qtest".into(),
        vcpus: 1,
        memory_mib: 64,
        kernel,
        initramfs: None,
        cmdline: "console=ttyS0".into(),
        root_disk: disk,
        root_disk_format: DiskFormat::Raw,
        extra_disks: Vec::new(),
        run_dir: dir.join("run"),
        serial_log: dir.join("serial.log"),
        net: None,
        outbox: None,
    }
}

fn driver(binary: PathBuf) -> QemuDriver {
    qemu_support::driver(binary, TIMEOUT)
}

/// Connects once QEMU has created the socket (readiness, bounded by a deadline).
async fn connect_qmp(socket: &Path) -> QmpClient {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match QmpClient::connect(socket).await {
            Ok(client) => return client,
            Err(error) if tokio::time::Instant::now() > deadline => {
                panic!("QMP never answered: {error}")
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

#[tokio::test]
async fn qmp_against_a_paused_qemu_without_a_guest() {
    let binary = require_qemu!();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let mut child = tokio::process::Command::new(&binary)
        .args([
            "-machine",
            "microvm,accel=tcg",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
        ])
        .arg("-chardev")
        .arg(format!(
            "socket,id=qmp0,path={},server=on,wait=off",
            socket.display()
        ))
        .args(["-mon", "chardev=qmp0,mode=control"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let handle = VmmHandle {
        driver: DriverKind::Qemu,
        pid,
        start_time: banger_sys::process::process_start_time(pid).unwrap(),
        control_socket: socket.clone(),
        agent_socket: dir.path().join("agent.sock"),
        accelerator: Accelerator::Tcg,
    };
    let qemu = driver(binary);
    assert!(qemu.is_alive(&handle));

    let mut client = connect_qmp(&socket).await;
    let status = client.query_status().await.unwrap();
    assert_eq!(status.status, "prelaunch");
    assert!(!status.running);
    let unknown = client.execute("no-such-command", None).await.unwrap_err();
    assert!(unknown.to_string().contains("CommandNotFound"), "{unknown}");

    // QEMU emits a SHUTDOWN event before the reply to `quit`; the client skips it.
    client.quit().await.unwrap();
    let exited = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "{exited}");
    assert!(!qemu.is_alive(&handle));
    tokio::time::timeout(TIMEOUT, qemu.wait_exit(&handle))
        .await
        .unwrap();
}

#[tokio::test]
async fn launch_reattach_and_forced_shutdown() {
    let binary = require_qemu!();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), halting_kernel(dir.path()));
    let qemu = driver(binary.clone());
    let handle = qemu.launch(&spec).await.unwrap();
    let _guard = KillOnDrop::new(&handle);
    assert_eq!(handle.driver, DriverKind::Qemu);
    assert_eq!(handle.accelerator, Accelerator::Tcg);
    assert!(qemu.is_alive(&handle));
    assert_eq!(
        qemu.agent_endpoint(&handle),
        AgentEndpoint::VirtioSerial {
            socket: spec.run_dir.join("agent.sock")
        }
    );
    assert!(
        spec.run_dir.join("agent.sock").exists(),
        "virtio-serial socket"
    );
    let pid_file = std::fs::read_to_string(spec.run_dir.join("vmm.pid")).unwrap();
    assert_eq!(pid_file.trim(), handle.pid.to_string());

    let mut client = QmpClient::connect(&handle.control_socket).await.unwrap();
    assert_eq!(client.query_status().await.unwrap().status, "running");
    drop(client);

    // What a restarted daemon does: the handle comes back from its per-VM file and a new
    // driver instance operates on it.
    let json = serde_json::to_string(&handle).unwrap();
    assert!(
        json.contains("\"driver\":\"qemu\"") && json.contains("\"accelerator\":\"tcg\""),
        "{json}"
    );
    let reattached: VmmHandle = serde_json::from_str(&json).unwrap();
    let restarted = driver(binary);
    assert!(restarted.is_alive(&reattached));

    // The halting guest ignores the power button: quit/SIGKILL after the timeout.
    let outcome = restarted
        .shutdown(&reattached, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(outcome, ShutdownOutcome::Forced);
    assert!(!restarted.is_alive(&reattached));
    tokio::time::timeout(TIMEOUT, restarted.wait_exit(&reattached))
        .await
        .unwrap();
    // Shutting down what is gone is graceful and immediate.
    assert_eq!(
        restarted.shutdown(&reattached, TIMEOUT).await.unwrap(),
        ShutdownOutcome::Graceful
    );
}

#[tokio::test]
async fn exit_within_the_timeout_is_graceful_and_kill_is_seen_by_wait_exit() {
    let binary = require_qemu!();
    let dir = tempfile::tempdir().unwrap();
    let qemu = driver(binary);

    // QEMU exits cleanly on SIGTERM, standing in for a guest that powers off.
    let first = qemu
        .launch(&spec(&dir.path().join("a"), halting_kernel(dir.path())))
        .await;
    let first = first.unwrap();
    let _first_guard = KillOnDrop::new(&first);
    let (outcome, killed) = tokio::join!(
        qemu.shutdown(&first, TIMEOUT),
        qemu.kill(&first, libc::SIGTERM)
    );
    killed.unwrap();
    assert_eq!(outcome.unwrap(), ShutdownOutcome::Graceful);
    assert!(!qemu.is_alive(&first));

    let second = qemu
        .launch(&spec(&dir.path().join("b"), halting_kernel(dir.path())))
        .await
        .unwrap();
    let _second_guard = KillOnDrop::new(&second);
    let waiter = qemu.wait_exit(&second);
    qemu.kill(&second, libc::SIGKILL).await.unwrap();
    tokio::time::timeout(TIMEOUT, waiter).await.unwrap();
    assert!(!qemu.is_alive(&second));
    // Signalling a process that is gone is not an error.
    qemu.kill(&second, libc::SIGKILL).await.unwrap();
}

#[tokio::test]
async fn launch_failure_carries_qemus_stderr() {
    let binary = require_qemu!();
    let dir = tempfile::tempdir().unwrap();
    let missing_kernel = dir.path().join("no-such-vmlinux");
    let error = driver(binary)
        .launch(&spec(dir.path(), missing_kernel.clone()))
        .await
        .unwrap_err();
    match &error {
        VmmError::EarlyExit {
            driver,
            stderr_tail,
            ..
        } => {
            assert_eq!(*driver, DriverKind::Qemu);
            assert!(
                stderr_tail.contains(&missing_kernel.display().to_string()),
                "{stderr_tail}"
            );
        }
        other => panic!("expected an early exit, got {other:?}"),
    }
    assert!(
        error.to_string().contains("qemu exited during launch"),
        "{error}"
    );

    let wrong = driver(dir.path().join("not-qemu"));
    assert!(matches!(
        wrong
            .launch(&spec(&dir.path().join("x"), halting_kernel(dir.path())))
            .await,
        Err(VmmError::Spawn { .. })
    ));
}

#[tokio::test]
async fn a_firecracker_handle_is_refused() {
    let binary = require_qemu!();
    let handle = VmmHandle {
        driver: DriverKind::Firecracker,
        pid: std::process::id(),
        start_time: 0,
        control_socket: "/nonexistent".into(),
        agent_socket: "/nonexistent".into(),
        accelerator: Accelerator::Kvm,
    };
    assert!(matches!(
        driver(binary).shutdown(&handle, TIMEOUT).await,
        Err(VmmError::WrongDriver { .. })
    ));
}
