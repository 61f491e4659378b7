//! owner_dirs: `system install` (root) creates the owner's state, cache and config
//! directories before the daemon's first start. The daemon's unit makes everything but
//! those paths read-only, so a directory that does not exist yet could never be created
//! by the daemon itself.
//!
//! Root works here inside a tree the owner controls, so every step goes through directory
//! descriptors opened with `O_NOFOLLOW`: a symlink the owner plants (or swaps in between
//! two steps) makes the install fail instead of redirecting a root-made directory.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use banger_model::system::Owner;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown};

/// Creates `path` and any missing parents as the owner's (mode 0700), walking from `/`
/// one component at a time through descriptors: a symlink on the way is followed only when
/// root owns it (the owner could not have planted it), a directory is created only inside
/// one that root or the owner owns, and `path` itself must end up the owner's.
pub fn ensure_owner_tree(path: &Path, owner: &Owner) -> anyhow::Result<()> {
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        bail!("{} is not an absolute, plain path", path.display());
    }
    let mut dir = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut shown = PathBuf::from("/");
    for component in path.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        shown.push(name);
        let (child, created) = match open_below(&dir, name) {
            Ok(child) => (child, false),
            Err(Errno::ENOENT) => {
                let parent = fstat(&dir)?;
                if parent.st_uid != 0 && parent.st_uid != owner.uid {
                    bail!(
                        "{} belongs to uid {}, neither root nor {}; refusing to create {} in it",
                        shown.parent().unwrap_or(&shown).display(),
                        parent.st_uid,
                        owner.name,
                        path.display()
                    );
                }
                match mkdirat(&dir, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(error) => {
                        return Err(error)
                            .with_context(|| format!("cannot create {}", shown.display()));
                    }
                }
                let child = open_below(&dir, name).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot open {} just created ({error}; replaced by a symlink?); \
                         refusing to continue",
                        shown.display()
                    )
                })?;
                (child, true)
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                bail!(
                    "{} is a symlink (not root's) or not a directory; refusing to follow it",
                    shown.display()
                )
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot open {}", shown.display()));
            }
        };
        if created && fstat(&child)?.st_uid == 0 {
            fchown(
                child.as_fd(),
                Some(Uid::from_raw(owner.uid)),
                Some(Gid::from_raw(owner.gid)),
            )
            .with_context(|| format!("cannot give {} to {}", shown.display(), owner.name))?;
            fchmod(child.as_fd(), Mode::from_bits_truncate(0o700))?;
        }
        dir = child;
    }
    check_owned(&dir, &shown, owner)
}

/// Opens directory `name` below `dir` without following a symlink, unless root owns the
/// symlink.
fn open_below(dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    match openat(dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            let link = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let is_link = link.st_mode & libc_mode::S_IFMT == libc_mode::S_IFLNK;
            if is_link && link.st_uid == 0 {
                openat(dir, name, flags, Mode::empty())
            } else {
                Err(Errno::ELOOP)
            }
        }
        other => other,
    }
}

/// File type bits of `st_mode`.
mod libc_mode {
    pub const S_IFMT: u32 = 0o170_000;
    pub const S_IFLNK: u32 = 0o120_000;
}

fn check_owned(dir: &OwnedFd, shown: &Path, owner: &Owner) -> anyhow::Result<()> {
    let stat = fstat(dir)?;
    if stat.st_uid != owner.uid {
        bail!(
            "{} belongs to uid {}, not {} (uid {}); refusing to use it",
            shown.display(),
            stat.st_uid,
            owner.name,
            owner.uid
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn me() -> Owner {
        Owner {
            name: "me".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            groups: Vec::new(),
            home: PathBuf::from("/nonexistent"),
        }
    }

    /// A symlink root owns is trusted (the owner could not have made it); as root, the
    /// test gives its planted symlink to another uid, as the owner's own would be.
    fn disown(link: &Path) {
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::lchown(link, Some(4242), Some(4242)).unwrap();
        }
    }

    #[test]
    fn a_root_owned_symlink_on_the_way_is_followed() {
        banger_requires::require!(Root);
        let home = tempfile::tempdir().unwrap();
        let real = home.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, home.path().join("alias")).unwrap();
        ensure_owner_tree(&home.path().join("alias/banger"), &me()).unwrap();
        assert!(real.join("banger").is_dir());
    }

    #[test]
    fn missing_parents_are_created_private_and_owned() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".local/state/banger");
        ensure_owner_tree(&path, &me()).unwrap();
        for dir in [".local", ".local/state", ".local/state/banger"] {
            let meta = std::fs::metadata(home.path().join(dir)).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.uid(), me().uid);
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{dir}");
        }
        // again: nothing to do, no error
        ensure_owner_tree(&path, &me()).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_refused_not_followed() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let planted = home.path().join(".cache");
        std::os::unix::fs::symlink(elsewhere.path(), &planted).unwrap();
        disown(&planted);
        let error = ensure_owner_tree(&home.path().join(".cache/banger"), &me()).unwrap_err();
        assert!(format!("{error:#}").contains("symlink"), "{error:#}");
        assert!(
            std::fs::read_dir(elsewhere.path())
                .unwrap()
                .next()
                .is_none(),
            "nothing was created through the symlink"
        );
        // the final component itself a symlink
        std::os::unix::fs::symlink(elsewhere.path(), home.path().join("config")).unwrap();
        disown(&home.path().join("config"));
        assert!(ensure_owner_tree(&home.path().join("config"), &me()).is_err());
    }

    #[test]
    fn an_existing_directory_of_someone_else_is_refused() {
        banger_requires::require!(Root);
        let home = tempfile::tempdir().unwrap();
        let theirs = home.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        let error = ensure_owner_tree(&theirs.join("banger"), &me()).unwrap_err();
        assert!(format!("{error:#}").contains("4242"), "{error:#}");
    }
}
