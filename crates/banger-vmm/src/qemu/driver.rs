//! [`QemuDriver`]: launches `qemu-system-x86_64` for a [`LaunchSpec`], considers it up once
//! QMP answers, and stops it with an ACPI power-button press that falls back to `quit`
//! and then SIGKILL.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::driver::{BoxFuture, VmmDriver};
use crate::error::VmmError;
use crate::handle::{Accelerator, AgentEndpoint, DriverKind, ShutdownOutcome, VmmHandle};
use crate::process::{self, NotReady, VmmCommand};
use crate::qemu::cmdline::{QemuOptions, QemuPaths, qemu_args};
use crate::qemu::qmp::QmpClient;
use crate::spec::LaunchSpec;
use crate::warm::{SnapshotReport, SnapshotRequest, WarmLaunch};

/// Where the inherited tap fd sits in QEMU: its stdin. See [`QemuDriver::launch`].
const TAP_FD_IN_CHILD: i32 = 0;

/// How long `quit` gets after the graceful timeout before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How the QEMU driver runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// `qemu-system-x86_64`, looked up on the clean `PATH`, or an absolute path.
    pub binary: PathBuf,
    pub accelerator: Accelerator,
    /// The host TSC rate, passed to TCG guests as `tsc_early_khz=`.
    pub tsc_khz: Option<u64>,
    /// How long QEMU may take to answer on QMP (it does so before the guest boots; this
    /// only bounds a wedged start).
    pub launch_timeout: Duration,
}

impl QemuConfig {
    /// The default binary name.
    pub const DEFAULT_BINARY: &'static str = "qemu-system-x86_64";

    /// A configuration from this host's facts: KVM when it is usable for guests (not PVM),
    /// TCG otherwise, with the TSC rate measured for TCG. Measuring blocks the calling
    /// thread for about 150 ms the first time; call it once at startup.
    pub fn detect(binary: PathBuf) -> QemuConfig {
        let accelerator = crate::choose_accelerator(banger_sys::kvm::probe().usable_for_guests());
        let tsc_khz = match accelerator {
            Accelerator::Tcg => banger_sys::tsc::host_tsc_khz(),
            Accelerator::Kvm => None,
        };
        QemuConfig {
            binary,
            accelerator,
            tsc_khz,
            launch_timeout: Duration::from_secs(30),
        }
    }
}

/// The QEMU microvm backend.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    config: QemuConfig,
    /// The QEMU binary's identity (`binary_identity`), read once.
    binary_identity: std::sync::OnceLock<String>,
}

/// `<size>-<mtime>` of the QEMU binary (found on `PATH` when not absolute), or
/// `unknown`: changes whenever QEMU is upgraded or rebuilt, without running it.
fn binary_identity(binary: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let found = if binary.components().count() > 1 {
        Some(binary.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(binary))
                .find(|candidate| candidate.is_file())
        })
    };
    found
        .and_then(|path| std::fs::metadata(path).ok())
        .map_or_else(
            || "unknown".to_string(),
            |meta| format!("{}-{}", meta.len(), meta.mtime()),
        )
}

/// Creates `path` with mode 0600 unless it exists.
fn create_owner_only(path: &std::path::Path) -> Result<(), VmmError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| VmmError::Prepare {
            path: path.to_path_buf(),
            source,
        })
}

impl QemuDriver {
    pub fn new(config: QemuConfig) -> QemuDriver {
        QemuDriver {
            config,
            binary_identity: std::sync::OnceLock::new(),
        }
    }

    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// Spawns QEMU and waits for QMP.
    ///
    /// A tap fd from the spec is handed over as QEMU's stdin (`-netdev tap,fd=0`): the
    /// standard library moves stdio descriptors into place in the child only, so no other
    /// process the daemon spawns meanwhile can inherit the tap, and no `unsafe` pre-exec
    /// hook is needed. QEMU reads nothing from stdin with `-display none` and no stdio
    /// chardev.
    async fn launch_qemu(
        &self,
        spec: &LaunchSpec,
        warm: Option<&WarmLaunch>,
    ) -> Result<VmmHandle, VmmError> {
        let paths = QemuPaths::in_run_dir(&spec.run_dir);
        process::prepare_run_dir(
            &spec.run_dir,
            &[&paths.qmp_socket, &paths.agent_socket, &paths.pid_file],
        )?;
        let (stdin, tap_fd_in_child) = match spec.net.as_ref().and_then(|net| net.tap_fd.as_ref()) {
            Some(tap_fd) => {
                let tap_fd = tap_fd.try_clone().map_err(|source| VmmError::Prepare {
                    path: PathBuf::from(format!("tap fd of {}", spec.vm_name)),
                    source,
                })?;
                (Stdio::from(tap_fd), Some(TAP_FD_IN_CHILD))
            }
            None => (Stdio::null(), None),
        };
        let options = QemuOptions {
            accelerator: self.config.accelerator,
            tsc_khz: self.config.tsc_khz,
            tap_fd_in_child,
        };
        let stderr = process::create_log(&paths.stderr_log)?;
        // QEMU would create the serial log itself; made here, so the confinement can
        // name the file rather than the VM's directory.
        drop(process::create_log(&spec.serial_log)?);
        // Likewise a RAM file a save writes into (owner-only, kept if it exists).
        if let Some(memory) = warm.and_then(|warm| warm.memory.as_ref())
            && memory.shared
        {
            create_owner_only(&memory.path)?;
        }
        let program = crate::confine::resolve_program(&self.config.binary)
            .unwrap_or_else(|| self.config.binary.clone());
        let confinement =
            crate::confine::Confinement::build(&crate::confine::plan(&program, spec, warm))?;
        let mut args = qemu_args(spec, &options, &paths);
        if let Some(warm) = warm {
            args.extend(super::warm::warm_args(warm, spec.memory_mib));
        }
        let mut spawned = process::spawn(VmmCommand {
            driver: DriverKind::Qemu,
            program: self.config.binary.clone(),
            args,
            cwd: spec.run_dir.clone(),
            stdin,
            stdout: process::clone_file(&stderr, &paths.stderr_log)?,
            stderr,
            confinement,
        })?;

        let qmp_socket = paths.qmp_socket.clone();
        let ready = process::until_ready(&mut spawned.exit, self.config.launch_timeout, || {
            let qmp_socket = qmp_socket.clone();
            async move {
                let mut client = QmpClient::connect(&qmp_socket).await?;
                client.query_status().await
            }
        })
        .await;
        match ready {
            Ok(status) => {
                tracing::info!(vm = %spec.vm_name, pid = spawned.pid, status = %status.status, "QEMU answers on QMP");
                if let Some(WarmLaunch {
                    incoming: Some(state),
                    ignore_shared,
                    paused,
                    ..
                }) = warm
                {
                    let exited = async {
                        match spawned.exit.wait_for(Option::is_some).await {
                            Ok(status) => status.clone().unwrap_or_default(),
                            Err(_) => "exited".to_string(),
                        }
                    };
                    let load = super::warm::load(&paths.qmp_socket, state, *ignore_shared, *paused);
                    let loaded = tokio::select! {
                        loaded = load => loaded,
                        status = exited => Err(VmmError::EarlyExit {
                            driver: DriverKind::Qemu,
                            status,
                            stderr_tail: String::new(),
                        }),
                    };
                    if let Err(error) = loaded {
                        process::kill_and_wait(spawned.pid, spawned.start_time).await?;
                        return Err(VmmError::Restore {
                            source: Box::new(error),
                            stderr_tail: process::file_tail(&paths.stderr_log),
                        });
                    }
                }
                Ok(VmmHandle {
                    driver: DriverKind::Qemu,
                    pid: spawned.pid,
                    start_time: spawned.start_time,
                    control_socket: paths.qmp_socket,
                    agent_socket: paths.agent_socket,
                    accelerator: self.config.accelerator,
                })
            }
            Err(NotReady::Exited(status)) => Err(VmmError::EarlyExit {
                driver: DriverKind::Qemu,
                status,
                stderr_tail: process::file_tail(&paths.stderr_log),
            }),
            Err(NotReady::TimedOut(last_error)) => {
                process::kill_and_wait(spawned.pid, spawned.start_time).await?;
                let mut stderr_tail = process::file_tail(&paths.stderr_log);
                if let Some(error) = last_error {
                    stderr_tail.push_str(&format!("\n(last QMP attempt: {error})"));
                }
                Err(VmmError::Timeout {
                    what: "QEMU's QMP socket".into(),
                    waited: self.config.launch_timeout,
                    stderr_tail,
                })
            }
        }
    }

    async fn shutdown_qemu(
        &self,
        handle: &VmmHandle,
        timeout: Duration,
    ) -> Result<ShutdownOutcome, VmmError> {
        handle.expect_driver(DriverKind::Qemu)?;
        if !process::is_alive(handle.pid, handle.start_time) {
            return Ok(ShutdownOutcome::Graceful);
        }
        // The connection is kept for `quit`: QEMU serves one QMP client at a time.
        let mut client = match QmpClient::connect(&handle.control_socket).await {
            Ok(mut client) => match client.system_powerdown().await {
                Ok(()) => Some(client),
                Err(error) => {
                    tracing::warn!(pid = handle.pid, %error, "system_powerdown failed");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(pid = handle.pid, %error, "no QMP for a graceful shutdown");
                None
            }
        };
        if process::wait_exit_timeout(handle.pid, handle.start_time, timeout).await {
            return Ok(ShutdownOutcome::Graceful);
        }
        tracing::info!(
            pid = handle.pid,
            "guest ignored the power button; quitting QEMU"
        );
        if let Some(client) = client.as_mut()
            && let Err(error) = client.quit().await
        {
            tracing::warn!(pid = handle.pid, %error, "QMP quit failed");
        }
        drop(client);
        if !process::wait_exit_timeout(handle.pid, handle.start_time, QUIT_GRACE).await {
            process::kill_and_wait(handle.pid, handle.start_time).await?;
        }
        Ok(ShutdownOutcome::Forced)
    }
}

impl VmmDriver for QemuDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Qemu
    }

    fn restore_inputs(&self) -> String {
        let binary = self
            .binary_identity
            .get_or_init(|| binary_identity(&self.config.binary));
        let (cpu, accel) = crate::qemu::cmdline::cpu_and_accel(self.config.accelerator);
        format!("qemu-{binary}/cpu={cpu}/accel={accel}")
    }

    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(self.launch_qemu(spec, None))
    }

    fn launch_warm<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        warm: &'a WarmLaunch,
    ) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(self.launch_qemu(spec, Some(warm)))
    }

    fn snapshot<'a>(
        &'a self,
        handle: &'a VmmHandle,
        request: &'a SnapshotRequest,
    ) -> BoxFuture<'a, Result<SnapshotReport, VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Qemu)?;
            super::warm::save(&handle.control_socket, request).await
        })
    }

    fn pause<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Qemu)?;
            super::warm::pause(&handle.control_socket).await
        })
    }

    fn resume<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Qemu)?;
            super::warm::resume(&handle.control_socket).await
        })
    }

    fn agent_endpoint(&self, handle: &VmmHandle) -> AgentEndpoint {
        AgentEndpoint::VirtioSerial {
            socket: handle.agent_socket.clone(),
        }
    }

    fn shutdown<'a>(
        &'a self,
        handle: &'a VmmHandle,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ShutdownOutcome, VmmError>> {
        Box::pin(self.shutdown_qemu(handle, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::binary_identity;

    #[test]
    fn binary_identity_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu");
        assert_eq!(binary_identity(&path), "unknown");
        std::fs::write(&path, b"12345").unwrap();
        assert!(binary_identity(&path).starts_with("5-"));
        assert_eq!(
            binary_identity(std::path::Path::new("no-such-qemu-anywhere")),
            "unknown"
        );
    }
}
