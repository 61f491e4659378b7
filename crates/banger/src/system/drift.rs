//! drift: the modes an installation must keep, checked by `doctor`. Pure over a `stat`
//! function so the expectations are table-tested: the helper's socket directory
//! root-owned and not group/other-writable, the helper socket 0600 and the owner's, the
//! owner's runtime directory and state directory 0700, the daemon socket 0600, banger's
//! ssh private key 0600, every binary root's and not writable by others.

use std::path::{Path, PathBuf};

use banger_model::system::InstallMetadata;

/// What `stat` says of one path (without following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub uid: u32,
    pub mode: u32,
    pub symlink: bool,
}

/// One expectation that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub path: PathBuf,
    pub problem: String,
}

enum Want {
    /// Owned by uid, exactly this mode.
    Exact(u32, u32),
    /// Owned by uid, none of these mode bits.
    Without(u32, u32),
}

fn expectations(metadata: &InstallMetadata) -> Vec<(PathBuf, Want)> {
    let owner = metadata.owner.uid;
    let paths = &metadata.paths;
    let mut list = vec![
        (
            paths
                .helper_socket
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            Want::Without(0, 0o022),
        ),
        (paths.helper_socket.clone(), Want::Exact(owner, 0o600)),
        (paths.runtime_dir.clone(), Want::Exact(owner, 0o700)),
        (paths.daemon_socket.clone(), Want::Exact(owner, 0o600)),
        (paths.state_dir.clone(), Want::Exact(owner, 0o700)),
        (
            paths.config_dir.join("ssh/id_ed25519"),
            Want::Exact(owner, 0o600),
        ),
        (paths.banger.clone(), Want::Without(0, 0o022)),
        (paths.bangerd.clone(), Want::Without(0, 0o022)),
        (paths.helper.clone(), Want::Without(0, 0o022)),
    ];
    if let Some(dir) = paths.helper.parent() {
        list.push((dir.to_path_buf(), Want::Without(0, 0o022)));
    }
    list
}

/// Every expectation that `stat` contradicts; paths `stat` cannot see are skipped (a
/// stopped service has no socket, a new install no key yet).
pub fn check(metadata: &InstallMetadata, stat: impl Fn(&Path) -> Option<Stat>) -> Vec<Drift> {
    let mut drift = Vec::new();
    for (path, want) in expectations(metadata) {
        let Some(found) = stat(&path) else { continue };
        let (uid, problem) = match want {
            Want::Exact(uid, mode) => (
                uid,
                (found.mode != mode).then(|| format!("mode {:o}, want {mode:o}", found.mode)),
            ),
            Want::Without(uid, bits) => (
                uid,
                (found.mode & bits != 0)
                    .then(|| format!("mode {:o} is writable by group or others", found.mode)),
            ),
        };
        let problem = if found.symlink {
            Some("is a symlink".to_owned())
        } else if found.uid != uid {
            Some(format!("owned by uid {}, want {uid}", found.uid))
        } else {
            problem
        };
        if let Some(problem) = problem {
            drift.push(Drift { path, problem });
        }
    }
    drift
}

/// The real `lstat`.
pub fn lstat(path: &Path) -> Option<Stat> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(Stat {
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        symlink: meta.file_type().is_symlink(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn drift_is_reported_per_path() {
        let metadata = crate::system::units::tests_support::metadata();
        let good: HashMap<PathBuf, Stat> = [
            ("/run/banger", 0, 0o755),
            ("/run/banger/helper.sock", 1000, 0o600),
            ("/run/banger-1000", 1000, 0o700),
            ("/run/banger-1000/bangerd.sock", 1000, 0o600),
            ("/home/alice/.local/state/banger", 1000, 0o700),
            ("/usr/local/lib/banger/banger-helper", 0, 0o755),
            ("/usr/local/lib/banger", 0, 0o755),
        ]
        .into_iter()
        .map(|(p, uid, mode)| {
            (
                PathBuf::from(p),
                Stat {
                    uid,
                    mode,
                    symlink: false,
                },
            )
        })
        .collect();
        assert_eq!(check(&metadata, |p| good.get(p).copied()), []);
        let mut bad = good.clone();
        bad.insert(
            "/run/banger".into(),
            Stat {
                uid: 0,
                mode: 0o777,
                symlink: false,
            },
        );
        bad.insert(
            "/run/banger/helper.sock".into(),
            Stat {
                uid: 1000,
                mode: 0o666,
                symlink: false,
            },
        );
        bad.insert(
            "/home/alice/.local/state/banger".into(),
            Stat {
                uid: 1001,
                mode: 0o700,
                symlink: false,
            },
        );
        bad.insert(
            "/home/alice/.config/banger/ssh/id_ed25519".into(),
            Stat {
                uid: 1000,
                mode: 0o644,
                symlink: false,
            },
        );
        bad.insert(
            "/usr/local/lib/banger/banger-helper".into(),
            Stat {
                uid: 0,
                mode: 0o755,
                symlink: true,
            },
        );
        let drift = check(&metadata, |p| bad.get(p).copied());
        let shown: Vec<String> = drift
            .iter()
            .map(|d| format!("{}: {}", d.path.display(), d.problem))
            .collect();
        assert_eq!(
            shown,
            [
                "/run/banger: mode 777 is writable by group or others",
                "/run/banger/helper.sock: mode 666, want 600",
                "/home/alice/.local/state/banger: owned by uid 1001, want 1000",
                "/home/alice/.config/banger/ssh/id_ed25519: mode 644, want 600",
                "/usr/local/lib/banger/banger-helper: is a symlink",
            ]
        );
    }
}
