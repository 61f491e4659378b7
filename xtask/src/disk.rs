//! Free space on the filesystems a CI run fills (the target dir, /tmp where e2e state
//! dirs live), printed before the heavy stages so a run that dies of ENOSPC says so.

use std::path::Path;
use std::process::Command;

/// Below this much free space the real-guest profile (images, VM disks, logs) is likely
/// to fail part-way; say it up front.
const LOW_MIB: u64 = 4 * 1024;

/// Prints the free MiB of each path's filesystem, with a warning when it is low.
pub(crate) fn report(root: &Path, stage: &str) {
    for path in [root.join("target"), std::env::temp_dir()] {
        let probe = if path.exists() {
            path.clone()
        } else {
            root.to_path_buf()
        };
        match free_mib(&probe) {
            Some(mib) if mib < LOW_MIB => eprintln!(
                "xtask: {stage}: only {mib} MiB free for {} (the real-guest tests need about {LOW_MIB} MiB)",
                path.display()
            ),
            Some(mib) => eprintln!("xtask: {stage}: {mib} MiB free for {}", path.display()),
            None => eprintln!(
                "xtask: {stage}: cannot read free space for {}",
                path.display()
            ),
        }
    }
}

fn free_mib(path: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["-P", "-B1M", "--output=avail"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}
