//! The running VMM as the rest of banger sees it: [`VmmHandle`] (serde, because the VM
//! service mirrors it to a per-VM file and reattaches from it after a daemon restart) and
//! the small enums that describe it.

use std::fmt;
use std::path::PathBuf;

/// Which backend runs a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Qemu,
    Firecracker,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::Qemu => "qemu",
            DriverKind::Firecracker => "firecracker",
        })
    }
}

/// How guest instructions run: hardware virtualisation, or QEMU's software emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    /// The name QEMU's `accel=` option uses (also the serde and `Display` form).
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A launched VMM process. `pid` + `start_time` identify it (a recycled pid has another
/// start time), so the handle stays valid across daemon restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmmHandle {
    pub driver: DriverKind,
    pub pid: u32,
    /// The process start time as `banger_sys::process::process_start_time` reports it.
    pub start_time: u64,
    /// QMP socket (QEMU) or API socket (Firecracker).
    pub control_socket: PathBuf,
    /// virtio-serial socket (QEMU) or vsock Unix socket (Firecracker).
    pub agent_socket: PathBuf,
    pub accelerator: Accelerator,
}

/// How the host reaches the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// A Unix socket that is the virtio-serial port `banger.agent` (QEMU): connect and
    /// the stream is the guest's port.
    VirtioSerial { socket: PathBuf },
    /// Firecracker's vsock: connect to `uds`, write `CONNECT <port>\n`, read
    /// `OK <host_port>\n`, then the stream is the guest's.
    Vsock { uds: PathBuf, port: u32 },
}

/// How a [`crate::VmmDriver::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The guest powered off (or the process was already gone) within the timeout.
    Graceful,
    /// The timeout passed and the VMM was stopped by force.
    Forced,
}

impl VmmHandle {
    /// Refuses a handle that another driver made (a handle file from a daemon configured
    /// with the other VMM).
    pub fn expect_driver(&self, expected: DriverKind) -> Result<(), crate::VmmError> {
        if self.driver == expected {
            Ok(())
        } else {
            Err(crate::VmmError::WrongDriver {
                expected,
                found: self.driver,
            })
        }
    }
}
