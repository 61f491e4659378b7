//! disk: free space on the file system that holds the state directory, where images and
//! guest disks live. The state directory may not exist yet, so its nearest existing
//! ancestor is measured (the directory will be created on that file system).

use std::path::{Path, PathBuf};

use crate::{Check, Status};

const NAME: &str = "disk";
const GIB: u64 = 1024 * 1024 * 1024;
/// Below this a golden image plus a few guests no longer fit comfortably.
pub const WARN_BELOW: u64 = 10 * GIB;
/// Below this even one image build fails.
pub const FAIL_BELOW: u64 = 2 * GIB;

/// The status for `free` bytes; pure.
pub fn disk_status(free: u64) -> Status {
    if free < FAIL_BELOW {
        Status::Fail
    } else if free < WARN_BELOW {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// `bytes` as GiB with one decimal, for messages.
pub fn format_gib(bytes: u64) -> String {
    let tenths = (u128::from(bytes) * 10 + u128::from(GIB) / 2) / u128::from(GIB);
    format!("{}.{} GiB", tenths / 10, tenths % 10)
}

/// The free-space check for the state directory.
pub fn check_disk(state_dir: &Path) -> Check {
    let measured = existing_ancestor(state_dir);
    match nix::sys::statvfs::statvfs(&measured) {
        Ok(stats) => {
            // Space available to an unprivileged user, as banger's daemon is one.
            let free = stats
                .blocks_available()
                .saturating_mul(stats.fragment_size());
            judge_disk(&measured, free)
        }
        Err(errno) => Check::warn(
            NAME,
            format!(
                "cannot measure free space at {}: {errno}",
                measured.display()
            ),
            "check that the state directory's parent exists and is readable",
        ),
    }
}

/// The check for `free` bytes at `path`; pure.
pub fn judge_disk(path: &Path, free: u64) -> Check {
    let detail = format!("{} free at {}", format_gib(free), path.display());
    let status = disk_status(free);
    if status == Status::Pass {
        return Check::pass(NAME, detail);
    }
    Check::not_passing(
        NAME,
        status,
        detail,
        format!(
            "free space on that file system, or point BANGER_STATE_DIR at one with at \
             least {}",
            format_gib(WARN_BELOW)
        ),
    )
}

fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|candidate| candidate.exists())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_table() {
        let cases = [
            (0, Status::Fail),
            (FAIL_BELOW - 1, Status::Fail),
            (FAIL_BELOW, Status::Warn),
            (5 * GIB, Status::Warn),
            (WARN_BELOW - 1, Status::Warn),
            (WARN_BELOW, Status::Pass),
            (500 * GIB, Status::Pass),
        ];
        for (free, status) in cases {
            assert_eq!(disk_status(free), status, "{free}");
            let check = judge_disk(Path::new("/state"), free);
            assert_eq!(check.status, status);
            assert_eq!(check.hint.is_some(), status != Status::Pass);
        }
    }

    #[test]
    fn gib_format_table() {
        let cases = [
            (0, "0.0 GiB"),
            (GIB, "1.0 GiB"),
            (GIB + GIB / 2, "1.5 GiB"),
            (10 * GIB - 1, "10.0 GiB"),
            (123 * GIB + GIB / 10 * 4, "123.4 GiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_gib(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn measures_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("not/yet/created");
        assert_eq!(existing_ancestor(&state), dir.path());
        let check = check_disk(&state);
        assert!(
            check.detail.contains(&dir.path().display().to_string()),
            "{check:?}"
        );
        assert!(check.detail.contains("GiB free"), "{check:?}");
    }
}
