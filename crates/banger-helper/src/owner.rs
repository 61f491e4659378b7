//! owner: acting on a file named by a request without being tricked by links. The path
//! is first resolved and prefix-checked (`validate::resolve_inside`); then the canonical
//! path is opened with `openat2(RESOLVE_NO_SYMLINKS)` as an `O_PATH` descriptor, and the
//! kernel's own name for that descriptor is checked again. Whatever the user swaps in
//! between, the helper then acts on the descriptor, never on the name, so a symlink
//! planted after the check cannot redirect a chown or a loop attach to `/etc/shadow`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use banger_proto::helper::HelperError;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, SFlag, fstat};
use nix::unistd::{Gid, Uid, fchownat};

use crate::link::failed;
use crate::validate::{is_under, resolve_inside};

/// A file named by a request, opened without following links and checked to be under
/// the allowed roots.
#[derive(Debug)]
pub struct CheckedFile {
    pub fd: OwnedFd,
    /// Its canonical path (as checked).
    pub path: PathBuf,
    pub stat: FileStat,
}

impl CheckedFile {
    pub fn is_regular(&self) -> bool {
        SFlag::from_bits_truncate(self.stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
    }

    /// A path any process (running as root) can open to reach exactly this file, even if
    /// its name has since been changed: `/proc/<helper pid>/fd/<n>`.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

/// Resolves, opens and re-checks `path` against `roots`.
pub fn open_checked(op: &str, path: &Path, roots: &[&Path]) -> Result<CheckedFile, HelperError> {
    let canonical = resolve_inside(path, roots)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(nix::fcntl::AT_FDCWD, &canonical, how).map_err(|errno| {
        if errno == nix::errno::Errno::ELOOP {
            HelperError::InvalidPath {
                path: path.to_owned(),
                reason: "changed into a symbolic link while being checked".to_owned(),
            }
        } else {
            failed(op, format!("cannot open {}: {errno}", canonical.display()))
        }
    })?;
    let proc_link = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let actual = std::fs::read_link(&proc_link)
        .map_err(|error| failed(op, format!("cannot read {}: {error}", proc_link.display())))?;
    let roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    if actual != canonical || !is_under(&actual, &roots) {
        return Err(HelperError::PathOutsideDirs { path: actual });
    }
    let stat = fstat(fd.as_fd()).map_err(|errno| failed(op, format!("cannot stat: {errno}")))?;
    Ok(CheckedFile {
        fd,
        path: canonical,
        stat,
    })
}

/// Gives `path` (a file or directory under banger's directories, not a link) to the
/// owner uid and, when known, the owner's primary group.
pub fn chown_to_owner(
    path: &Path,
    roots: &[&Path],
    owner_uid: u32,
    owner_gid: Option<u32>,
) -> Result<(), HelperError> {
    const OP: &str = "chown_to_owner";
    let file = open_checked(OP, path, roots)?;
    fchownat(
        file.fd.as_fd(),
        "",
        Some(Uid::from_raw(owner_uid)),
        owner_gid.map(Gid::from_raw),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|errno| failed(OP, format!("chown {}: {errno}", file.path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn opens_files_inside_and_refuses_links_and_outsiders() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("disk.img"), b"x").unwrap();
        symlink("/etc/passwd", state.join("evil")).unwrap();
        let roots: [&Path; 1] = [&state];

        let file = open_checked("test", &state.join("disk.img"), &roots).unwrap();
        assert!(file.is_regular());
        assert_eq!(file.path, state.canonicalize().unwrap().join("disk.img"));
        let proc_path = file.proc_path();
        assert_eq!(
            std::fs::read_link(&proc_path).unwrap(),
            file.path,
            "{}",
            proc_path.display()
        );

        assert!(matches!(
            open_checked("test", &state.join("evil"), &roots),
            Err(HelperError::InvalidPath { .. })
        ));
        assert!(matches!(
            open_checked("test", Path::new("/etc/passwd"), &roots),
            Err(HelperError::PathOutsideDirs { .. })
        ));
        let dir_itself = open_checked("test", &state, &roots).unwrap();
        assert!(!dir_itself.is_regular());
    }

    #[test]
    fn chown_to_the_current_owner_works_unprivileged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        chown_to_owner(&file, &[dir.path()], uid, Some(gid)).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert!(matches!(
            chown_to_owner(Path::new("/etc/hostname"), &[dir.path()], uid, None),
            Err(HelperError::PathOutsideDirs { .. })
        ));
    }
}
