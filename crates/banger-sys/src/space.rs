//! space: how much a file system has free, for the checks that refuse a disk the host
//! could never hold. `statvfs(2)` through nix; no `unsafe` of our own.

use std::path::Path;

/// Bytes an unprivileged user may still write on the file system holding `path`
/// (`f_bavail * f_frsize`, which excludes the blocks reserved for root).
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_some_space_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
