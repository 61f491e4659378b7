//! owner: acting on a file named by a request without being tricked by links. The path
//! is first resolved and prefix-checked (`validate::resolve_inside`); then the canonical
//! path is opened with `openat2(RESOLVE_NO_SYMLINKS)` as an `O_PATH` descriptor, and the
//! kernel's own name for that descriptor is checked again. Whatever the user swaps in
//! between, the helper then acts on the descriptor, never on the name, so a symlink
//! planted after the check cannot redirect a chown or a loop attach to `/etc/shadow`.
//! A chown also refuses, on the descriptor's `fstat`, a file with several names (a hard
//! link from elsewhere cannot be told apart by path) and one the owner does not own.

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

/// Why `chown_to_owner` refuses a file it has opened, judged on the descriptor's own
/// `fstat`: a file with a second name (`st_nlink > 1`, for anything but a directory) may
/// be a hard link to a file outside banger's directories, which the path checks cannot
/// see; and a file the owner does not already own is not the owner's to be given (a
/// root-owned file planted there, hard-linked or not). Pure.
pub fn chown_refusal(stat: &FileStat, owner_uid: u32) -> Option<String> {
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if !is_dir && stat.st_nlink > 1 {
        return Some(format!(
            "it has {} hard links; a file with other names may be a link to a file outside \
             banger's directories",
            stat.st_nlink
        ));
    }
    if stat.st_uid != owner_uid {
        return Some(format!(
            "it belongs to uid {}, not to the owner (uid {owner_uid}); only the owner's own \
             files are fixed up",
            stat.st_uid
        ));
    }
    None
}

/// Gives `path` (a file or directory under banger's directories, not a link, with one
/// name, already the owner's) to the owner uid and, when known, the owner's primary
/// group. Every check is made on the opened descriptor, and the change is made through it.
pub fn chown_to_owner(
    path: &Path,
    roots: &[&Path],
    owner_uid: u32,
    owner_gid: Option<u32>,
) -> Result<(), HelperError> {
    const OP: &str = "chown_to_owner";
    let file = open_checked(OP, path, roots)?;
    if let Some(reason) = chown_refusal(&file.stat, owner_uid) {
        return Err(HelperError::InvalidPath {
            path: file.path,
            reason,
        });
    }
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
        // A directory has several links by nature and is still fixed up.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::create_dir(dir.path().join("sub/inner")).unwrap();
        chown_to_owner(&dir.path().join("sub"), &[dir.path()], uid, Some(gid)).unwrap();
    }

    /// A hard link planted in the state directory is refused whoever owns its file, and
    /// so is a file the owner does not own; neither changes owner.
    #[test]
    fn hard_links_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let roots: [&Path; 1] = [&state];

        // The owner's own file, with a second name outside banger's directories.
        std::fs::write(outside.join("mine"), b"").unwrap();
        std::fs::hard_link(outside.join("mine"), state.join("linked")).unwrap();
        let error = chown_to_owner(&state.join("linked"), &roots, uid, None).unwrap_err();
        assert!(error.to_string().contains("2 hard links"), "{error}");

        if !nix::unistd::geteuid().is_root() {
            banger_requires::record_skip(
                Some("the foreign-owner half"),
                "needs root to create a file another uid owns",
            );
            return;
        }
        // What the issue reproduced: a root-owned file hard-linked into the directory of
        // an owner who is not root. Refused, and still root's.
        let owner = 4242;
        let secret = outside.join("secret");
        std::fs::write(&secret, b"root's").unwrap();
        std::fs::hard_link(&secret, state.join("secret")).unwrap();
        let error = chown_to_owner(&state.join("secret"), &roots, owner, Some(owner)).unwrap_err();
        assert!(matches!(error, HelperError::InvalidPath { .. }), "{error}");
        assert_eq!(std::fs::metadata(&secret).unwrap().uid(), 0);
        // Not linked, but not the owner's either.
        std::fs::write(state.join("planted"), b"").unwrap();
        let error = chown_to_owner(&state.join("planted"), &roots, owner, None).unwrap_err();
        assert!(error.to_string().contains("belongs to uid 0"), "{error}");
        assert_eq!(std::fs::metadata(state.join("planted")).unwrap().uid(), 0);
        // The owner's own single-named file is fixed up.
        std::fs::write(state.join("own"), b"").unwrap();
        nix::unistd::chown(&state.join("own"), Some(Uid::from_raw(owner)), None).unwrap();
        chown_to_owner(&state.join("own"), &roots, owner, Some(owner)).unwrap();
        let meta = std::fs::metadata(state.join("own")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner, owner));
    }
}
