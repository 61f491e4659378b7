//! devices: kernel features banger's networking and image handling rely on: the tun
//! device, bridge support, loop devices, and the libarchive library `mkfs.ext4 -d` loads
//! to read tarballs. Nothing is created or loaded here; the checks only look (a bridge is
//! never added to find out whether bridges work).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};

use crate::Check;

/// What a device path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceNode {
    Missing,
    /// Something other than a character device.
    NotCharDevice,
    CharDevice {
        /// The permission bits, e.g. `0o600`.
        mode: u32,
    },
}

/// Looks at a device path without opening it.
pub fn inspect_device(path: &Path) -> DeviceNode {
    match std::fs::metadata(path) {
        Err(_) => DeviceNode::Missing,
        Ok(meta) if !meta.file_type().is_char_device() => DeviceNode::NotCharDevice,
        Ok(meta) => DeviceNode::CharDevice {
            mode: meta.permissions().mode() & 0o7777,
        },
    }
}

/// The `/dev/net/tun` check.
pub fn check_tun() -> Check {
    judge_tun(inspect_device(Path::new("/dev/net/tun")))
}

/// The tun check for what the node is; pure.
pub fn judge_tun(node: DeviceNode) -> Check {
    const NAME: &str = "tun";
    match node {
        DeviceNode::CharDevice { mode } if mode & 0o006 == 0o006 => Check::pass(
            NAME,
            format!("/dev/net/tun present (mode {mode:04o}, usable by everyone)"),
        ),
        // 0600 is fine: the root helper opens taps and hands them to the VMM.
        DeviceNode::CharDevice { mode } => Check::pass(
            NAME,
            format!(
                "/dev/net/tun present (mode {mode:04o}: only root opens it, so the root \
                 helper creates taps for guests)"
            ),
        ),
        DeviceNode::NotCharDevice => Check::warn(
            NAME,
            "/dev/net/tun exists but is not a character device; guests get no network",
            "recreate it: `sudo rm /dev/net/tun && sudo mknod /dev/net/tun c 10 200`",
        ),
        DeviceNode::Missing => Check::warn(
            NAME,
            "/dev/net/tun is missing; guests get no network",
            "load the tun module: `sudo modprobe tun` (the kernel needs CONFIG_TUN)",
        ),
    }
}

/// The `/dev/loop-control` check.
pub fn check_loop() -> Check {
    judge_loop(inspect_device(Path::new("/dev/loop-control")))
}

/// The loop device check for what the node is; pure.
pub fn judge_loop(node: DeviceNode) -> Check {
    const NAME: &str = "loop";
    match node {
        DeviceNode::CharDevice { mode } => {
            Check::pass(NAME, format!("/dev/loop-control present (mode {mode:04o})"))
        }
        DeviceNode::NotCharDevice => Check::warn(
            NAME,
            "/dev/loop-control is not a character device; loop devices are unavailable",
            "recreate it: `sudo rm /dev/loop-control && sudo mknod /dev/loop-control c 10 237`",
        ),
        DeviceNode::Missing => Check::warn(
            NAME,
            "/dev/loop-control is missing; loop devices are unavailable",
            "load the loop module: `sudo modprobe loop` (the kernel needs CONFIG_BLK_DEV_LOOP)",
        ),
    }
}

/// How the kernel offers bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeSupport {
    /// `/sys/module/bridge` exists: built in or loaded.
    Loaded,
    /// `modinfo bridge` found a module that loads when the first bridge is added.
    Module,
    Unavailable,
}

/// The bridge check: `/sys/module/bridge`, else `modinfo bridge`.
pub async fn check_bridge(runner: &dyn CommandRunner) -> Check {
    let support = if Path::new("/sys/module/bridge").exists() {
        BridgeSupport::Loaded
    } else {
        let modinfo = Cmd::new("modinfo")
            .arg("bridge")
            .timeout(Duration::from_secs(10));
        match runner.run(&modinfo).await {
            Ok(_) => BridgeSupport::Module,
            Err(_) => BridgeSupport::Unavailable,
        }
    };
    judge_bridge(support)
}

/// The bridge check for the support found; pure.
pub fn judge_bridge(support: BridgeSupport) -> Check {
    const NAME: &str = "bridge";
    match support {
        BridgeSupport::Loaded => Check::pass(NAME, "bridge support is in the kernel"),
        BridgeSupport::Module => Check::pass(
            NAME,
            "the bridge module is installed and loads when the first bridge is added",
        ),
        BridgeSupport::Unavailable => Check::warn(
            NAME,
            "no bridge support found (no /sys/module/bridge, `modinfo bridge` fails); guests \
             cannot share a network",
            "install the kernel's modules package or use a kernel with CONFIG_BRIDGE",
        ),
    }
}

/// Where Debian and other distributions put shared libraries.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// `mkfs.ext4 -d` loads libarchive at run time only for tarballs, so its absence shows up
/// only when an image build fails; looked for here instead.
pub fn check_libarchive() -> Check {
    let found = LIBRARY_DIRS
        .iter()
        .map(|dir| Path::new(dir).join("libarchive.so.13"))
        .find(|path| path.exists());
    judge_libarchive(found.as_deref())
}

/// The libarchive check for where (whether) it was found; pure.
pub fn judge_libarchive(found: Option<&Path>) -> Check {
    const NAME: &str = "libarchive";
    match found {
        Some(path) => Check::pass(NAME, format!("{} (read by mkfs.ext4 -d)", path.display())),
        None => Check::fail(
            NAME,
            "libarchive.so.13 not found; `mkfs.ext4 -d` cannot read the tarballs image \
             builds produce",
            "sudo apt-get install libarchive13",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;
    use crate::tools::tests::{FakeAnswer, FakeRunner};

    #[test]
    fn tun_table() {
        let cases = [
            (DeviceNode::CharDevice { mode: 0o666 }, Status::Pass, "0666"),
            (
                DeviceNode::CharDevice { mode: 0o600 },
                Status::Pass,
                "root helper",
            ),
            (
                DeviceNode::NotCharDevice,
                Status::Warn,
                "not a character device",
            ),
            (DeviceNode::Missing, Status::Warn, "missing"),
        ];
        for (node, status, word) in cases {
            let check = judge_tun(node);
            assert_eq!(check.status, status, "{check:?}");
            assert!(check.detail.contains(word), "{check:?}");
        }
    }

    #[test]
    fn loop_table() {
        let cases = [
            (DeviceNode::CharDevice { mode: 0o600 }, Status::Pass, "0600"),
            (
                DeviceNode::NotCharDevice,
                Status::Warn,
                "not a character device",
            ),
            (DeviceNode::Missing, Status::Warn, "missing"),
        ];
        for (node, status, word) in cases {
            let check = judge_loop(node);
            assert_eq!(check.status, status, "{check:?}");
            assert!(check.detail.contains(word), "{check:?}");
        }
    }

    #[test]
    fn inspect_device_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            inspect_device(&dir.path().join("absent")),
            DeviceNode::Missing
        );
        assert_eq!(inspect_device(&file), DeviceNode::NotCharDevice);
        assert!(matches!(
            inspect_device(Path::new("/dev/null")),
            DeviceNode::CharDevice { mode: 0o666 }
        ));
    }

    #[tokio::test]
    async fn bridge_and_libarchive() {
        assert_eq!(judge_bridge(BridgeSupport::Loaded).status, Status::Pass);
        assert_eq!(judge_bridge(BridgeSupport::Module).status, Status::Pass);
        assert_eq!(
            judge_bridge(BridgeSupport::Unavailable).status,
            Status::Warn
        );
        // Through a runner: modinfo is consulted only without /sys/module/bridge.
        let with_modinfo = FakeRunner::default().with("modinfo", FakeAnswer::Stdout("x".into()));
        let without = FakeRunner::default();
        let loaded = Path::new("/sys/module/bridge").exists();
        let expected_without = if loaded { Status::Pass } else { Status::Warn };
        assert_eq!(check_bridge(&with_modinfo).await.status, Status::Pass);
        assert_eq!(check_bridge(&without).await.status, expected_without);

        let path = Path::new("/usr/lib/x86_64-linux-gnu/libarchive.so.13");
        assert_eq!(judge_libarchive(Some(path)).status, Status::Pass);
        let missing = judge_libarchive(None);
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(
            missing.hint.as_deref(),
            Some("sudo apt-get install libarchive13")
        );
    }
}
