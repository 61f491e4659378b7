//! landlock: confining a child process to the files it needs, with the kernel's Landlock
//! LSM (raw `landlock_*` syscalls; the ABI is three small structs).
//!
//! A [`Ruleset`] is built in the parent, before fork: [`Ruleset::new`] asks the kernel
//! which ABI it speaks and handles every right that ABI knows (best effort, as the
//! Landlock documentation recommends: an older kernel enforces fewer rights, a kernel
//! without Landlock gives `None` and the caller reports the child as unconfined);
//! [`Ruleset::allow`] opens each path with `O_PATH` and adds a rule for it. Only
//! [`confine`] runs in the child, between fork and exec: `prctl(PR_SET_NO_NEW_PRIVS)` and
//! `landlock_restrict_self`, two plain syscalls, async-signal-safe.
//!
//! Besides files, a ruleset of ABI 4 or later denies every TCP bind and connect (no rule
//! allows a port), and one of ABI 6 or later scopes signals and abstract Unix sockets to
//! the child's own domain (it cannot signal or reach the daemon through them). Rights are
//! granted by the inode a path names when the rule is added: a path that does not exist
//! yet cannot be allowed, so callers create the files a child will open first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: u32 = 1;
/// `LANDLOCK_RULE_PATH_BENEATH`.
const RULE_PATH_BENEATH: libc::c_int = 1;

// `LANDLOCK_ACCESS_FS_*`.
const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_REMOVE_DIR: u64 = 1 << 4;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_DIR: u64 = 1 << 7;
const FS_MAKE_REG: u64 = 1 << 8;
const FS_MAKE_SOCK: u64 = 1 << 9;
const FS_MAKE_FIFO: u64 = 1 << 10;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_MAKE_SYM: u64 = 1 << 12;
/// ABI 2.
const FS_REFER: u64 = 1 << 13;
/// ABI 3.
const FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const FS_IOCTL_DEV: u64 = 1 << 15;

/// The rights that apply to a file (the rest only make sense on a directory; the kernel
/// refuses them in a rule on a file).
const FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

// `LANDLOCK_ACCESS_NET_*` (ABI 4).
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

// `LANDLOCK_SCOPE_*` (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// `struct landlock_ruleset_attr`; the kernel accepts the whole struct from any ABI as
/// long as the fields it does not know are zero.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// What a child may do with a path (and, for a directory, everything beneath it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read files and list directories (a disk image, a kernel, `/etc`).
    Read,
    /// [`Access::Read`] plus executing files (`/usr`, the VMM's binary).
    ReadExecute,
    /// Read and write existing files, truncate them (a VM's disk, its serial log, a RAM
    /// file a save writes into).
    ReadWrite,
    /// A directory the child owns: create, remove, read and write files and sockets in it
    /// (a VM's runtime directory with its control sockets and pid file).
    Own,
    /// A device node: read, write and ioctls (`/dev/kvm`, `/dev/net/tun`).
    Device,
}

impl Access {
    /// The `LANDLOCK_ACCESS_FS_*` bits of this access on a directory.
    fn fs_bits(self) -> u64 {
        let read = FS_READ_FILE | FS_READ_DIR;
        match self {
            Access::Read => read,
            Access::ReadExecute => read | FS_EXECUTE,
            Access::ReadWrite => read | FS_WRITE_FILE | FS_TRUNCATE,
            Access::Own => {
                read | FS_WRITE_FILE
                    | FS_TRUNCATE
                    | FS_REMOVE_FILE
                    | FS_REMOVE_DIR
                    | FS_MAKE_REG
                    | FS_MAKE_DIR
                    | FS_MAKE_SOCK
                    | FS_MAKE_FIFO
            }
            Access::Device => read | FS_WRITE_FILE | FS_IOCTL_DEV,
        }
    }
}

/// Why a ruleset could not be built or applied.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("cannot create a Landlock ruleset")]
    Create(#[source] io::Error),
    #[error("cannot open {path} for a Landlock rule")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot add a Landlock rule for {path}")]
    AddRule {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot restrict this process with Landlock")]
    Restrict(#[source] io::Error),
}

/// The Landlock ABI version this kernel offers, or `None` when it has no Landlock
/// (not built, or not enabled in `lsm=`).
pub fn abi_version() -> Option<u32> {
    // SAFETY: with a NULL attribute, size 0 and the VERSION flag the syscall only returns
    // the ABI version (or an error); it reads and writes no memory of ours.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|&v| v >= 1)
}

/// Every filesystem right `abi` knows.
fn handled_fs(abi: u32) -> u64 {
    let mut bits = FS_EXECUTE
        | FS_WRITE_FILE
        | FS_READ_FILE
        | FS_READ_DIR
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_CHAR
        | FS_MAKE_DIR
        | FS_MAKE_REG
        | FS_MAKE_SOCK
        | FS_MAKE_FIFO
        | FS_MAKE_BLOCK
        | FS_MAKE_SYM;
    if abi >= 2 {
        bits |= FS_REFER;
    }
    if abi >= 3 {
        bits |= FS_TRUNCATE;
    }
    if abi >= 5 {
        bits |= FS_IOCTL_DEV;
    }
    bits
}

/// A Landlock ruleset under construction, to apply to a child with [`confine`].
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
    abi: u32,
    handled_fs: u64,
}

impl Ruleset {
    /// A ruleset that handles everything this kernel's ABI knows (so everything not
    /// allowed by a rule is denied), or `None` on a kernel without Landlock.
    pub fn new() -> Result<Option<Ruleset>, LandlockError> {
        let Some(abi) = abi_version() else {
            return Ok(None);
        };
        Ruleset::with_abi(abi).map(Some)
    }

    /// A ruleset limited to what `abi` knows (at most the kernel's own ABI: the kernel
    /// refuses rights it does not know).
    pub fn with_abi(abi: u32) -> Result<Ruleset, LandlockError> {
        let handled_fs = handled_fs(abi);
        let attr = RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: if abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // An ABI before 4 knows only the first field; the kernel checks that the rest is
        // zero, but a size it does not know of is refused on some versions, so pass the
        // size the ABI defines.
        let size = match abi {
            0..=3 => std::mem::size_of::<u64>(),
            4 | 5 => 2 * std::mem::size_of::<u64>(),
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is a live, initialised `landlock_ruleset_attr` and `size` is at
        // most its size; the kernel only reads it. The result is a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(LandlockError::Create(io::Error::last_os_error()));
        }
        // SAFETY: the syscall returned a new descriptor (close-on-exec) that nothing else
        // owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Ruleset {
            fd,
            abi,
            handled_fs,
        })
    }

    /// The ABI this ruleset was built for.
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// Allows `access` on `path` (a directory: everything beneath it). The path must
    /// exist; symlinks are followed, so the rule is on what the path names.
    pub fn allow(&mut self, path: &Path, access: Access) -> Result<(), LandlockError> {
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            LandlockError::Open {
                path: path.to_path_buf(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            }
        })?;
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call; O_PATH opens
        // nothing for reading or writing. The result is a new fd or -1.
        let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(LandlockError::Open {
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        let parent = unsafe { OwnedFd::from_raw_fd(raw) };
        let is_dir = std::fs::metadata(path).is_ok_and(|meta| meta.is_dir());
        let mut allowed = access.fs_bits() & self.handled_fs;
        if !is_dir {
            allowed &= FILE_RIGHTS;
        }
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: parent.as_raw_fd(),
        };
        // SAFETY: `attr` is a live `landlock_path_beneath_attr` the kernel only reads;
        // both descriptors are open for the duration of the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if result < 0 {
            return Err(LandlockError::AddRule {
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Restricts the calling process (all its future children too) with this ruleset.
    /// For tests and for a process that confines itself; a child is confined with
    /// [`confine`].
    pub fn restrict_self(&self) -> Result<(), LandlockError> {
        restrict(self.fd.as_raw_fd()).map_err(LandlockError::Restrict)
    }
}

/// `PR_SET_NO_NEW_PRIVS`, then `landlock_restrict_self(fd)`. Only raw syscalls and a
/// non-allocating error: safe between fork and exec.
fn restrict(fd: i32) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: landlock_restrict_self takes a descriptor and flags; it touches no memory.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child restrict itself with `ruleset` just before exec. The ruleset's
/// descriptor is close-on-exec, so the program never holds it; `ruleset` is kept alive
/// by the command until it is dropped.
pub fn confine(cmd: &mut tokio::process::Command, ruleset: Arc<Ruleset>) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: it reads an integer from the shared ruleset
    // (no allocation, no lock, no reference count change) and calls `restrict`, which
    // makes two raw syscalls and builds its error from errno without allocating.
    unsafe {
        cmd.pre_exec(move || restrict(ruleset.fd.as_raw_fd()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(handled_fs(1) & (FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV), 0);
        assert_ne!(handled_fs(2) & FS_REFER, 0);
        assert_ne!(handled_fs(3) & FS_TRUNCATE, 0);
        assert_eq!(handled_fs(4) & FS_IOCTL_DEV, 0);
        assert_ne!(handled_fs(5) & FS_IOCTL_DEV, 0);
        assert_eq!(handled_fs(7), handled_fs(5));
    }

    #[test]
    fn accesses_are_what_they_say() {
        assert_eq!(Access::Read.fs_bits() & (FS_WRITE_FILE | FS_EXECUTE), 0);
        assert_ne!(Access::ReadExecute.fs_bits() & FS_EXECUTE, 0);
        assert_eq!(
            Access::ReadWrite.fs_bits() & (FS_MAKE_REG | FS_REMOVE_FILE),
            0
        );
        assert_ne!(Access::Own.fs_bits() & FS_MAKE_SOCK, 0);
        assert_eq!(Access::Own.fs_bits() & FS_EXECUTE, 0);
        assert_ne!(Access::Device.fs_bits() & FS_IOCTL_DEV, 0);
        // A file rule keeps only the file rights.
        assert_eq!(Access::Own.fs_bits() & FILE_RIGHTS & FS_MAKE_REG, 0);
    }
}
