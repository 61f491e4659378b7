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
        Err(source) => Err(mkfs_failed(image, source)),
    }
}

/// Creates `image` as a sparse file of `size_bytes` and formats it from the tar stream
/// that `write` produces on another thread (`mkfs.ext4 -d -` reads it from a pipe, so
/// the flattened tar never exists on disk).
pub async fn mkfs_from_stream<F>(
    runner: &dyn CommandRunner,
    image: &Path,
    size_bytes: u64,
    write: F,
) -> Result<(), ImageError>
where
    F: FnOnce(std::io::PipeWriter) -> std::io::Result<()> + Send + 'static,
{
    mkfs_from_stream_labeled(runner, image, size_bytes, "rootfs", write).await
}

/// [`mkfs_from_stream`] with the file system label `label` (a workspace disk is
/// `workspace`).
pub async fn mkfs_from_stream_labeled<F>(
    runner: &dyn CommandRunner,
    image: &Path,
    size_bytes: u64,
    label: &str,
    write: F,
) -> Result<(), ImageError>
where
    F: FnOnce(std::io::PipeWriter) -> std::io::Result<()> + Send + 'static,
{
    let file = fs_err::File::create(image)?;
    file.set_len(size_bytes)
        .map_err(ImageError::io(format!("cannot size {}", image.display())))?;
    drop(file);
    let (reader, writer) =
        std::io::pipe().map_err(ImageError::io("cannot create a pipe for mkfs.ext4"))?;
    let feeder = tokio::task::spawn_blocking(move || write(writer));
    let cmd = Cmd::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            label,
            "-m",
            "0",
            "-E",
            "root_owner=0:0",
            "-d",
            "-",
        ])
        .arg(image)
        .stdin_fd(reader)
        .timeout(Duration::from_secs(3600));
    let made = runner.run(&cmd).await;
    // mkfs has exited, so the pipe's read end is closed: a writer still going fails
    // with EPIPE instead of blocking.
    let fed = feeder.await.map_err(ImageError::Join)?;
    match made {
        Ok(_) => fed.map_err(ImageError::io("cannot write the image's tar stream")),
        Err(source) if tarball_unsupported(&source) => Err(ImageError::MkfsNeedsTarSupport {
            source: Box::new(source),
        }),
        Err(source) => {
            if let Err(error) = fed
                && error.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(ImageError::io("cannot write the image's tar stream")(error));
            }
            Err(mkfs_failed(image, source))
        }
    }
}

/// Sets extended attributes that `mkfs.ext4 -d` leaves out (it keeps only
/// `security.capability` from a tar) with one `debugfs -w` script. Values are staged as
/// files in `scratch`. Paths debugfs cannot quote (with `"` or a newline) are skipped
/// and returned.
pub async fn set_xattrs(
    runner: &dyn CommandRunner,
    image: &Path,
    scratch: &Path,
    xattrs: &[(String, String, Vec<u8>)],
) -> Result<Vec<String>, ImageError> {
    let mut skipped = Vec::new();
    let mut commands = Vec::new();
    fs_err::create_dir_all(scratch)?;
    for (index, (path, name, value)) in xattrs.iter().enumerate() {
        if path.contains(['"', '\n']) || name.contains(['"', '\n', ' ']) {
            skipped.push(format!("/{path} {name}"));
            continue;
        }
        let value_file = scratch.join(format!("xattr-{index}"));
        fs_err::write(&value_file, value)?;
        commands.push(format!(
            "ea_set -f \"{}\" \"/{path}\" {name}",
            value_file.display()
        ));
    }
    if commands.is_empty() {
        return Ok(skipped);
    }
    let script = scratch.join("xattrs.debugfs");
    fs_err::write(&script, commands.join("\n") + "\n")?;
    let out = runner
        .run(
            &Cmd::new("debugfs")
                .args(["-w", "-f"])
                .arg(&script)
                .arg(image)
                .timeout(Duration::from_secs(600)),
        )
        .await
        .map_err(ImageError::command("debugfs ea_set"))?;
    // debugfs exits 0 whatever happens; its stderr tells.
    let errors: Vec<String> = out
        .stderr_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs "))
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(ImageError::Xattrs {
            errors: errors.join("; "),
        });
    }
    Ok(skipped)
}

/// mkfs.ext4's failure, told apart when the host's own file system filled up: the image
/// file is sparse and sized for its content, so an errno ENOSPC (not e2fsprogs' "could
/// not allocate block") comes from writing it out on the host.
fn mkfs_failed(image: &Path, source: ExecError) -> ImageError {
    let host_full = matches!(&source, ExecError::Failed { stderr, .. }
        if stderr.contains("No space left on device"));
    if host_full {
        ImageError::HostDiskFull {
            dir: image.parent().unwrap_or(image).to_path_buf(),
            source: Box::new(source),
        }
    } else {
        ImageError::command("mkfs.ext4")(source)
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

    fn failed(stderr: &str) -> ExecError {
        ExecError::Failed {
            command: "mkfs.ext4".into(),
            status: "exit code 1".into(),
            code: Some(1),
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_full_host_disk_is_told_apart_from_other_mkfs_failures() {
        let image = Path::new("/state/images/.staging-x/image.ext4");
        let full = mkfs_failed(
            image,
            failed("__populate_fs_from_tar: No space left on device while looking up \"git\""),
        );
        assert!(
            matches!(&full, ImageError::HostDiskFull { dir, .. } if dir == Path::new("/state/images/.staging-x")),
            "{full:?}"
        );
        assert!(
            full.to_string()
                .contains("/state/images/.staging-x is full")
        );
        let other = mkfs_failed(image, failed("Could not allocate block in ext2 filesystem"));
        assert!(matches!(other, ImageError::Command { .. }), "{other:?}");
    }

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
