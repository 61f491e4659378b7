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
    let reflink = Cmd::new("cp").arg("--reflink=always").arg(image).arg(disk);
    let method = match runner.run(&reflink).await {
        Ok(_) => DiskMethod::Reflink,
        Err(_) => {
            let _ = std::fs::remove_file(disk);
            let sparse = Cmd::new("cp")
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

/// Bytes the file occupies on the host (allocated blocks), and its apparent size.
pub fn usage(disk: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(disk)?;
    Ok((meta.blocks() * 512, meta.len()))
}
