//! The [`VmmDriver`] trait: the one seam between banger's VM lifecycle and a hypervisor.
//! Futures are boxed by hand (no `async_trait`) so the trait stays object safe and the VM
//! service can hold an `Arc<dyn VmmDriver>` chosen at startup.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::VmmError;
use crate::handle::{AgentEndpoint, DriverKind, ShutdownOutcome, VmmHandle};
use crate::process;
use crate::spec::LaunchSpec;
use crate::warm::{SnapshotReport, SnapshotRequest, WarmLaunch};

/// A boxed, sendable future borrowing from `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A hypervisor backend.
pub trait VmmDriver: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> DriverKind;

    /// Starts the VMM for `spec` and returns once its control channel answers (QMP
    /// negotiated, or Firecracker's `InstanceStart` accepted). The process runs in its own
    /// session and outlives the future and the caller's request. On failure the process
    /// is stopped and the error carries the tail of its stderr.
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<VmmHandle, VmmError>>;

    /// Like [`Self::launch`], with guest RAM in a file and, when `warm.incoming` is set,
    /// a saved guest loaded instead of a boot: returns once the restored guest runs (or
    /// is loaded and paused, with `warm.paused`). A driver without snapshots refuses
    /// before starting anything.
    fn launch_warm<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        warm: &'a WarmLaunch,
    ) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        let _ = (spec, warm);
        Box::pin(async move { Err(self.no_snapshots()) })
    }

    /// Stops the guest's vCPUs (its disk then stays as it is until [`Self::resume`]);
    /// pausing a paused guest is not an error.
    fn pause<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        let _ = handle;
        Box::pin(async move { Err(self.no_snapshots()) })
    }

    /// Pauses the guest and saves its state (see [`SnapshotRequest`]). The guest stays
    /// paused until [`Self::resume`] (or the VMM is stopped).
    fn snapshot<'a>(
        &'a self,
        handle: &'a VmmHandle,
        request: &'a SnapshotRequest,
    ) -> BoxFuture<'a, Result<SnapshotReport, VmmError>> {
        let _ = (handle, request);
        Box::pin(async move { Err(self.no_snapshots()) })
    }

    /// Lets a guest paused by [`Self::snapshot`] run again.
    fn resume<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        let _ = handle;
        Box::pin(async move { Err(self.no_snapshots()) })
    }

    /// What a guest saved by this VMM depends on besides the guest itself (the VMM's
    /// version, CPU model, accelerator): part of a warm template's key, so a template
    /// made by another VMM build is never restored.
    fn restore_inputs(&self) -> String {
        self.kind().to_string()
    }

    /// The error of a driver without snapshot support.
    fn no_snapshots(&self) -> VmmError {
        VmmError::Unsupported {
            driver: self.kind(),
            what: "save or restore a guest yet (snapshots are not yet available with this VMM)"
                .into(),
        }
    }

    /// How the host reaches the guest agent of the VM behind `handle`.
    fn agent_endpoint(&self, handle: &VmmHandle) -> AgentEndpoint;

    /// Asks the guest to power off; after `timeout` stops the VMM by force. Returns once
    /// the process is gone.
    fn shutdown<'a>(
        &'a self,
        handle: &'a VmmHandle,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ShutdownOutcome, VmmError>>;

    /// Sends `signal` to the VMM process if it is still the process the handle names; a
    /// process that is already gone is not an error. A handle of another driver is
    /// refused.
    fn kill<'a>(
        &'a self,
        handle: &'a VmmHandle,
        signal: i32,
    ) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            handle.expect_driver(self.kind())?;
            process::signal(handle.pid, handle.start_time, signal)
        })
    }

    /// True while the process named by pid + start time exists.
    fn is_alive(&self, handle: &VmmHandle) -> bool {
        process::is_alive(handle.pid, handle.start_time)
    }

    /// Resolves when the process exits; works for a process this daemon did not spawn
    /// (reattached after a restart), via a pidfd.
    fn wait_exit<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, ()> {
        Box::pin(process::wait_exit(handle.pid, handle.start_time))
    }
}
