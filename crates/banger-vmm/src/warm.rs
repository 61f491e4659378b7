//! Warm starts at the VMM layer: what a driver needs to launch a guest whose RAM lives in
//! a file ([`WarmLaunch`]), to restore a saved guest into it, and to save a running guest
//! ([`SnapshotRequest`]). The VM service decides which files these are; the drivers only
//! use them.
//!
//! The model (measured under QEMU microvm/TCG, see ARCHITECTURE.md "Warm starts"): a
//! snapshot is a small device-state file plus one RAM file. A restored clone maps the RAM
//! file copy-on-write (`MAP_PRIVATE`), so clean pages stay shared in the page cache and
//! the RAM file is never written; only the device state is read at restore.

use std::path::PathBuf;
use std::time::Duration;

/// The guest's RAM as a file instead of anonymous memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFile {
    pub path: PathBuf,
    /// `true`: the VMM writes guest RAM into the file (`MAP_SHARED`); used only while a
    /// snapshot is being written, by a VMM that never runs the guest afterwards.
    /// `false`: a private copy-on-write mapping; the file is only read.
    pub shared: bool,
}

/// Extra launch settings for a guest that is restored rather than booted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WarmLaunch {
    /// Where guest RAM lives; `None` is anonymous memory.
    pub memory: Option<MemoryFile>,
    /// The saved device (and, without `ignore_shared`, RAM) state to load before the guest
    /// runs; `None` boots the kernel as usual.
    pub incoming: Option<PathBuf>,
    /// The state was saved with RAM left in the memory file (QEMU's `x-ignore-shared`).
    pub ignore_shared: bool,
    /// Leave the guest paused after loading (to save it again without running it).
    pub paused: bool,
    /// A disk file the saved state names, which the VMM opens while it loads (Firecracker
    /// re-opens its drives by the paths its state records; QEMU's state names none). The
    /// VMM's confinement allows it.
    pub saved_disk: Option<std::path::PathBuf>,
}

/// Saving a running guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Where the state goes; written by the VMM, mode 0600.
    pub state_file: PathBuf,
    /// Leave guest RAM out of the state file: the guest's RAM is a shared memory file
    /// ([`MemoryFile::shared`]), which already holds it (QEMU).
    pub ignore_shared: bool,
    /// Where a VMM that writes guest memory to a file of its own puts it (Firecracker's
    /// `mem_file_path`); QEMU keeps RAM in the state file or the shared memory file and
    /// ignores this.
    pub memory_file: Option<PathBuf>,
    /// The root disk the saved state should name, when the VMM's state names drive files
    /// (Firecracker re-opens every drive by the path its state records; QEMU's state
    /// names none and ignores this).
    pub root_disk: Option<RootDiskSwap>,
}

/// A copy of the root disk, made by the caller while the guest was paused, that the
/// saved state names instead of the live disk: a restore then opens the snapshot's own
/// copy (and points the drive at the clone's disk before the guest runs), never the
/// source VM's disk, which may be in use or gone by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDiskSwap {
    /// The copy, named in the saved state.
    pub saved_as: PathBuf,
    /// The source VM's own disk, which its drive points at again after the save.
    pub live: PathBuf,
}

/// What a saved snapshot cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    /// From the pause to the state file complete.
    pub took: Duration,
    /// The VMM's own downtime figure for the save (the guest stays paused until
    /// [`crate::VmmDriver::resume`] regardless).
    pub downtime: Option<Duration>,
    /// Size of the state file.
    pub state_bytes: u64,
}

/// The highest vCPU count Firecracker accepts for a guest.
pub const FIRECRACKER_MAX_VCPUS: u32 = 32;
