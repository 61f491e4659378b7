//! [`FirecrackerDriver`]: spawns `firecracker --api-sock PATH` in its own session, waits
//! for the API, configures and starts the guest through [`FirecrackerApi`], and stops it
//! with Ctrl+Alt+Del, then SIGKILL. The guest's serial console is Firecracker's stdout,
//! so stdout goes to the serial log and stderr to `vmm.stderr`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::driver::{BoxFuture, VmmDriver};
use crate::error::VmmError;
use crate::firecracker::api::{AGENT_VSOCK_PORT, BootPlan, FirecrackerPaths};
use crate::firecracker::client::FirecrackerApi;
use crate::handle::{Accelerator, AgentEndpoint, DriverKind, ShutdownOutcome, VmmHandle};
use crate::process::{self, NotReady, VmmCommand};
use crate::spec::LaunchSpec;
use crate::warm::{SnapshotReport, SnapshotRequest, WarmLaunch};

/// How the Firecracker driver runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerConfig {
    /// `firecracker`, looked up on the clean `PATH`, or an absolute path.
    pub binary: PathBuf,
    /// How long the API socket may take to answer after spawn.
    pub launch_timeout: Duration,
}

impl FirecrackerConfig {
    pub const DEFAULT_BINARY: &'static str = "firecracker";

    pub fn new(binary: PathBuf) -> FirecrackerConfig {
        FirecrackerConfig {
            binary,
            launch_timeout: Duration::from_secs(10),
        }
    }
}

/// The Firecracker backend (hosts with real KVM).
#[derive(Debug, Clone)]
pub struct FirecrackerDriver {
    config: FirecrackerConfig,
}

impl FirecrackerDriver {
    pub fn new(config: FirecrackerConfig) -> FirecrackerDriver {
        FirecrackerDriver { config }
    }

    pub fn config(&self) -> &FirecrackerConfig {
        &self.config
    }

    async fn launch_firecracker(
        &self,
        spec: &LaunchSpec,
        warm: Option<&WarmLaunch>,
    ) -> Result<VmmHandle, VmmError> {
        // `launch_warm` checked that a warm launch has both.
        let restore = warm.and_then(|warm| {
            Some((
                warm.incoming.as_deref()?,
                warm.memory.as_ref()?.path.as_path(),
            ))
        });
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        // Validated before anything is spawned: a qcow2 disk fails here, not mid-boot.
        let plan = BootPlan::from_spec(spec, &paths)?;
        process::prepare_run_dir(&spec.run_dir, &[&paths.api_socket, &paths.vsock_socket])?;
        // Firecracker opens its log and metrics files but does not create them.
        process::create_log(&paths.log_file)?;
        process::create_log(&paths.metrics_file)?;
        let serial = process::create_log(&spec.serial_log)?;
        let stderr = process::create_log(&paths.stderr_log)?;
        let program = crate::confine::resolve_program(&self.config.binary)
            .unwrap_or_else(|| self.config.binary.clone());
        let confinement =
            crate::confine::Confinement::build(&crate::confine::plan(&program, spec, warm))?;
        let mut spawned = process::spawn(VmmCommand {
            driver: DriverKind::Firecracker,
            program: self.config.binary.clone(),
            args: vec![
                "--api-sock".into(),
                paths.api_socket.clone().into_os_string(),
            ],
            cwd: spec.run_dir.clone(),
            stdin: Stdio::null(),
            stdout: serial,
            stderr,
            confinement,
        })?;

        let api = FirecrackerApi::new(&paths.api_socket);
        let ready = process::until_ready(&mut spawned.exit, self.config.launch_timeout, || {
            api.describe_instance()
        })
        .await;
        let failure = match ready {
            Ok(_) => match match restore {
                // A restored guest brings its own configuration; only where its NIC
                // and vsock attach on this host is new.
                Some((state, memory)) => {
                    let tap = plan.net.as_ref().map(|net| net.tap_name.as_str());
                    api.load_snapshot(state, memory, tap, &paths.vsock_socket, &spec.root_disk)
                        .await
                }
                None => api.configure_and_start(&plan).await,
            } {
                Ok(()) => None,
                // A refused request while the process still runs is the API's verdict;
                // a connection error after the process died is an early exit.
                Err(error) => match spawned.exit.borrow().clone() {
                    Some(status) => Some(VmmError::EarlyExit {
                        driver: DriverKind::Firecracker,
                        status,
                        stderr_tail: process::file_tail(&paths.stderr_log),
                    }),
                    None => Some(error),
                },
            },
            Err(NotReady::Exited(status)) => {
                return Err(VmmError::EarlyExit {
                    driver: DriverKind::Firecracker,
                    status,
                    stderr_tail: process::file_tail(&paths.stderr_log),
                });
            }
            Err(NotReady::TimedOut(last_error)) => {
                let mut stderr_tail = process::file_tail(&paths.stderr_log);
                if let Some(error) = last_error {
                    stderr_tail.push_str(&format!("\n(last API attempt: {error})"));
                }
                Some(VmmError::Timeout {
                    what: "Firecracker's API socket".into(),
                    waited: self.config.launch_timeout,
                    stderr_tail,
                })
            }
        };
        if let Some(error) = failure {
            process::kill_and_wait(spawned.pid, spawned.start_time).await?;
            return Err(error);
        }
        tracing::info!(vm = %spec.vm_name, pid = spawned.pid, "Firecracker guest started");
        Ok(VmmHandle {
            driver: DriverKind::Firecracker,
            pid: spawned.pid,
            start_time: spawned.start_time,
            control_socket: paths.api_socket,
            agent_socket: paths.vsock_socket,
            accelerator: Accelerator::Kvm,
        })
    }

    async fn shutdown_firecracker(
        &self,
        handle: &VmmHandle,
        timeout: Duration,
    ) -> Result<ShutdownOutcome, VmmError> {
        handle.expect_driver(DriverKind::Firecracker)?;
        if !process::is_alive(handle.pid, handle.start_time) {
            return Ok(ShutdownOutcome::Graceful);
        }
        let api = FirecrackerApi::new(&handle.control_socket);
        if let Err(error) = api.send_ctrl_alt_del().await {
            tracing::warn!(pid = handle.pid, %error, "SendCtrlAltDel failed");
        }
        if process::wait_exit_timeout(handle.pid, handle.start_time, timeout).await {
            return Ok(ShutdownOutcome::Graceful);
        }
        process::kill_and_wait(handle.pid, handle.start_time).await?;
        Ok(ShutdownOutcome::Forced)
    }
}

impl VmmDriver for FirecrackerDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Firecracker
    }

    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(self.launch_firecracker(spec, None))
    }

    /// Restores with `PUT /snapshot/load` (the `File` backend maps the memory file
    /// copy-on-write), paused; the root drive is patched to `spec.root_disk` before the
    /// guest resumes, so a clone only ever writes its own disk. Firecracker keeps guest memory in its own file format, so the
    /// memory must be one Firecracker wrote (`shared` does not apply) and `incoming`
    /// is required.
    fn launch_warm<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        warm: &'a WarmLaunch,
    ) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(async move {
            match (&warm.incoming, &warm.memory) {
                (Some(_), Some(memory)) if !memory.shared && !warm.paused => {
                    self.launch_firecracker(spec, Some(warm)).await
                }
                _ => Err(VmmError::Unsupported {
                    driver: DriverKind::Firecracker,
                    what: "start from anything but its own snapshot (state + memory file)".into(),
                }),
            }
        })
    }

    /// `PATCH /vm Paused`, then `PUT /snapshot/create` (Full) into
    /// `request.state_file` and `request.memory_file`; with `request.root_disk`, the root
    /// drive is patched to the disk copy around the save (see [`crate::RootDiskSwap`]).
    fn snapshot<'a>(
        &'a self,
        handle: &'a VmmHandle,
        request: &'a SnapshotRequest,
    ) -> BoxFuture<'a, Result<SnapshotReport, VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Firecracker)?;
            let Some(memory) = &request.memory_file else {
                return Err(VmmError::Unsupported {
                    driver: DriverKind::Firecracker,
                    what: "save a guest without a memory file to write".into(),
                });
            };
            let started = std::time::Instant::now();
            FirecrackerApi::new(&handle.control_socket)
                .pause_and_snapshot(&request.state_file, memory, request.root_disk.as_ref())
                .await?;
            Ok(SnapshotReport {
                took: started.elapsed(),
                downtime: None,
                state_bytes: std::fs::metadata(&request.state_file)
                    .map(|meta| meta.len())
                    .unwrap_or(0),
            })
        })
    }

    /// `PATCH /vm Paused`.
    fn pause<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Firecracker)?;
            FirecrackerApi::new(&handle.control_socket).pause().await
        })
    }

    /// `PATCH /vm Resumed`.
    fn resume<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            handle.expect_driver(DriverKind::Firecracker)?;
            FirecrackerApi::new(&handle.control_socket).resume().await
        })
    }

    fn agent_endpoint(&self, handle: &VmmHandle) -> AgentEndpoint {
        AgentEndpoint::Vsock {
            uds: handle.agent_socket.clone(),
            port: AGENT_VSOCK_PORT,
        }
    }

    fn shutdown<'a>(
        &'a self,
        handle: &'a VmmHandle,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ShutdownOutcome, VmmError>> {
        Box::pin(self.shutdown_firecracker(handle, timeout))
    }
}
