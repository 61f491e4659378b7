//! banger-vmm: the hypervisor behind one trait. [`VmmDriver`] launches a guest from a
//! [`LaunchSpec`], reports how the host reaches the guest agent, and stops, signals and
//! waits for the VMM process. Two backends implement it: [`qemu`] (`-machine microvm`,
//! controlled over QMP; the driver that runs guests on hosts without usable KVM, under TCG)
//! and [`firecracker`] (its HTTP API over a Unix socket; hosts with real KVM). A third
//! backend is a new module, not a rewrite.
//!
//! Invariant shared by both backends: a VMM process runs in its own session and is never
//! tied to the request that started it; it is identified by pid + start time, so a
//! reattached handle (after a daemon restart) is signalled and waited for exactly like a
//! freshly launched one, and a recycled pid is never mistaken for ours.

pub mod choose;
pub mod confine;
pub mod driver;
pub mod error;
pub mod firecracker;
pub mod handle;
mod process;
pub mod qemu;
pub mod spec;
pub mod warm;

pub use choose::{choose_accelerator, choose_driver};
pub use confine::Confinement;
pub use driver::{BoxFuture, VmmDriver};
pub use error::VmmError;
pub use firecracker::{FirecrackerConfig, FirecrackerDriver};
pub use handle::{Accelerator, AgentEndpoint, DriverKind, ShutdownOutcome, VmmHandle};
pub use qemu::{QemuConfig, QemuDriver};
pub use spec::{DiskFormat, LaunchSpec, NetAttachment};
pub use warm::{MemoryFile, RootDiskSwap, SnapshotReport, SnapshotRequest, WarmLaunch};
