//! Builds the real `tiny` image from the host's apt sources and checks the ext4 file:
//! root-owned files, dropbear/git/busybox in merged-/usr, a clean fsck, and that the
//! binaries load with the image's own libraries and no ld.so.cache. Then measures the
//! warm paths: a rebuild with a warm .deb cache, and a pull of the published image.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use banger_exec::{Cmd, SystemRunner, run};
use banger_image::{GuestInit, ImageService, TINY_IMAGE};
use banger_requires::require;
use common::{RecordingProgress, assert_fsck_clean, debugfs, owner_and_mode, sizes};

#[tokio::test(flavor = "multi_thread")]
async fn tiny_image_builds_root_owned_ext4() {
    require!(
        Tool("apt-get"),
        Tool("apt-cache"),
        Tool("dpkg-deb"),
        Tool("mkfs.ext4"),
        Tool("debugfs"),
        Tool("e2fsck"),
        AptLists
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let service = ImageService::new(
        cache.clone(),
        dir.path().join("state"),
        Arc::new(SystemRunner),
    );
    let progress = RecordingProgress::default();
    let started = Instant::now();
    let image = service.pull_image(TINY_IMAGE, &progress).await.unwrap();
    let cold = started.elapsed();

    assert_eq!(image.name, TINY_IMAGE);
    assert_eq!(image.init, GuestInit::Busybox);
    assert_eq!(image.kernel, banger_image::DEFAULT_KERNEL);
    assert_eq!(image.size_bytes, 512 << 20);
    let file_name = image
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        file_name,
        format!(
            "sha256-{}.ext4",
            image.digest.strip_prefix("sha256:").unwrap()
        )
    );
    assert_eq!(
        progress.stages_done(),
        [
            "resolve packages",
            "download packages",
            "assemble rootfs",
            "mkfs.ext4"
        ]
    );
    assert_fsck_clean(&image.path).await;

    // Ownership from the tar, not from whoever ran the build.
    for (path, expected) in [
        ("/etc/shadow", (0, 0, 0o640)),
        ("/usr/sbin/dropbear", (0, 0, 0o755)),
        ("/usr/bin/git", (0, 0, 0o755)),
        ("/root", (0, 0, 0o700)),
        ("/tmp", (0, 0, 0o1777)),
        ("/etc/init.d/rcS", (0, 0, 0o755)),
    ] {
        assert_eq!(owner_and_mode(&image.path, path).await, expected, "{path}");
    }
    let root_listing = debugfs(&image.path, "ls -l /").await;
    for link in ["bin", "sbin", "lib", "lib64"] {
        assert!(
            root_listing.contains(&format!(" {link}")),
            "{link} missing in /:\n{root_listing}"
        );
    }
    let usr_bin = debugfs(&image.path, "ls /usr/bin").await;
    for file in ["busybox", "git", "sh", "wget"] {
        assert!(
            usr_bin.split_whitespace().any(|w| w == file),
            "{file} missing in /usr/bin"
        );
    }
    assert!(
        debugfs(&image.path, "stat /sbin/init")
            .await
            .contains("Type: symlink")
    );
    assert!(
        debugfs(&image.path, "stat /etc/nsswitch.conf")
            .await
            .is_empty()
    );
    assert!(
        !debugfs(&image.path, "ls /usr/share")
            .await
            .contains(" doc ")
    );

    check_binaries_load(&image.path, dir.path()).await;

    // Warm .deb cache, new state directory: no downloads, a fresh image file.
    let warm_service = ImageService::new(
        cache.clone(),
        dir.path().join("state2"),
        Arc::new(SystemRunner),
    );
    let warm_progress = RecordingProgress::default();
    let started = Instant::now();
    let rebuilt = warm_service
        .pull_image(TINY_IMAGE, &warm_progress)
        .await
        .unwrap();
    let warm = started.elapsed();
    // The tar is deterministic, but mkfs.ext4 stamps a fresh UUID and times.
    assert_eq!(rebuilt.size_bytes, image.size_bytes);

    // Published already: found by key, nothing rebuilt.
    let started = Instant::now();
    let again_progress = RecordingProgress::default();
    let again = service
        .pull_image(TINY_IMAGE, &again_progress)
        .await
        .unwrap();
    let published = started.elapsed();
    assert_eq!(again, image);
    assert_eq!(again_progress.stages_done(), ["resolve packages"]);

    let (apparent, allocated) = sizes(&image.path);
    eprintln!(
        "tiny: cold {:.1}s ({}), warm debs {:.1}s ({}), published {:.2}s; image {} MiB apparent, {} MiB allocated",
        cold.as_secs_f64(),
        progress.timing_summary(),
        warm.as_secs_f64(),
        warm_progress.timing_summary(),
        published.as_secs_f64(),
        apparent >> 20,
        allocated >> 20
    );
}

/// Copies the image's files out (`debugfs rdump`) and runs dropbear and git inside them
/// with `unshare --map-root-user --root`: this proves the dynamic loader finds every
/// library in the image's multiarch directories without an ld.so.cache. Skipped (with
/// a recorded skip, fatal on CI) where user namespaces are not available.
async fn check_binaries_load(image: &Path, scratch: &Path) {
    let root = scratch.join("rdump");
    fs_err::create_dir_all(&root).unwrap();
    let dumped = run(&Cmd::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", root.display()))
        .arg(image))
    .await;
    assert!(dumped.is_ok(), "{dumped:?}");
    assert!(!root.join("etc/ld.so.cache").exists());
    // git opens /dev/null at startup; an empty file stands in for the device here.
    fs_err::write(root.join("dev/null"), b"").unwrap();
    if let Some(reason) = banger_requires::Req::UserNamespaces.missing() {
        banger_requires::record_skip(Some("loading binaries in the image"), &reason);
        return;
    }
    for (binary, args) in [
        ("/usr/bin/git", vec!["--version"]),
        ("/usr/sbin/dropbear", vec!["-V"]),
        ("/usr/bin/dbclient", vec!["-V"]),
    ] {
        if !root.join(binary.trim_start_matches('/')).exists() {
            continue;
        }
        let out = run(&Cmd::new("unshare")
            .arg("--map-root-user")
            .arg(format!("--root={}", root.display()))
            .arg(binary)
            .args(args))
        .await
        .unwrap_or_else(|error| panic!("{binary} does not run in the image: {error}"));
        let text = format!("{}{}", out.stdout_text(), out.stderr_text());
        assert!(
            !text.contains("error while loading shared libraries"),
            "{binary}: {text}"
        );
    }
}
