//! loopdev: loop devices for disk images under banger's state directory, with
//! `losetup`. The backing file is opened and checked by `owner::open_checked` (under the
//! state directory, a regular file, owned by the owner uid, no links), and `losetup` is
//! handed `/proc/<pid>/fd/<n>` so it attaches exactly the checked file. The device node
//! is then given to the owner so the unprivileged daemon can use it; detaching gives it
//! back to root. A device is detached only if its backing file is under the state
//! directory, so the daemon cannot detach the host's other loop devices.

use std::path::{Path, PathBuf};

use banger_proto::helper::HelperError;
use nix::unistd::{Uid, fchownat};
use serde::Deserialize;

use crate::link::failed;
use crate::owner::open_checked;
use crate::tool::{Tool, ToolRunner};
use crate::validate::{is_under, loop_device};

/// Where a loop device lives and what may back it.
#[derive(Debug, Clone, Copy)]
pub struct LoopScope<'a> {
    pub state_dir: &'a Path,
    pub owner_uid: u32,
    /// `/dev` (a temp dir in tests).
    pub dev: &'a Path,
    /// `/sys` (a temp dir in tests).
    pub sys: &'a Path,
}

/// The device names in `losetup --json --list` output.
pub fn parse_losetup_names(json: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Listing {
        #[serde(default)]
        loopdevices: Vec<Device>,
    }
    #[derive(Deserialize)]
    struct Device {
        name: String,
    }
    // losetup prints nothing at all when no device matches.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let listing: Listing = serde_json::from_slice(json)
        .map_err(|e| format!("unreadable `losetup --json` output: {e}"))?;
    Ok(listing.loopdevices.into_iter().map(|d| d.name).collect())
}

/// The backing file the kernel reports for a loop device's sysfs `backing_file` text,
/// without the ` (deleted)` mark of an unlinked file.
pub fn parse_backing_file(text: &str) -> PathBuf {
    let line = text.trim_end_matches('\n');
    PathBuf::from(line.strip_suffix(" (deleted)").unwrap_or(line))
}

fn set_device_owner(
    op: &str,
    scope: &LoopScope<'_>,
    device: &Path,
    uid: u32,
) -> Result<(), HelperError> {
    let number = loop_device(device)?;
    let node = scope.dev.join(format!("loop{number}"));
    // Device nodes are not links; AT_SYMLINK_NOFOLLOW keeps it that way.
    fchownat(
        nix::fcntl::AT_FDCWD,
        &node,
        Some(Uid::from_raw(uid)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|errno| failed(op, format!("chown {}: {errno}", node.display())))
}

/// Attaches `path` to a loop device (or finds the one it is already attached to) and
/// returns the device path, owned by the owner uid.
pub fn attach_loop(
    tools: &dyn ToolRunner,
    scope: &LoopScope<'_>,
    path: &Path,
) -> Result<PathBuf, HelperError> {
    const OP: &str = "attach_loop";
    let file = open_checked(OP, path, &[scope.state_dir])?;
    if !file.is_regular() {
        return Err(HelperError::InvalidPath {
            path: file.path,
            reason: "not a regular file".to_owned(),
        });
    }
    if file.stat.st_uid != scope.owner_uid {
        return Err(HelperError::InvalidPath {
            path: file.path,
            reason: format!("owned by uid {}, not the owner", file.stat.st_uid),
        });
    }
    let backing = file.proc_path();
    // `-j` compares device and inode, so this finds attachments of this very file.
    let listing = tools
        .run(
            &Tool::new("losetup")
                .args(["--json", "--list", "--output", "NAME", "--associated"])
                .arg(&backing),
        )
        .map_err(|e| failed(OP, e))?;
    let existing = parse_losetup_names(&listing.stdout).map_err(|e| failed(OP, e))?;
    let device = match existing.into_iter().next() {
        Some(device) => device,
        None => {
            let out = tools
                .run(
                    &Tool::new("losetup")
                        .args(["--find", "--show"])
                        .arg(&backing),
                )
                .map_err(|e| failed(OP, e))?;
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let device = PathBuf::from(device);
    set_device_owner(OP, scope, &device, scope.owner_uid)?;
    // Keep the descriptor open until losetup is done with the /proc path.
    drop(file);
    Ok(device)
}

/// Detaches `device` if it is attached to a file under the state directory; a device
/// that is not attached is already detached.
pub fn detach_loop(
    tools: &dyn ToolRunner,
    scope: &LoopScope<'_>,
    device: &Path,
) -> Result<(), HelperError> {
    const OP: &str = "detach_loop";
    let number = loop_device(device)?;
    let backing_path = scope
        .sys
        .join(format!("block/loop{number}/loop/backing_file"));
    let backing = match std::fs::read_to_string(&backing_path) {
        Ok(text) => parse_backing_file(&text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(failed(OP, format!("{}: {error}", backing_path.display()))),
    };
    let roots: Vec<PathBuf> = scope.state_dir.canonicalize().into_iter().collect();
    if !is_under(&backing, &roots) {
        return Err(HelperError::PathOutsideDirs { path: backing });
    }
    tools
        .run(&Tool::new("losetup").arg("--detach").arg(device))
        .map_err(|e| failed(OP, e))?;
    set_device_owner(OP, scope, device, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTools;
    use std::os::unix::fs::MetadataExt;

    struct Fixture {
        _dir: tempfile::TempDir,
        state: PathBuf,
        dev: PathBuf,
        sys: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let dev = dir.path().join("dev");
        let sys = dir.path().join("sys");
        for d in [&state, &dev, &sys] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(dev.join("loop7"), b"").unwrap();
        std::fs::write(state.join("disk.img"), b"").unwrap();
        Fixture {
            state: state.canonicalize().unwrap(),
            dev,
            sys,
            _dir: dir,
        }
    }

    fn scope(f: &Fixture) -> LoopScope<'_> {
        LoopScope {
            state_dir: &f.state,
            owner_uid: nix::unistd::getuid().as_raw(),
            dev: &f.dev,
            sys: &f.sys,
        }
    }

    #[test]
    fn losetup_output_parses() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("\n", &[]),
            (
                r#"{"loopdevices":[{"name":"/dev/loop3"}]}"#,
                &["/dev/loop3"],
            ),
            (r#"{"loopdevices":[]}"#, &[]),
        ];
        for (json, expected) in cases {
            assert_eq!(
                parse_losetup_names(json.as_bytes()).unwrap(),
                *expected,
                "{json}"
            );
        }
        assert!(parse_losetup_names(b"loop0").is_err());
        assert_eq!(
            parse_backing_file("/s/disk.img (deleted)\n"),
            PathBuf::from("/s/disk.img")
        );
    }

    #[test]
    fn attach_passes_the_checked_file_and_owns_the_node() {
        let f = fixture();
        let scope = scope(&f);
        let tools = FakeTools::new().reply_prefix("losetup --find --show /proc/", "/dev/loop7\n");
        let device = attach_loop(&tools, &scope, &f.state.join("disk.img")).unwrap();
        assert_eq!(device, PathBuf::from("/dev/loop7"));
        let commands = tools.commands();
        let prefix = format!("/proc/{}/fd/", std::process::id());
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            commands[0].starts_with(&format!(
                "losetup --json --list --output NAME --associated {prefix}"
            )),
            "{commands:?}"
        );
        assert!(
            commands[1].starts_with(&format!("losetup --find --show {prefix}")),
            "{commands:?}"
        );

        // A device name losetup should never print is refused before any chown.
        let tools = FakeTools::new().reply_prefix("losetup --find --show", "/dev/sda\n");
        let error = attach_loop(&tools, &scope, &f.state.join("disk.img")).unwrap_err();
        assert!(matches!(error, HelperError::InvalidPath { .. }), "{error}");
    }

    #[test]
    fn attach_reuses_an_existing_device() {
        let f = fixture();
        let scope = scope(&f);
        let tools = FakeTools::new().reply_prefix(
            "losetup --json --list",
            r#"{"loopdevices":[{"name":"/dev/loop7"}]}"#,
        );
        let device = attach_loop(&tools, &scope, &f.state.join("disk.img")).unwrap();
        assert_eq!(device, PathBuf::from("/dev/loop7"));
        assert_eq!(tools.commands().len(), 1, "no second attach");
        let node = std::fs::metadata(f.dev.join("loop7")).unwrap();
        assert_eq!(node.uid(), nix::unistd::getuid().as_raw());
    }

    #[test]
    fn attach_refuses_what_is_not_the_owners_image() {
        let f = fixture();
        let mut other = scope(&f);
        other.owner_uid = nix::unistd::getuid().as_raw() + 1;
        let error = attach_loop(&FakeTools::new(), &other, &f.state.join("disk.img")).unwrap_err();
        assert!(error.to_string().contains("not the owner"), "{error}");

        let scope = scope(&f);
        let error = attach_loop(&FakeTools::new(), &scope, &f.state).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let error = attach_loop(&FakeTools::new(), &scope, Path::new("/etc/hostname")).unwrap_err();
        assert!(
            matches!(error, HelperError::PathOutsideDirs { .. }),
            "{error}"
        );
    }

    #[test]
    fn detach_checks_the_backing_file() {
        let f = fixture();
        let scope = scope(&f);
        let loop_dir = f.sys.join("block/loop7/loop");

        // Not attached: nothing to do.
        let tools = FakeTools::new();
        detach_loop(&tools, &scope, Path::new("/dev/loop7")).unwrap();
        assert!(tools.commands().is_empty());

        // Backed by a file outside the state dir: refused.
        std::fs::create_dir_all(&loop_dir).unwrap();
        std::fs::write(
            loop_dir.join("backing_file"),
            "/var/lib/snapd/snaps/core.snap\n",
        )
        .unwrap();
        let error = detach_loop(&tools, &scope, Path::new("/dev/loop7")).unwrap_err();
        assert!(
            matches!(error, HelperError::PathOutsideDirs { .. }),
            "{error}"
        );
        assert!(tools.commands().is_empty());

        // Backed by (a since deleted) image under the state dir: detached.
        let backing = format!("{} (deleted)\n", f.state.join("disk.img").display());
        std::fs::write(loop_dir.join("backing_file"), backing).unwrap();
        let result = detach_loop(&tools, &scope, Path::new("/dev/loop7"));
        assert_eq!(tools.commands(), ["losetup --detach /dev/loop7"]);
        // Giving the node back to root needs root.
        if nix::unistd::geteuid().is_root() {
            result.unwrap();
        }

        assert!(matches!(
            detach_loop(&tools, &scope, Path::new("/dev/sda")),
            Err(HelperError::InvalidPath { .. })
        ));
    }
}
