//! [`Tmpfs`]: a small tmpfs a test mounts (root only) over a directory, e.g. a host's
//! state directory, to fill it to the last block and free it again.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::text;

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(std::process::Child::wait_with_output)
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// A tmpfs mounted on a directory for the test; lazily unmounted on drop, so a daemon
/// still holding files open cannot keep it mounted.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    size: String,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `1200m`) on `path`.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "banger-e2e",
                &path.display().to_string(),
            ],
        );
        Tmpfs {
            path: path.to_path_buf(),
            size: size.to_string(),
        }
    }

    /// (bytes used, bytes free).
    pub fn usage(&self) -> (u64, u64) {
        let out = Command::new("stat")
            .args(["-f", "-c", "%S %b %f"])
            .arg(&self.path)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(std::process::Child::wait_with_output)
            .expect("stat -f");
        let fields: Vec<u64> = text(&out.stdout)
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        let (block, total, free) = (fields[0], fields[1], fields[2]);
        ((total - free) * block, free * block)
    }

    /// Fills the file system to the last block: its size is cut to what is used (plus a
    /// little), and a filler file takes the rest. Nothing but the filler is written. A
    /// daemon writing at the same time can outgrow the new size before the remount (which
    /// then refuses), so the cut is retried a bounded number of times.
    pub fn fill(&self) {
        self.fill_while_written();
        assert_eq!(self.usage().1, 0, "the file system is not full");
    }

    /// [`Tmpfs::fill`] while a daemon works on the file system: it may free space right
    /// after (a cleanup, its space reserve), so being full at the end is not asserted.
    pub fn fill_while_written(&self) {
        let path = self.path.display().to_string();
        let mut cut = false;
        for _ in 0..20 {
            let (used, _) = self.usage();
            let size_kib = used / 1024 + 64;
            let status = Command::new("mount")
                .args(["-o", &format!("remount,size={size_kib}k"), &path])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) {
                cut = true;
                break;
            }
        }
        assert!(cut, "cannot cut the tmpfs on {path} to what it uses");
        let filler = self.path.join("filler");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
        {
            use std::io::Write as _;
            // Big chunks, then single pages for what a partial last chunk left.
            for size in [64 * 1024, 4096, 512] {
                let chunk = vec![0x5a; size];
                while file.write_all(&chunk).is_ok() {}
            }
        }
    }

    /// Frees the space again: the filler goes and the size comes back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
        sh(
            "mount",
            &[
                "-o",
                &format!("remount,size={}", self.size),
                &self.path.display().to_string(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
