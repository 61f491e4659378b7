//! files: `write_file` and `read_file`. Writes go to a temporary file in the target's
//! directory that is renamed over the target, so a reader never sees half a file and an
//! interrupted write leaves the old one. Sizes are bounded by what one frame carries.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use banger_proto::agent::MAX_FILE_BYTES;

/// Creates or replaces the file at the absolute `path`, parents included, with exactly
/// `mode`'s permission bits (the umask does not apply). Errors are messages for the host.
pub fn write_file(path: &str, mode: u32, data: &[u8]) -> Result<(), String> {
    let target = absolute(path)?;
    if data.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{path}: {} bytes exceed the limit of {MAX_FILE_BYTES}",
            data.len()
        ));
    }
    let Some((parent, name)) = target.parent().zip(target.file_name()) else {
        return Err(format!("{path}: not a file path"));
    };
    fs::create_dir_all(parent)
        .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temporary = parent.join(format!(
        ".{}.banger-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_new(&temporary, mode, data).and_then(|()| {
        fs::rename(&temporary, target).map_err(|error| format!("cannot replace {path}: {error}"))
    });
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

fn write_new(temporary: &Path, mode: u32, data: &[u8]) -> Result<(), String> {
    let shown = temporary.display();
    let mode = mode & 0o7777;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temporary)
        .map_err(|error| format!("cannot create {shown}: {error}"))?;
    file.write_all(data)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode)))
        // The host may power the guest off right after; the data must be on disk first.
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write {shown}: {error}"))
}

/// The whole file at the absolute `path`, if it is at most [`MAX_FILE_BYTES`] long.
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let source = absolute(path)?;
    let file = File::open(source).map_err(|error| format!("cannot open {path}: {error}"))?;
    let mut data = Vec::new();
    // Read one byte past the limit instead of trusting the size in the metadata (files
    // in /proc report 0).
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|error| format!("cannot read {path}: {error}"))?;
    if data.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{path}: larger than the limit of {MAX_FILE_BYTES} bytes"
        ));
    }
    Ok(data)
}

/// The agent has no meaningful working directory; relative paths are refused.
fn absolute(path: &str) -> Result<&Path, String> {
    let path_ref = Path::new(path);
    if path_ref.is_absolute() {
        Ok(path_ref)
    } else {
        Err(format!("{path:?}: the path must be absolute"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_parents_then_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.conf");
        let path = path.to_str().unwrap();
        write_file(path, 0o640, b"one").unwrap();
        write_file(path, 0o600, b"two\n").unwrap();
        assert_eq!(read_file(path).unwrap(), b"two\n");
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let missing = missing.to_str().unwrap();
        let big = vec![0; MAX_FILE_BYTES + 1];
        let table: Vec<(Result<(), String>, &str)> = vec![
            (write_file("relative/x", 0o644, b""), "must be absolute"),
            (write_file("/", 0o644, b""), "not a file path"),
            (write_file(missing, 0o644, &big), "exceed the limit"),
            (read_file("x").map(drop), "must be absolute"),
            (read_file(missing).map(drop), "No such file"),
        ];
        for (result, want) in table {
            let error = result.expect_err(want);
            assert!(error.contains(want), "{error:?} should mention {want:?}");
        }
    }
}
