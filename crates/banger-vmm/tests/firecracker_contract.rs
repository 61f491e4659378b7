//! Contract test for the Firecracker driver: its real request builders and HTTP client
//! talk to a server that validates every request against Firecracker's published API
//! description (`fixtures/firecracker/firecracker-api.yaml`, parsed at test time). Also
//! negative cases proving the validator refuses what Firecracker refuses, so it cannot
//! pass vacuously, and a full driver launch/stop against the same server through a fake
//! `firecracker` (socat forwarding the driver's API socket), when socat is installed.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_vmm::firecracker::api::{self, ApiRequest, BootPlan, FirecrackerPaths, Method};
use banger_vmm::firecracker::{ApiError, FirecrackerApi};
use banger_vmm::{
    AgentEndpoint, DiskFormat, DriverKind, FirecrackerConfig, FirecrackerDriver, LaunchSpec,
    NetAttachment, RootDiskSwap, ShutdownOutcome, VmmDriver, VmmError,
};
use serde_json::{Value, json};
use support::contract_server::{ContractServer, spec_path};
use support::openapi::{ApiSpec, Verdict};

fn load_spec() -> Arc<ApiSpec> {
    Arc::new(ApiSpec::load(&spec_path()).expect("firecracker-api.yaml parses"))
}

fn launch_spec(run_dir: &Path, with_extras: bool) -> LaunchSpec {
    LaunchSpec {
        vm_name: "web".into(),
        vcpus: 2,
        memory_mib: 512,
        kernel: "/images/kernel/vmlinux".into(),
        initramfs: with_extras.then(|| PathBuf::from("/images/kernel/initramfs.cpio.gz")),
        cmdline: "console=ttyS0 root=/dev/vda rw panic=-1 net.ifnames=0".into(),
        root_disk: "/state/vms/web/root.ext4".into(),
        root_disk_format: DiskFormat::Raw,
        extra_disks: if with_extras {
            vec![PathBuf::from("/state/vms/web/workspace.ext4")]
        } else {
            Vec::new()
        },
        run_dir: run_dir.to_path_buf(),
        serial_log: run_dir.join("serial.log"),
        net: with_extras.then(|| NetAttachment {
            tap_name: "bg-web0".into(),
            tap_fd: None,
            mac: "52:54:00:12:34:56".into(),
        }),
        outbox: None,
    }
}

fn plan_for(spec: &LaunchSpec) -> BootPlan {
    BootPlan::from_spec(spec, &FirecrackerPaths::in_run_dir(&spec.run_dir)).unwrap()
}

#[test]
fn the_spec_loads_and_describes_the_driver_paths() {
    let spec = load_spec();
    let operations = spec.operations();
    for (method, template) in [
        ("PUT", "/actions"),
        ("PUT", "/boot-source"),
        ("PUT", "/drives/{drive_id}"),
        ("PUT", "/logger"),
        ("PUT", "/machine-config"),
        ("PUT", "/metrics"),
        ("PUT", "/network-interfaces/{iface_id}"),
        ("PUT", "/vsock"),
        ("GET", "/"),
    ] {
        assert!(
            operations.contains(&(method.to_string(), template.to_string())),
            "{method} {template} missing from {operations:?}"
        );
    }
}

#[test]
fn the_validator_refuses_unimplemented_schema_keywords() {
    let text = r##"
swagger: "2.0"
paths:
  /x:
    put:
      parameters:
        - name: body
          in: body
          schema:
            $ref: "#/definitions/X"
      responses:
        204:
          description: ok
definitions:
  X:
    type: object
    properties:
      name:
        type: string
        pattern: "^[a-z]+$"
"##;
    let error = ApiSpec::parse(text).unwrap_err();
    assert!(error.contains("`pattern` is not implemented"), "{error}");
}

/// Every request the driver can build, checked without HTTP.
#[test]
fn every_request_the_driver_builds_is_documented_and_valid() {
    let spec = load_spec();
    let dir = tempfile::tempdir().unwrap();
    let mut requests: Vec<ApiRequest> = Vec::new();
    for with_extras in [false, true] {
        requests.extend(api::preboot_requests(&plan_for(&launch_spec(
            dir.path(),
            with_extras,
        ))));
    }
    requests.extend([
        api::instance_start(),
        api::send_ctrl_alt_del(),
        api::describe_instance(),
        api::pause(),
        api::resume(),
        api::snapshot_create(&dir.path().join("state"), &dir.path().join("mem")).unwrap(),
        api::snapshot_load(
            &dir.path().join("state"),
            &dir.path().join("mem"),
            Some("bg-web0"),
            &dir.path().join("vsock.sock"),
            false,
        )
        .unwrap(),
        api::snapshot_load(
            &dir.path().join("state"),
            &dir.path().join("mem"),
            None,
            &dir.path().join("vsock.sock"),
            true,
        )
        .unwrap(),
        api::patch_root_drive(&dir.path().join("disk.ext4")).unwrap(),
    ]);
    for request in &requests {
        let body = request
            .body
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        match spec.check(request.method.as_str(), &request.path, body.as_bytes()) {
            Verdict::Valid { .. } => {}
            other => panic!("{} {body}: {other:?}", request.label()),
        }
    }
}

/// Each case: a request the validator must refuse, and a fragment its reason contains.
#[test]
fn the_validator_catches_what_firecracker_refuses() {
    let spec = load_spec();
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        (
            "PUT",
            "/machine-config",
            Some(json!({"mem_size_mib": 512})),
            "body.vcpu_count is required",
        ),
        (
            "PUT",
            "/machine-config",
            Some(json!({"vcpu_count": "2", "mem_size_mib": 512})),
            "body.vcpu_count = \"2\" should be of type integer",
        ),
        (
            "PUT",
            "/machine-config",
            Some(json!({"vcpu_count": 2.5, "mem_size_mib": 512})),
            "should be of type integer",
        ),
        (
            "PUT",
            "/machine-config",
            Some(json!({"vcpu_count": 33, "mem_size_mib": 512})),
            "above the maximum 32",
        ),
        (
            "PUT",
            "/machine-config",
            Some(json!({"vcpu_count": 2, "mem_size_mib": 512, "huge_pages": "1G"})),
            "body.huge_pages = \"1G\" is not one of",
        ),
        (
            "PUT",
            "/boot-source",
            Some(json!({"kernel_image_path": "/k", "kernel_args": "console=ttyS0"})),
            "body.kernel_args is not a known field",
        ),
        (
            "PUT",
            "/boot-source",
            Some(json!({"kernel_image_path": "/k", "initrd_path": null})),
            "body.initrd_path = null should be of type string",
        ),
        (
            "PUT",
            "/actions",
            Some(json!({"action_type": "Reboot"})),
            "is not one of",
        ),
        ("PUT", "/actions", None, "the body is required"),
        (
            "PUT",
            "/vsock",
            Some(json!({"guest_cid": 2, "uds_path": "/v.sock"})),
            "below the minimum 3",
        ),
        (
            "PUT",
            "/drives/rootfs",
            Some(json!({"drive_id": "rootfs", "is_root_device": true, "cache_type": "Sometimes"})),
            "body.cache_type = \"Sometimes\" is not one of",
        ),
        (
            // Through a $ref two levels down: RateLimiter -> TokenBucket.
            "PUT",
            "/drives/rootfs",
            Some(json!({"drive_id": "rootfs", "is_root_device": true,
                        "rate_limiter": {"bandwidth": {"refill_time": 100}}})),
            "body.rate_limiter.bandwidth.size is required",
        ),
        (
            "PUT",
            "/drives/rootfs",
            Some(json!({"drive_id": "other", "is_root_device": true})),
            "does not match the path",
        ),
        (
            "PUT",
            "/metrics",
            Some(json!({"metrics_path": "/m", "properties": {"team": 7}})),
            "body.properties.team = 7 should be of type string",
        ),
        (
            "PUT",
            "/logger",
            Some(json!({"level": "Loud"})),
            "is not one of",
        ),
        (
            "PUT",
            "/machine-config",
            Some(json!([1, 2])),
            "should be of type object",
        ),
    ];
    for (method, path, body, expected) in cases {
        let bytes = body.as_ref().map(Value::to_string).unwrap_or_default();
        match spec.check(method, path, bytes.as_bytes()) {
            Verdict::Invalid(message) => assert!(
                message.contains(expected),
                "{method} {path} {bytes}: {message:?} lacks {expected:?}"
            ),
            other => panic!("{method} {path} {bytes} should be refused, got {other:?}"),
        }
    }

    for (method, path) in [
        ("PUT", "/reboot"),
        ("DELETE", "/drives/rootfs"),
        ("GET", "/vsock"),
        ("PUT", "/drives"),
    ] {
        assert!(
            matches!(spec.check(method, path, b""), Verdict::Undocumented(_)),
            "{method} {path} should be undocumented"
        );
    }
}

#[tokio::test]
async fn preboot_sequence_without_net_or_initrd_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());
    client
        .configure_and_start(&plan_for(&launch_spec(dir.path(), false)))
        .await
        .unwrap();
    assert_eq!(
        server.assert_all_valid(),
        [
            "PUT /logger",
            "PUT /metrics",
            "PUT /machine-config",
            "PUT /boot-source",
            "PUT /drives/rootfs",
            "PUT /vsock",
            "PUT /actions",
        ]
    );
    let boot = &server.exchanges()[3];
    assert!(boot.body.as_ref().unwrap().get("initrd_path").is_none());
}

#[tokio::test]
async fn preboot_sequence_with_net_and_initrd_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());
    client
        .configure_and_start(&plan_for(&launch_spec(dir.path(), true)))
        .await
        .unwrap();
    assert_eq!(
        server.assert_all_valid(),
        [
            "PUT /logger",
            "PUT /metrics",
            "PUT /machine-config",
            "PUT /boot-source",
            "PUT /drives/rootfs",
            "PUT /drives/disk1",
            "PUT /network-interfaces/eth0",
            "PUT /vsock",
            "PUT /actions",
        ]
    );
    let exchanges = server.exchanges();
    assert_eq!(
        exchanges[3].body.as_ref().unwrap()["initrd_path"],
        "/images/kernel/initramfs.cpio.gz"
    );
    assert_eq!(
        exchanges[5].body,
        Some(
            json!({"drive_id": "disk1", "path_on_host": "/state/vms/web/workspace.ext4", "is_root_device": false, "is_read_only": false, "cache_type": "Writeback"})
        )
    );
    assert_eq!(
        exchanges[8].body,
        Some(json!({"action_type": "InstanceStart"}))
    );
}

#[tokio::test]
async fn graceful_stop_and_describe_pass_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());
    client.send_ctrl_alt_del().await.unwrap();
    let info = client.describe_instance().await.unwrap();
    // The server answered with a minimal InstanceInfo that it validated itself.
    assert_eq!(info.status, 200);
    assert!(info.body.get("state").is_some(), "{:?}", info.body);
    assert_eq!(server.assert_all_valid(), ["PUT /actions", "GET /"]);
    assert_eq!(
        server.exchanges()[0].body,
        Some(json!({"action_type": "SendCtrlAltDel"}))
    );
}

/// Snapshot and restore as the driver sends them: pause, the root drive pointed at the
/// snapshot's disk copy for the full snapshot and back after, resume; then a paused load
/// with the `File` memory backend (copy-on-write), this clone's tap and vsock, its root
/// drive pointed at its own disk, and resume.
#[tokio::test]
async fn snapshot_and_restore_pass_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());
    let state = dir.path().join("state");
    let mem = dir.path().join("mem");
    let swap = RootDiskSwap {
        saved_as: dir.path().join("snapshot-disk.ext4"),
        live: dir.path().join("source-root.ext4"),
    };
    let clone_disk = dir.path().join("clone-root.ext4");
    client
        .pause_and_snapshot(&state, &mem, Some(&swap))
        .await
        .unwrap();
    client.resume().await.unwrap();
    client
        .load_snapshot(
            &state,
            &mem,
            Some("bg-web1"),
            &dir.path().join("v.sock"),
            &clone_disk,
        )
        .await
        .unwrap();
    assert_eq!(
        server.assert_all_valid(),
        [
            "PATCH /vm",
            "PATCH /drives/rootfs",
            "PUT /snapshot/create",
            "PATCH /drives/rootfs",
            "PATCH /vm",
            "PUT /snapshot/load",
            "PATCH /drives/rootfs",
            "PATCH /vm",
        ]
    );
    let exchanges = server.exchanges();
    let drive =
        |path: &Path| json!({"drive_id": "rootfs", "path_on_host": path.display().to_string()});
    assert_eq!(exchanges[0].body, Some(json!({"state": "Paused"})));
    assert_eq!(exchanges[1].body, Some(drive(&swap.saved_as)));
    assert_eq!(
        exchanges[2].body,
        Some(json!({
            "snapshot_type": "Full",
            "snapshot_path": state.display().to_string(),
            "mem_file_path": mem.display().to_string(),
        }))
    );
    assert_eq!(exchanges[3].body, Some(drive(&swap.live)));
    assert_eq!(exchanges[4].body, Some(json!({"state": "Resumed"})));
    let load = exchanges[5].body.clone().unwrap();
    assert_eq!(load["mem_backend"]["backend_type"], "File");
    assert_eq!(
        load["mem_backend"]["backend_path"],
        mem.display().to_string()
    );
    assert_eq!(
        load["resume_vm"], false,
        "resumed only after the drive patch"
    );
    assert_eq!(
        load["network_overrides"],
        json!([{"iface_id": "eth0", "host_dev_name": "bg-web1"}])
    );
    assert_eq!(
        load["vsock_override"]["uds_path"],
        dir.path().join("v.sock").display().to_string()
    );
    assert_eq!(exchanges[6].body, Some(drive(&clone_disk)));
    assert_eq!(exchanges[7].body, Some(json!({"state": "Resumed"})));
}

/// A failed save still points the source's drive back at its live disk.
#[tokio::test]
async fn a_failed_snapshot_restores_the_live_drive() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());
    let swap = RootDiskSwap {
        saved_as: dir.path().join("copy.ext4"),
        live: dir.path().join("live.ext4"),
    };
    // A state path Firecracker's JSON cannot carry: the save fails after the first patch.
    let unsendable = {
        use std::os::unix::ffi::OsStrExt as _;
        dir.path().join(std::ffi::OsStr::from_bytes(b"state-\xff"))
    };
    client
        .pause_and_snapshot(&unsendable, &dir.path().join("mem"), Some(&swap))
        .await
        .unwrap_err();
    let exchanges = server.exchanges();
    assert_eq!(
        server.assert_all_valid(),
        ["PATCH /vm", "PATCH /drives/rootfs", "PATCH /drives/rootfs"]
    );
    assert_eq!(
        exchanges.last().and_then(|e| e.body.clone()),
        Some(json!({"drive_id": "rootfs", "path_on_host": swap.live.display().to_string()}))
    );
}

/// The real client against a refusal: the fault message reaches the caller, and a driver
/// request built from an out-of-range spec is refused by the contract.
#[tokio::test]
async fn faults_reach_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("api.sock"));
    let client = FirecrackerApi::new(server.socket());

    let bad = ApiRequest {
        method: Method::Put,
        path: "/machine-config".into(),
        body: Some(json!({"mem_size_mib": 512})),
    };
    match client.send(&bad).await {
        Err(ApiError::Fault {
            status: 400,
            fault_message,
        }) => {
            assert!(
                fault_message.contains("vcpu_count is required"),
                "{fault_message}"
            );
        }
        other => panic!("expected a fault, got {other:?}"),
    }

    // The driver refuses more than 32 vCPUs before sending anything (`BootPlan`); a plan
    // forced past that check shows the limit is the contract's.
    let too_many = LaunchSpec {
        vcpus: 64,
        ..launch_spec(dir.path(), false)
    };
    let paths = FirecrackerPaths::in_run_dir(&too_many.run_dir);
    assert!(matches!(
        BootPlan::from_spec(&too_many, &paths),
        Err(VmmError::Unsupported { .. })
    ));
    let mut forced = plan_for(&launch_spec(dir.path(), false));
    forced.vcpus = 64;
    match client.configure_and_start(&forced).await {
        Err(VmmError::Api {
            request,
            source: ApiError::Fault { fault_message, .. },
        }) => {
            assert_eq!(request, "PUT /machine-config");
            assert!(
                fault_message.contains("above the maximum 32"),
                "{fault_message}"
            );
        }
        other => panic!("expected the machine-config refusal, got {other:?}"),
    }
    // It stopped at the first refusal: nothing after /machine-config was sent.
    let labels: Vec<String> = server.exchanges().iter().map(|e| e.label()).collect();
    assert_eq!(
        labels.last().map(String::as_str),
        Some("PUT /machine-config")
    );

    // A request the spec does not describe is recorded as such, so a test asserting the
    // contract fails on it.
    let undocumented = ApiRequest {
        method: Method::Put,
        path: "/reboot".into(),
        body: Some(json!({})),
    };
    assert!(matches!(
        client.send(&undocumented).await,
        Err(ApiError::Fault { status: 400, .. })
    ));
    assert!(matches!(
        server.exchanges().last().unwrap().verdict,
        Verdict::Undocumented(_)
    ));
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.assert_all_valid()));
    assert!(
        caught.is_err(),
        "assert_all_valid must fail on refused or undocumented requests"
    );
}

struct KillOnDrop(u32, u64);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if banger_sys::process::is_same_process_alive(self.0, self.1) {
            let _ = banger_sys::process::send_signal(self.0, libc::SIGKILL);
        }
    }
}

fn socat() -> Option<PathBuf> {
    ["/usr/bin/socat", "/bin/socat", "/usr/local/bin/socat"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// A fake `firecracker`: it accepts `--api-sock PATH` and forwards that socket to the
/// contract server, so the real driver (spawn, readiness, configure, stop) runs against
/// the contract.
fn fake_firecracker(dir: &Path, socat: &Path, contract: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("firecracker");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --api-sock ] || {{ echo \"usage: $0 --api-sock PATH\" >&2; exit 2; }}\n\
         echo 'fake firecracker starting' >&2\n\
         exec {} UNIX-LISTEN:\"$2\",fork UNIX-CONNECT:{}\n",
        socat.display(),
        contract.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn driver_launch_and_stop_pass_the_contract() {
    let Some(socat) = socat() else {
        banger_requires::skip!(
            "socat is not installed (it fakes the firecracker process; scripts/install-deps.sh installs it)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ContractServer::start(load_spec(), &dir.path().join("contract.sock"));
    let binary = fake_firecracker(dir.path(), &socat, server.socket());
    let driver = FirecrackerDriver::new(FirecrackerConfig::new(binary));
    let run_dir = dir.path().join("run");
    let spec = launch_spec(&run_dir, true);

    let handle = driver.launch(&spec).await.unwrap();
    // The fake runs in its own session: make sure a failing assertion does not leak it.
    let _guard = KillOnDrop(handle.pid, handle.start_time);
    assert_eq!(handle.driver, DriverKind::Firecracker);
    assert!(driver.is_alive(&handle));
    assert_eq!(
        driver.agent_endpoint(&handle),
        AgentEndpoint::Vsock {
            uds: run_dir.join("vsock.sock"),
            port: 52
        }
    );
    // Firecracker opens, but does not create, its log and metrics files.
    assert!(run_dir.join("firecracker.log").exists());
    assert!(run_dir.join("metrics.json").exists());

    // The fake ignores Ctrl+Alt+Del, so the stop is forced after the timeout.
    let outcome = driver
        .shutdown(&handle, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(outcome, ShutdownOutcome::Forced);
    assert!(!driver.is_alive(&handle));

    let labels = server.assert_all_valid();
    assert_eq!(
        labels.first().map(String::as_str),
        Some("GET /"),
        "readiness probe first: {labels:?}"
    );
    let actions: Vec<Value> = server
        .exchanges()
        .into_iter()
        .filter(|e| e.path == "/actions")
        .filter_map(|e| e.body)
        .collect();
    assert_eq!(
        actions,
        [
            json!({"action_type": "InstanceStart"}),
            json!({"action_type": "SendCtrlAltDel"})
        ]
    );
}

#[tokio::test]
async fn driver_reports_an_early_exit_with_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("firecracker");
    std::fs::write(
        &binary,
        "#!/bin/sh\necho 'Error: KVM not available' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let driver = FirecrackerDriver::new(FirecrackerConfig::new(binary));
    let error = driver
        .launch(&launch_spec(&dir.path().join("run"), false))
        .await
        .unwrap_err();
    match &error {
        VmmError::EarlyExit {
            driver,
            stderr_tail,
            ..
        } => {
            assert_eq!(*driver, DriverKind::Firecracker);
            assert!(stderr_tail.contains("KVM not available"), "{stderr_tail}");
        }
        other => panic!("expected an early exit, got {other:?}"),
    }

    let missing = FirecrackerDriver::new(FirecrackerConfig::new(dir.path().join("nope")));
    assert!(matches!(
        missing
            .launch(&launch_spec(&dir.path().join("run2"), false))
            .await,
        Err(VmmError::Spawn { .. })
    ));

    let qcow2 = LaunchSpec {
        root_disk_format: DiskFormat::Qcow2,
        extra_disks: Vec::new(),
        ..launch_spec(&dir.path().join("run3"), false)
    };
    assert!(matches!(
        missing.launch(&qcow2).await,
        Err(VmmError::Unsupported { .. })
    ));
}
