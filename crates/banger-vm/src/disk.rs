//! A VM's root disk: a private copy of the (never modified) image, grown to the requested
//! size. Copy-on-write where the filesystem can (`cp --reflink=always`: a few ms, no space
//! used), else a sparse copy (`cp --sparse=always`: only allocated blocks are written).
//!
//! qcow2 overlays are not used for root disks: the offline patch edits the ext4 filesystem
//! with `debugfs`, which needs a raw image, and Firecracker only takes raw files too.
//! dm-snapshot needs device-mapper and root; it is not available on every host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};
use banger_model::ByteSize;

/// How a root disk was provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMethod {
    Reflink,
    SparseCopy,
}

impl DiskMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskMethod::Reflink => "reflink",
            DiskMethod::SparseCopy => "sparse copy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot copy image {} to {}", image.display(), disk.display())]
    Copy {
        image: PathBuf,
        disk: PathBuf,
        #[source]
        source: ExecError,
    },
    #[error("cannot resize {}", disk.display())]
    Io {
        disk: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the disk cannot shrink: {} is {current} bytes, {requested} requested", disk.display())]
    Shrink {
        disk: PathBuf,
        current: u64,
        requested: u64,
    },
    #[error("resize2fs failed on {}", disk.display())]
    Resize {
        disk: PathBuf,
        #[source]
        source: ExecError,
    },
}

/// Copies `image` to `disk` (reflink, else sparse), writable by the owner.
pub async fn provision(
    runner: &dyn CommandRunner,
    image: &Path,
    disk: &Path,
) -> Result<DiskMethod, DiskError> {
    copy(runner, image, disk, false).await
}

/// [`provision`] for a copy nobody waits for (a template's spare disk): `cp` runs at
/// the lowest CPU priority (`nice -n 19`), so it takes what the guests leave; under TCG
/// a gigabyte's sparse copy otherwise took a core from the VM being restored.
pub async fn provision_in_background(
    runner: &dyn CommandRunner,
    image: &Path,
    disk: &Path,
) -> Result<DiskMethod, DiskError> {
    copy(runner, image, disk, true).await
}

fn cp(niced: bool) -> Cmd {
    if niced {
        Cmd::new("nice").args(["-n", "19", "cp"])
    } else {
        Cmd::new("cp")
    }
}

async fn copy(
    runner: &dyn CommandRunner,
    image: &Path,
    disk: &Path,
    niced: bool,
) -> Result<DiskMethod, DiskError> {
    let reflink = cp(niced).arg("--reflink=always").arg(image).arg(disk);
    let method = match runner.run(&reflink).await {
        Ok(_) => DiskMethod::Reflink,
        Err(_) => {
            let _ = std::fs::remove_file(disk);
            let sparse = cp(niced)
                .arg("--sparse=always")
                .arg(image)
                .arg(disk)
                .timeout(Duration::from_secs(600));
            runner
                .run(&sparse)
                .await
                .map_err(|source| DiskError::Copy {
                    image: image.to_path_buf(),
                    disk: disk.to_path_buf(),
                    source,
                })?;
            DiskMethod::SparseCopy
        }
    };
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(disk, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        DiskError::Io {
            disk: disk.to_path_buf(),
            source,
        }
    })?;
    Ok(method)
}

/// Grows the file to `size_bytes` (sparse) and the ext4 filesystem to fill it. The caller
/// runs `e2fsck -f` first, as `resize2fs` requires. A smaller size is refused.
pub async fn grow(
    runner: &dyn CommandRunner,
    disk: &Path,
    size_bytes: u64,
) -> Result<bool, DiskError> {
    let io = |source| DiskError::Io {
        disk: disk.to_path_buf(),
        source,
    };
    let current = std::fs::metadata(disk).map_err(io)?.len();
    if size_bytes < current {
        return Err(DiskError::Shrink {
            disk: disk.to_path_buf(),
            current,
            requested: size_bytes,
        });
    }
    if size_bytes == current {
        return Ok(false);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .and_then(|f| f.set_len(size_bytes))
        .map_err(io)?;
    runner
        .run(
            &Cmd::new("resize2fs")
                .arg(disk)
                .timeout(Duration::from_secs(300)),
        )
        .await
        .map_err(|source| DiskError::Resize {
            disk: disk.to_path_buf(),
            source,
        })?;
    Ok(true)
}

/// Refuses a disk the state directory's file system could never hold: the `requested`
/// size, less the `allocated` bytes the disk already occupies, must fit in `free`. Disks
/// are sparse, so a bigger one would be accepted and then fail inside the guest (or fill
/// the host) once written. Pure; the message names the sizes and `dir`.
pub fn check_room(
    requested: ByteSize,
    allocated: u64,
    free: u64,
    dir: &Path,
) -> Result<(), String> {
    let needed = requested.bytes().saturating_sub(allocated);
    if needed <= free {
        return Ok(());
    }
    Err(format!(
        "disk is {requested}; it needs {} more on the file system of {}, which has {} free",
        approximately(needed),
        dir.display(),
        approximately(free)
    ))
}

/// A byte count for a message: GiB with one decimal from 1 GiB up, else whole MiB.
fn approximately(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= 1024 * MIB {
        format!("{:.1}GiB", bytes as f64 / (1024 * MIB) as f64)
    } else {
        format!("{}MiB", bytes / MIB)
    }
}

/// Bytes the file occupies on the host (allocated blocks), and its apparent size.
pub fn usage(disk: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(disk)?;
    Ok((meta.blocks() * 512, meta.len()))
}

#[cfg(test)]
mod room_tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn a_disk_must_fit_in_the_free_space() {
        let dir = Path::new("/state");
        // (requested, already allocated, free, fits)
        let cases = [
            (ByteSize(4 * GIB), 0, 10 * GIB, true),
            (ByteSize(4 * GIB), 0, 4 * GIB, true),
            (ByteSize(4 * GIB), 0, 4 * GIB - 1, false),
            // Growing an 8 GiB disk that holds 3 GiB to 10 GiB needs 7 GiB.
            (ByteSize(10 * GIB), 3 * GIB, 7 * GIB, true),
            (ByteSize(10 * GIB), 3 * GIB, 6 * GIB, false),
            (ByteSize(2048 * GIB), 0, 60 * GIB, false),
            (ByteSize(GIB), 2 * GIB, 0, true),
        ];
        for (requested, allocated, free, fits) in cases {
            assert_eq!(
                check_room(requested, allocated, free, dir).is_ok(),
                fits,
                "{requested} with {allocated} allocated, {free} free"
            );
        }
        assert_eq!(
            check_room(ByteSize(2048 * GIB), 0, 60 * GIB + GIB / 2, dir).unwrap_err(),
            "disk is 2TiB; it needs 2048.0GiB more on the file system of /state, which has \
             60.5GiB free"
        );
        assert!(
            check_room(ByteSize(GIB), 0, 5 * 1024 * 1024, dir)
                .unwrap_err()
                .ends_with("which has 5MiB free")
        );
    }
}
