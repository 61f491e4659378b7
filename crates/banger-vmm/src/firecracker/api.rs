//! The Firecracker API requests banger sends, as pure values: the pre-boot sequence
//! (`/logger`, `/metrics`, `/machine-config`, `/boot-source`, `/drives/rootfs`,
//! `/network-interfaces/eth0`, `/vsock`), then `InstanceStart`; `SendCtrlAltDel` for a
//! graceful stop. Bodies are serde structs that omit absent fields, because Firecracker's
//! serde rejects `null` for a string and any field it does not know.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::VmmError;
use crate::handle::DriverKind;
use crate::spec::{DiskFormat, LaunchSpec};

/// The guest vsock port the agent listens on; the host writes `CONNECT 52\n`.
pub const AGENT_VSOCK_PORT: u32 = 52;
/// The guest's vsock context id (0-2 are reserved).
pub const GUEST_CID: u32 = 3;
/// The root drive's id.
pub const ROOT_DRIVE_ID: &str = "rootfs";
/// The NIC's id.
pub const IFACE_ID: &str = "eth0";

/// HTTP methods the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    /// The origin-form path, e.g. `/drives/rootfs`.
    pub path: String,
    pub body: Option<Value>,
}

impl ApiRequest {
    fn put(path: impl Into<String>, body: impl Serialize) -> ApiRequest {
        ApiRequest {
            method: Method::Put,
            path: path.into(),
            // Serialising these plain structs (strings, integers, booleans) cannot fail.
            body: Some(serde_json::to_value(body).unwrap_or(Value::Null)),
        }
    }

    /// `PUT /drives/rootfs`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The files Firecracker uses in the per-VM run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerPaths {
    pub api_socket: PathBuf,
    pub vsock_socket: PathBuf,
    pub log_file: PathBuf,
    pub metrics_file: PathBuf,
    pub stderr_log: PathBuf,
}

impl FirecrackerPaths {
    /// The fixed layout inside `run_dir` (short names: Unix socket paths max 108 bytes).
    pub fn in_run_dir(run_dir: &Path) -> FirecrackerPaths {
        FirecrackerPaths {
            api_socket: run_dir.join("api.sock"),
            vsock_socket: run_dir.join("vsock.sock"),
            log_file: run_dir.join("firecracker.log"),
            metrics_file: run_dir.join("metrics.json"),
            stderr_log: run_dir.join("vmm.stderr"),
        }
    }
}

/// The guest NIC as Firecracker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub tap_name: String,
    pub mac: String,
}

/// Everything the pre-boot requests carry, resolved from a [`LaunchSpec`]; paths are
/// strings because JSON carries only UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: String,
    pub initrd: Option<String>,
    pub boot_args: String,
    pub root_disk: String,
    /// Extra raw disks, attached after the root disk (`disk1`, `disk2`...).
    pub extra_disks: Vec<String>,
    pub net: Option<NetPlan>,
    pub log_file: String,
    pub metrics_file: String,
    pub vsock_uds: String,
}

impl BootPlan {
    /// Refuses what Firecracker cannot do (a qcow2 disk) and non-UTF-8 paths.
    pub fn from_spec(spec: &LaunchSpec, paths: &FirecrackerPaths) -> Result<BootPlan, VmmError> {
        if spec.root_disk_format == DiskFormat::Qcow2 {
            return Err(unsupported("boot from a qcow2 disk (raw images only)"));
        }
        if spec.vcpus > crate::warm::FIRECRACKER_MAX_VCPUS {
            return Err(unsupported(&format!(
                "run {} vCPUs (its limit is {}; ask for --vcpus {} or fewer)",
                spec.vcpus,
                crate::warm::FIRECRACKER_MAX_VCPUS,
                crate::warm::FIRECRACKER_MAX_VCPUS
            )));
        }
        Ok(BootPlan {
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            kernel: utf8(&spec.kernel)?,
            initrd: spec.initramfs.as_deref().map(utf8).transpose()?,
            boot_args: boot_args(&spec.cmdline),
            root_disk: utf8(&spec.root_disk)?,
            extra_disks: spec
                .extra_disks
                .iter()
                .map(|disk| utf8(disk))
                .collect::<Result<_, _>>()?,
            net: spec.net.as_ref().map(|net| NetPlan {
                tap_name: net.tap_name.clone(),
                mac: net.mac.clone(),
            }),
            log_file: utf8(&paths.log_file)?,
            metrics_file: utf8(&paths.metrics_file)?,
            vsock_uds: utf8(&paths.vsock_socket)?,
        })
    }
}

fn unsupported(what: &str) -> VmmError {
    VmmError::Unsupported {
        driver: DriverKind::Firecracker,
        what: what.to_string(),
    }
}

fn utf8(path: &Path) -> Result<String, VmmError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| unsupported(&format!("use the non-UTF-8 path {}", path.display())))
}

/// The spec's command line plus what Firecracker guests need: `reboot=k` (a guest reboot
/// goes through the i8042 reset, which is how Firecracker notices it and exits) and
/// `pci=off` (there is no PCI bus; probing it only costs boot time). A value the caller
/// already set wins.
pub fn boot_args(cmdline: &str) -> String {
    let mut args: Vec<&str> = cmdline.split_whitespace().collect();
    let has = |args: &[&str], key: &str| args.iter().any(|arg| arg.split('=').next() == Some(key));
    for (key, arg) in [("reboot", "reboot=k"), ("pci", "pci=off")] {
        if !has(&args, key) {
            args.push(arg);
        }
    }
    args.join(" ")
}

#[derive(Serialize)]
struct Logger<'a> {
    log_path: &'a str,
    level: &'static str,
    show_level: bool,
    show_log_origin: bool,
}

#[derive(Serialize)]
struct Metrics<'a> {
    metrics_path: &'a str,
}

#[derive(Serialize)]
struct MachineConfig {
    vcpu_count: u32,
    mem_size_mib: u64,
    smt: bool,
}

#[derive(Serialize)]
struct BootSource<'a> {
    kernel_image_path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    initrd_path: Option<&'a str>,
    boot_args: &'a str,
}

#[derive(Serialize)]
struct Drive<'a> {
    drive_id: &'a str,
    path_on_host: &'a str,
    is_root_device: bool,
    is_read_only: bool,
    /// Writeback advertises a flush to the guest and honours it, as QEMU's
    /// `cache=writeback` does; the default `Unsafe` drops guest flushes.
    cache_type: &'static str,
}

#[derive(Serialize)]
struct NetworkInterface<'a> {
    iface_id: &'a str,
    host_dev_name: &'a str,
    guest_mac: &'a str,
}

#[derive(Serialize)]
struct Vsock<'a> {
    guest_cid: u32,
    uds_path: &'a str,
}

#[derive(Serialize)]
struct Action {
    action_type: &'static str,
}

/// The pre-boot configuration, in the order Firecracker's docs use: logging first so a
/// later failure is logged.
pub fn preboot_requests(plan: &BootPlan) -> Vec<ApiRequest> {
    let mut requests = vec![
        ApiRequest::put(
            "/logger",
            Logger {
                log_path: &plan.log_file,
                level: "Info",
                show_level: true,
                show_log_origin: false,
            },
        ),
        ApiRequest::put(
            "/metrics",
            Metrics {
                metrics_path: &plan.metrics_file,
            },
        ),
        ApiRequest::put(
            "/machine-config",
            MachineConfig {
                vcpu_count: plan.vcpus,
                mem_size_mib: plan.memory_mib,
                smt: false,
            },
        ),
        ApiRequest::put(
            "/boot-source",
            BootSource {
                kernel_image_path: &plan.kernel,
                initrd_path: plan.initrd.as_deref(),
                boot_args: &plan.boot_args,
            },
        ),
        ApiRequest::put(
            format!("/drives/{ROOT_DRIVE_ID}"),
            Drive {
                drive_id: ROOT_DRIVE_ID,
                path_on_host: &plan.root_disk,
                is_root_device: true,
                is_read_only: false,
                cache_type: "Writeback",
            },
        ),
    ];
    let ids: Vec<String> = (1..=plan.extra_disks.len())
        .map(|n| format!("disk{n}"))
        .collect();
    for (id, disk) in ids.iter().zip(&plan.extra_disks) {
        requests.push(ApiRequest::put(
            format!("/drives/{id}"),
            Drive {
                drive_id: id,
                path_on_host: disk,
                is_root_device: false,
                is_read_only: false,
                cache_type: "Writeback",
            },
        ));
    }
    if let Some(net) = &plan.net {
        requests.push(ApiRequest::put(
            format!("/network-interfaces/{IFACE_ID}"),
            NetworkInterface {
                iface_id: IFACE_ID,
                host_dev_name: &net.tap_name,
                guest_mac: &net.mac,
            },
        ));
    }
    requests.push(ApiRequest::put(
        "/vsock",
        Vsock {
            guest_cid: GUEST_CID,
            uds_path: &plan.vsock_uds,
        },
    ));
    requests
}

/// `PUT /actions InstanceStart`: boots the configured guest.
pub fn instance_start() -> ApiRequest {
    ApiRequest::put(
        "/actions",
        Action {
            action_type: "InstanceStart",
        },
    )
}

/// `PUT /actions SendCtrlAltDel`: the x86 graceful stop (the guest sees Ctrl+Alt+Del on
/// its i8042 keyboard and, with `reboot=k`, Firecracker exits when the guest resets).
pub fn send_ctrl_alt_del() -> ApiRequest {
    ApiRequest::put(
        "/actions",
        Action {
            action_type: "SendCtrlAltDel",
        },
    )
}

#[derive(Serialize)]
struct VmState {
    state: &'static str,
}

/// `PATCH /vm {"state": "Paused"}`: stops the vCPUs (before `/snapshot/create`).
pub fn pause() -> ApiRequest {
    ApiRequest {
        method: Method::Patch,
        path: "/vm".into(),
        body: Some(serde_json::to_value(VmState { state: "Paused" }).unwrap_or(Value::Null)),
    }
}

/// `PATCH /vm {"state": "Resumed"}`.
pub fn resume() -> ApiRequest {
    ApiRequest {
        method: Method::Patch,
        path: "/vm".into(),
        body: Some(serde_json::to_value(VmState { state: "Resumed" }).unwrap_or(Value::Null)),
    }
}

#[derive(Serialize)]
struct DrivePath<'a> {
    drive_id: &'static str,
    path_on_host: &'a str,
}

/// `PATCH /drives/rootfs {"path_on_host": ...}` (after boot or load, the guest paused):
/// the root drive's backing file becomes `path`.
pub fn patch_root_drive(path: &Path) -> Result<ApiRequest, VmmError> {
    Ok(ApiRequest {
        method: Method::Patch,
        path: format!("/drives/{ROOT_DRIVE_ID}"),
        body: Some(
            serde_json::to_value(DrivePath {
                drive_id: ROOT_DRIVE_ID,
                path_on_host: &utf8(path)?,
            })
            .unwrap_or(Value::Null),
        ),
    })
}

#[derive(Serialize)]
struct SnapshotCreate<'a> {
    snapshot_type: &'static str,
    snapshot_path: &'a str,
    mem_file_path: &'a str,
}

/// `PUT /snapshot/create`: a full snapshot of a paused guest, device state to
/// `snapshot_path`, guest memory to `mem_file_path`.
pub fn snapshot_create(snapshot_path: &Path, mem_file_path: &Path) -> Result<ApiRequest, VmmError> {
    Ok(ApiRequest::put(
        "/snapshot/create",
        SnapshotCreate {
            snapshot_type: "Full",
            snapshot_path: &utf8(snapshot_path)?,
            mem_file_path: &utf8(mem_file_path)?,
        },
    ))
}

#[derive(Serialize)]
struct MemoryBackend<'a> {
    backend_type: &'static str,
    backend_path: &'a str,
}

#[derive(Serialize)]
struct NetworkOverride<'a> {
    iface_id: &'a str,
    host_dev_name: &'a str,
}

#[derive(Serialize)]
struct VsockOverride<'a> {
    uds_path: &'a str,
}

#[derive(Serialize)]
struct SnapshotLoad<'a> {
    snapshot_path: &'a str,
    mem_backend: MemoryBackend<'a>,
    resume_vm: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    network_overrides: Vec<NetworkOverride<'a>>,
    vsock_override: VsockOverride<'a>,
}

/// `PUT /snapshot/load` (before anything is configured): the `File` memory backend maps
/// `mem_file` privately, copy-on-write, so one memory file serves many clones; the NIC
/// gets this clone's tap and the vsock this clone's socket. With `resume_vm` the guest
/// runs at once; without, it stays paused (for its drive to be pointed elsewhere first).
pub fn snapshot_load(
    snapshot_path: &Path,
    mem_file: &Path,
    tap: Option<&str>,
    vsock_uds: &Path,
    resume_vm: bool,
) -> Result<ApiRequest, VmmError> {
    let snapshot_path = utf8(snapshot_path)?;
    let backend_path = utf8(mem_file)?;
    let uds_path = utf8(vsock_uds)?;
    Ok(ApiRequest::put(
        "/snapshot/load",
        SnapshotLoad {
            snapshot_path: &snapshot_path,
            mem_backend: MemoryBackend {
                backend_type: "File",
                backend_path: &backend_path,
            },
            resume_vm,
            network_overrides: tap
                .map(|tap| NetworkOverride {
                    iface_id: IFACE_ID,
                    host_dev_name: tap,
                })
                .into_iter()
                .collect(),
            vsock_override: VsockOverride {
                uds_path: &uds_path,
            },
        },
    ))
}

/// `GET /`: instance information; answers as soon as the API thread runs.
pub fn describe_instance() -> ApiRequest {
    ApiRequest {
        method: Method::Get,
        path: "/".into(),
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetAttachment;
    use serde_json::json;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            vm_name: "web".into(),
            vcpus: 2,
            memory_mib: 1024,
            kernel: "/img/vmlinux".into(),
            initramfs: None,
            cmdline: "console=ttyS0 root=/dev/vda rw panic=-1".into(),
            root_disk: "/vms/web/root.ext4".into(),
            root_disk_format: DiskFormat::Raw,
            extra_disks: Vec::new(),
            run_dir: "/run/vms/web".into(),
            serial_log: "/vms/web/serial.log".into(),
            net: None,
            outbox: None,
        }
    }

    fn plan(spec: &LaunchSpec) -> BootPlan {
        BootPlan::from_spec(spec, &FirecrackerPaths::in_run_dir(&spec.run_dir)).unwrap()
    }

    #[test]
    fn preboot_sequence_without_net_or_initrd() {
        let requests = preboot_requests(&plan(&spec()));
        let labels: Vec<String> = requests.iter().map(ApiRequest::label).collect();
        assert_eq!(
            labels,
            [
                "PUT /logger",
                "PUT /metrics",
                "PUT /machine-config",
                "PUT /boot-source",
                "PUT /drives/rootfs",
                "PUT /vsock"
            ]
        );
        let bodies: Vec<&Value> = requests.iter().filter_map(|r| r.body.as_ref()).collect();
        assert_eq!(
            bodies,
            [
                &json!({"log_path": "/run/vms/web/firecracker.log", "level": "Info", "show_level": true, "show_log_origin": false}),
                &json!({"metrics_path": "/run/vms/web/metrics.json"}),
                &json!({"vcpu_count": 2, "mem_size_mib": 1024, "smt": false}),
                &json!({"kernel_image_path": "/img/vmlinux", "boot_args": "console=ttyS0 root=/dev/vda rw panic=-1 reboot=k pci=off"}),
                &json!({"drive_id": "rootfs", "path_on_host": "/vms/web/root.ext4", "is_root_device": true, "is_read_only": false, "cache_type": "Writeback"}),
                &json!({"guest_cid": 3, "uds_path": "/run/vms/web/vsock.sock"}),
            ]
        );
    }

    #[test]
    fn net_and_initrd_add_their_fields() {
        let spec = LaunchSpec {
            initramfs: Some("/img/initramfs.cpio.gz".into()),
            net: Some(NetAttachment {
                tap_name: "bg-web0".into(),
                tap_fd: None,
                mac: "52:54:00:00:00:10".into(),
            }),
            ..spec()
        };
        let requests = preboot_requests(&plan(&spec));
        let boot = requests.iter().find(|r| r.path == "/boot-source").unwrap();
        assert_eq!(
            boot.body.as_ref().unwrap()["initrd_path"],
            "/img/initramfs.cpio.gz"
        );
        let nic = requests
            .iter()
            .find(|r| r.path == "/network-interfaces/eth0")
            .unwrap();
        assert_eq!(
            nic.body,
            Some(
                json!({"iface_id": "eth0", "host_dev_name": "bg-web0", "guest_mac": "52:54:00:00:00:10"})
            )
        );
        assert_eq!(requests.last().unwrap().path, "/vsock");
    }

    #[test]
    fn qcow2_is_refused() {
        let spec = LaunchSpec {
            root_disk_format: DiskFormat::Qcow2,
            extra_disks: Vec::new(),
            ..spec()
        };
        let error =
            BootPlan::from_spec(&spec, &FirecrackerPaths::in_run_dir(&spec.run_dir)).unwrap_err();
        assert!(matches!(error, VmmError::Unsupported { .. }), "{error}");
    }

    #[test]
    fn more_than_32_vcpus_are_refused() {
        let at_limit = LaunchSpec {
            vcpus: 32,
            ..spec()
        };
        let paths = FirecrackerPaths::in_run_dir(&at_limit.run_dir);
        assert_eq!(BootPlan::from_spec(&at_limit, &paths).unwrap().vcpus, 32);
        let too_many = LaunchSpec {
            vcpus: 33,
            ..spec()
        };
        let error = BootPlan::from_spec(&too_many, &paths).unwrap_err();
        assert_eq!(
            error.to_string(),
            "firecracker cannot run 33 vCPUs (its limit is 32; ask for --vcpus 32 or fewer)"
        );
    }

    #[test]
    fn boot_args_table() {
        let cases = [
            ("console=ttyS0", "console=ttyS0 reboot=k pci=off"),
            ("", "reboot=k pci=off"),
            ("console=ttyS0 reboot=t", "console=ttyS0 reboot=t pci=off"),
            ("pci=on  reboot=k", "pci=on reboot=k"),
            // `rebootx=1` is another parameter, not `reboot=`.
            ("rebootx=1", "rebootx=1 reboot=k pci=off"),
        ];
        for (cmdline, expected) in cases {
            assert_eq!(boot_args(cmdline), expected, "{cmdline:?}");
        }
    }

    #[test]
    fn actions() {
        assert_eq!(
            instance_start().body,
            Some(json!({"action_type": "InstanceStart"}))
        );
        assert_eq!(
            send_ctrl_alt_del().body,
            Some(json!({"action_type": "SendCtrlAltDel"}))
        );
        assert_eq!(describe_instance().label(), "GET /");
    }
}
