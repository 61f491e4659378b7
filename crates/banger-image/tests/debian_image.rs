//! Builds the real `debian-bookworm` golden image with mmdebstrap (minutes; the name
//! contains `debian` so nextest runs it in the `vm` profile) and checks the result:
//! ownership from the tarball, no build-time ssh host keys, banger's units enabled, a
//! clean fsck. A second pull finds the published image by key.

mod common;

use std::sync::Arc;
use std::time::Instant;

use banger_exec::SystemRunner;
use banger_image::{DEFAULT_IMAGE, GuestInit, ImageService};
use common::{RecordingProgress, assert_fsck_clean, debugfs, owner_and_mode, sizes};

#[tokio::test(flavor = "multi_thread")]
async fn debian_bookworm_image_builds() {
    banger_requires::require!(
        Tool("mmdebstrap"),
        Tool("apt-get"),
        Tool("mkfs.ext4"),
        Tool("debugfs"),
        Tool("e2fsck"),
        AptLists
    );
    if !banger_requires::is_root() {
        // mmdebstrap --mode=unshare
        banger_requires::require!(UserNamespaces);
    }
    let dir = tempfile::tempdir().unwrap();
    let service = ImageService::new(
        dir.path().join("cache"),
        dir.path().join("state"),
        Arc::new(SystemRunner),
    );
    let progress = RecordingProgress::default();
    let started = Instant::now();
    let image = service.pull_image(DEFAULT_IMAGE, &progress).await.unwrap();
    let build = started.elapsed();

    assert_eq!(image.init, GuestInit::Systemd);
    assert_eq!(image.size_bytes, 4 << 30);
    assert_eq!(
        progress.stages_done(),
        [
            "resolve packages",
            "fetch mise",
            "assemble rootfs",
            "configure rootfs",
            "mkfs.ext4"
        ]
    );
    assert_fsck_clean(&image.path).await;
    assert_eq!(
        owner_and_mode(&image.path, "/etc/shadow").await,
        (0, 42, 0o640)
    );
    assert_eq!(
        owner_and_mode(&image.path, "/usr/bin/sudo").await,
        (0, 0, 0o4755)
    );
    assert_eq!(
        owner_and_mode(&image.path, "/root/.ssh").await,
        (0, 0, 0o700)
    );
    let ssh = debugfs(&image.path, "ls /etc/ssh").await;
    assert!(
        !ssh.contains("ssh_host_"),
        "host keys left in the image:\n{ssh}"
    );
    assert!(
        debugfs(&image.path, "cat /etc/ssh/sshd_config.d/banger.conf")
            .await
            .contains("PasswordAuthentication no")
    );
    let wants = debugfs(
        &image.path,
        "ls /etc/systemd/system/multi-user.target.wants",
    )
    .await;
    for unit in [
        "banger-ssh-keys.service",
        "banger-agent.service",
        "banger-ready.service",
        "ssh.service",
    ] {
        assert!(wants.contains(unit), "{unit} not enabled:\n{wants}");
    }
    assert!(
        !wants.contains("docker.service"),
        "docker starts at boot:\n{wants}"
    );
    assert_eq!(debugfs(&image.path, "cat /etc/hostname").await, "banger\n");
    for binary in [
        "/usr/bin/git",
        "/usr/sbin/dockerd",
        "/usr/bin/gcc",
        "/usr/sbin/sshd",
        "/usr/bin/curl",
    ] {
        assert!(
            !debugfs(&image.path, &format!("stat {binary}"))
                .await
                .is_empty(),
            "{binary} missing"
        );
    }

    let started = Instant::now();
    let again = service
        .pull_image(DEFAULT_IMAGE, &RecordingProgress::default())
        .await
        .unwrap();
    assert_eq!(again, image);
    let (apparent, allocated) = sizes(&image.path);
    eprintln!(
        "debian-bookworm: build {:.0}s ({}), published pull {:.2}s, image {} MiB apparent, {} MiB allocated",
        build.as_secs_f64(),
        progress.timing_summary(),
        started.elapsed().as_secs_f64(),
        apparent >> 20,
        allocated >> 20
    );
}
