//! socket: making the helper's listening socket, safely against whoever can rename
//! entries around its directory. The directory is opened once (`O_DIRECTORY |
//! O_NOFOLLOW`), checked through that descriptor (`fstat`: root-owned, writable by
//! nobody else), and everything after works through it: the stale-socket probe and the
//! bind go through `/proc/self/fd/<fd>/<name>` (which names the opened directory,
//! whatever its path names by then), the removal and the chown are `unlinkat` and
//! `fchownat` on the descriptor, a directory the helper made itself gets its mode by
//! `fchmod`. A symlink swapped in for the directory at any moment is refused or never
//! seen; nothing is created, removed or changed outside the directory that was checked.
//!
//! The kernel records a socket's name as it was bound, so `/proc/net/unix` lists the
//! helper's socket as `/proc/self/fd/<fd>/<name>`; [`crate::probe`] counts such a listener
//! as possibly live when it must fall back to that table.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::SFlag;
use nix::unistd::UnlinkatFlags;

/// Creates the listening socket at `path`, replacing a stale socket (never a live one,
/// nor another kind of file), mode 0600 and owned by `owner_uid`. The parent directory
/// is created root-owned 0755 if missing; an existing one must be a real directory (not a
/// symlink) owned by root (or by the helper's own uid, when it is not root, as in tests)
/// and writable by nobody else. The mode comes from the umask at bind time and the owner
/// from `fchownat` without following links; see the module doc for why nothing goes
/// through the directory's path after it was checked.
pub fn bind(path: &Path, owner_uid: u32) -> io::Result<UnixListener> {
    let (parent, name) = split(path)?;
    let dir = open_socket_dir(parent)?;
    let through = through(&dir, name);
    match nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK => {
            if crate::probe::listening_in(&through, path)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another process (a running banger-helper?) is listening on {}; \
                         stop it first, or check it with `banger-helper probe --socket {0}`",
                        path.display()
                    ),
                ));
            }
            nix::unistd::unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Err(Errno::ENOENT) => {}
        Err(errno) => return Err(errno.into()),
    }
    // The process is single-threaded here (serving starts after), so the umask change
    // affects only this bind.
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&through);
    nix::sys::stat::umask(previous);
    let listener = bound?;
    nix::unistd::fchownat(
        &dir,
        name,
        Some(nix::unistd::Uid::from_raw(owner_uid)),
        None,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    Ok(listener)
}

/// The socket's directory (`.` for a bare name) and file name.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no socket file", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// `name` in the opened directory, by a path that resolves through the descriptor.
fn through(dir: &File, name: &OsStr) -> PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Opens the socket's directory (creating it if missing) and checks it through the
/// descriptor.
fn open_socket_dir(parent: &Path) -> io::Result<File> {
    let own_uid = nix::unistd::geteuid().as_raw();
    let created = match std::fs::symlink_metadata(parent) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
            true
        }
        Err(error) => return Err(error),
        Ok(_) => false,
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(parent)
        .map_err(|error| match error.raw_os_error() {
            Some(nix::libc::ELOOP | nix::libc::ENOTDIR) => refused(not_a_directory(parent)),
            _ => error,
        })?;
    let mut meta = dir.metadata()?;
    // The umask may have taken bits off the mode asked for; put them back on the
    // directory that was opened, and only on one of the helper's own.
    if created && meta.uid() == own_uid && meta.mode() & 0o7777 != 0o755 {
        dir.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        meta = dir.metadata()?;
    }
    check_socket_dir(parent, &meta, own_uid).map_err(refused)?;
    Ok(dir)
}

fn refused(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, reason)
}

/// Why `parent` could not be opened as a directory without following a link.
fn not_a_directory(parent: &Path) -> String {
    let shown = parent.display();
    match std::fs::symlink_metadata(parent) {
        Ok(meta) if meta.file_type().is_symlink() => {
            format!("{shown} is a symlink; refusing to put the helper's socket there")
        }
        Ok(meta) if !meta.is_dir() => format!("{shown} is not a directory"),
        _ => format!(
            "{shown} changed while the helper opened it; refusing to put the helper's socket there"
        ),
    }
}

/// Why an existing socket directory is refused, if it is.
pub fn check_socket_dir(dir: &Path, meta: &std::fs::Metadata, own_uid: u32) -> Result<(), String> {
    let shown = dir.display();
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{shown} is a symlink; refusing to put the helper's socket there"
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    if meta.uid() != 0 && meta.uid() != own_uid {
        return Err(format!(
            "{shown} belongs to uid {}, not root; refusing to put the helper's socket there",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{shown} is writable by group or others (mode {:o}); refusing to put the helper's socket there",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_directories_that_others_control_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let good = dir.path().join("good");
        std::fs::create_dir(&good).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        check_socket_dir(&good, &meta(&good), me).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_socket_dir(&open, &meta(&open), me).unwrap_err();
        assert!(error.contains("writable by group or others"), "{error}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let error = check_socket_dir(&link, &meta(&link), me).unwrap_err();
        assert!(error.contains("symlink"), "{error}");
        if me != 0 {
            let error = check_socket_dir(&good, &meta(&good), me + 1).unwrap_err();
            assert!(error.contains("not root"), "{error}");
        }
        // Binding below a symlinked directory is refused, and leaves nothing behind.
        assert!(bind(&link.join("helper.sock"), me).is_err());
        assert!(!good.join("helper.sock").exists());
        let listener = bind(&good.join("helper.sock"), me).unwrap();
        let mode = meta(&good.join("helper.sock")).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);
    }

    /// The form the socket is bound with is the one the probe's table fallback counts as
    /// live, so a helper that cannot connect to it does not take it away.
    #[test]
    fn a_bound_socket_is_seen_by_the_probe_table_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let socket = dir.path().join("helper.sock");
        let listener = bind(&socket, me).unwrap();
        let table = std::fs::read_to_string("/proc/net/unix").unwrap();
        assert!(
            crate::probe::unix_table_has_fd_listener(&table, "helper.sock".as_ref()),
            "{table}"
        );
        assert!(crate::probe::listening(&socket).unwrap());
        // A second bind while the first listens is refused and leaves it in place.
        let error = bind(&socket, me).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        drop(listener);
        // Stale now: replaced.
        let again = bind(&socket, me).unwrap();
        drop(again);
    }
}
