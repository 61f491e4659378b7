//! Making the ext4 file: `mkfs.ext4 -d TARBALL` populates a pre-sized sparse file from
//! one tar stream (e2fsprogs >= 1.47.1 reads tarballs through libarchive), keeping the
//! tar's uid/gid/modes with no root, no mount and no chown pass.

use std::path::Path;
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};

use crate::error::ImageError;

/// The ext4 superblock magic (0xEF53, little endian) sits at byte 1080.
const EXT4_MAGIC_OFFSET: usize = 1024 + 0x38;

/// True when `header` (the first 2 KiB of a file, or more) is an ext2/3/4 superblock.
pub fn has_ext4_magic(header: &[u8]) -> bool {
    header.get(EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2) == Some(&[0x53, 0xef][..])
}

/// True when the file at `path` starts with an ext2/3/4 superblock.
pub fn is_ext4_file(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut header = vec![0u8; 2048];
    let mut file = fs_err::File::open(path)?;
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(has_ext4_magic(&header[..filled]))
}

/// Creates `image` as a sparse file of `size_bytes` and formats it from `tarball`.
pub async fn mkfs_from_tar(
    runner: &dyn CommandRunner,
    tarball: &Path,
    image: &Path,
    size_bytes: u64,
) -> Result<(), ImageError> {
    let file = fs_err::File::create(image)?;
    file.set_len(size_bytes)
        .map_err(ImageError::io(format!("cannot size {}", image.display())))?;
    drop(file);
    let cmd = Cmd::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "rootfs",
            "-m",
            "0",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(tarball)
        .arg(image)
        .timeout(Duration::from_secs(1800));
    match runner.run(&cmd).await {
        Ok(_) => Ok(()),
        Err(source) if tarball_unsupported(&source) => Err(ImageError::MkfsNeedsTarSupport {
            source: Box::new(source),
        }),
        Err(source) => Err(ImageError::command("mkfs.ext4")(source)),
    }
}

/// The messages an e2fsprogs without tarball support prints for `-d FILE.tar`.
fn tarball_unsupported(error: &ExecError) -> bool {
    matches!(error, ExecError::Failed { stderr, .. }
        if stderr.contains("libarchive") || stderr.contains("Not a directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_magic() {
        let mut header = vec![0u8; 2048];
        assert!(!has_ext4_magic(&header));
        header[1080] = 0x53;
        header[1081] = 0xef;
        assert!(has_ext4_magic(&header));
        assert!(!has_ext4_magic(&header[..1081]));
    }

    #[test]
    fn detects_missing_tarball_support() {
        let failed = |stderr: &str| ExecError::Failed {
            command: "mkfs.ext4".into(),
            status: "exit code 1".into(),
            code: Some(1),
            stdout: Vec::new(),
            stderr: stderr.into(),
        };
        assert!(tarball_unsupported(&failed(
            "you need libarchive to be able to process tarballs"
        )));
        assert!(tarball_unsupported(&failed(
            "__populate_fs: Not a directory while trying to open"
        )));
        assert!(!tarball_unsupported(&failed("No space left on device")));
    }
}
