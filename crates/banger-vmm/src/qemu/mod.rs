//! The QEMU backend: `-machine microvm` with virtio-mmio devices, controlled over QMP.
//! [`cmdline`] builds the command line (pure), [`qmp`] speaks QMP, [`driver`] runs the
//! process.

pub mod cmdline;
pub mod driver;
pub mod qmp;
pub mod warm;

pub use driver::{QemuConfig, QemuDriver};
pub use qmp::{QmpClient, QmpError, QmpStatus};
