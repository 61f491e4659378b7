//! `image import` against a real registry (Debian's `docker-registry` on a random
//! loopback port), filled by the tests with images they build: a multi-layer image with
//! whiteouts, an opaque directory, hard links, symlinks, owners, setuid bits and
//! extended attributes, checked in the resulting ext4 with debugfs; an index resolved
//! to linux/amd64; a second image on the same base reusing the cached layer; and a
//! re-import that finds the first result.

mod common;

use std::path::Path;
use std::sync::Arc;

use banger_e2e::registry::{Blob, LayerBuilder, Registry, image_config};
use banger_exec::SystemRunner;
use banger_image::ImageService;
use common::{RecordingProgress, assert_fsck_clean, debugfs, owner_and_mode};

/// A service with its own cache and state under `dir`.
fn service(dir: &Path) -> ImageService {
    ImageService::new(dir.join("cache"), dir.join("cache"), Arc::new(SystemRunner))
        .with_user_images_dir(dir.join("state/images"))
}

/// What every test here needs: a registry to push to, and apt for the base layer's
/// busybox.
macro_rules! require_registry_and_apt {
    () => {
        banger_requires::require!(
            Tool(banger_e2e::registry::REGISTRY_PROGRAM),
            Tool("apt-get"),
            Tool("dpkg-deb"),
            Tool("mkfs.ext4"),
            Tool("debugfs"),
            AptLists
        )
    };
}

/// The base layer: a small root with the things later layers change.
fn base_layer() -> Blob {
    LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", 0o644, b"ID=test\n")
        .file("etc/motd-old", 0o644, b"remove me\n")
        .dir("opt/junk", 0o755)
        .file("opt/junk/a", 0o644, b"hidden by the opaque marker\n")
        .dir("usr/bin", 0o755)
        .file("usr/bin/tool", 0o755, b"#!/bin/sh\necho tool\n")
        .hardlink("usr/bin/tool-alias", "usr/bin/tool")
        .symlink("bin", "usr/bin")
        .char_device("dev/console")
        .gzip()
}

/// The top layer: whiteouts, an opaque directory, owners, setuid, xattrs.
fn top_layer() -> Blob {
    LayerBuilder::new()
        .file("etc/.wh.motd-old", 0o644, b"")
        .file("opt/junk/.wh..wh..opq", 0o644, b"")
        .file("opt/junk/b", 0o644, b"new\n")
        .owned_file("home/user/notes", 0o600, (1000, 1000), b"mine\n")
        .file("usr/bin/sudo-ish", 0o4755, b"setuid\n")
        .file("bin/through-link", 0o755, b"via the bin symlink\n")
        .file_with_xattrs(
            "usr/bin/ping-ish",
            0o755,
            b"caps\n",
            &[
                ("security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
                ("user.origin", b"banger-test"),
            ],
        )
        .zstd()
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_layer_import_keeps_what_the_layers_say() {
    require_registry_and_apt!();
    let registry = Registry::start().unwrap();
    let base = base_layer();
    let config = image_config(&["PATH=/usr/bin:/bin", "GREETING=hello world"]);
    registry
        .push("test/layers", "v1", &config, &[base.clone(), top_layer()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = service(dir.path());
    let progress = RecordingProgress::default();
    let reference = format!("{}/test/layers:v1", registry.host());
    let outcome = images
        .import_oci(&reference, "layers", false, &progress)
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", banger_image::error_chain(&e), registry.log()));
    assert!(!outcome.reused);
    assert_eq!(outcome.skipped_devices, vec!["dev/console".to_string()]);
    assert_eq!(outcome.layers.len(), 2);
    assert!(
        outcome.resolved.contains("@sha256:"),
        "{}",
        outcome.resolved
    );
    assert_eq!(
        progress.stages_done(),
        [
            "resolve manifest",
            "download layers",
            "flatten layers",
            "prepare guest",
            "mkfs.ext4"
        ]
    );
    let image = &outcome.artifact.path;
    assert!(image.starts_with(dir.path().join("state/images")));
    assert_fsck_clean(image).await;

    // Whiteouts and the opaque directory.
    let root = debugfs(image, "ls -p /etc").await;
    assert!(
        root.contains("os-release") && !root.contains("motd-old"),
        "{root}"
    );
    let junk = debugfs(image, "ls -p /opt/junk").await;
    assert!(junk.contains("/b/") && !junk.contains("/a/"), "{junk}");
    // A device node never reaches the image.
    assert!(!debugfs(image, "ls -p /dev").await.contains("console"));
    // Ownership, setuid, a file written through the `bin -> usr/bin` symlink.
    assert_eq!(
        owner_and_mode(image, "/home/user/notes").await,
        (1000, 1000, 0o600)
    );
    assert_eq!(
        owner_and_mode(image, "/usr/bin/sudo-ish").await,
        (0, 0, 0o4755)
    );
    assert!(
        debugfs(image, "ls -p /usr/bin")
            .await
            .contains("through-link")
    );
    assert!(debugfs(image, "stat /bin").await.contains("Type: symlink"));
    // The hard link shares the inode (two links).
    let tool = debugfs(image, "stat /usr/bin/tool").await;
    assert!(tool.contains("Links: 2"), "{tool}");
    // Extended attributes: mkfs keeps the capability, debugfs adds the rest.
    let xattrs = debugfs(image, "ea_list /usr/bin/ping-ish").await;
    assert!(xattrs.contains("security.capability"), "{xattrs}");
    assert!(
        xattrs.contains("user.origin") && xattrs.contains("banger-test"),
        "{xattrs}"
    );
    // The guest setup: banger's init as /sbin/init, busybox, the image's environment.
    let init = debugfs(image, "stat /sbin/init").await;
    assert!(init.contains("/usr/lib/banger/init"), "{init}");
    let env = debugfs(image, "cat /etc/banger/image.env").await;
    assert!(env.contains("export GREETING='hello world'"), "{env}");
    assert!(
        debugfs(image, "stat /usr/lib/banger/busybox")
            .await
            .contains("Type: regular")
    );

    // Cached layers are read-only files of the cache, never setuid.
    for entry in std::fs::read_dir(dir.path().join("cache/oci/layers")).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o444, "{}", entry.path().display());
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache/oci/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // The same reference again: the published image is found, nothing is rebuilt.
    let again = images
        .import_oci(&reference, "layers", false, &RecordingProgress::default())
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.artifact.path, outcome.artifact.path);

    // Another image on the same base: the base layer comes from the cache.
    let other_top = LayerBuilder::new()
        .file("etc/other", 0o644, b"other\n")
        .gzip();
    registry
        .push("test/other", "latest", &config, &[base, other_top])
        .unwrap();
    let progress = RecordingProgress::default();
    let other = images
        .import_oci(
            &format!("{}/test/other", registry.host()),
            "other",
            false,
            &progress,
        )
        .await
        .unwrap();
    assert!(!other.reused);
    let events = progress.events.lock().unwrap().join("\n");
    assert!(events.contains("2 layers (1 from the cache)"), "{events}");
    assert!(
        debugfs(&other.artifact.path, "cat /etc/other")
            .await
            .contains("other")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_resolves_to_linux_amd64() {
    require_registry_and_apt!();
    let registry = Registry::start().unwrap();
    let config = image_config(&[]);
    let amd64 = LayerBuilder::new().file("arch", 0o644, b"amd64\n").gzip();
    let arm64 = LayerBuilder::new().file("arch", 0o644, b"arm64\n").gzip();
    let amd64_manifest = registry
        .push("test/multi", "amd64", &config, std::slice::from_ref(&amd64))
        .unwrap();
    let arm64_manifest = registry
        .push("test/multi", "arm64", &config, std::slice::from_ref(&arm64))
        .unwrap();
    let manifest_size = |tag: &str| -> usize {
        let (_, _, body) = registry
            .request(
                "GET",
                &format!("/v2/test/multi/manifests/{tag}"),
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                &[],
            )
            .unwrap();
        body.len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm64_manifest,
             "size": manifest_size("arm64"), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64_manifest,
             "size": manifest_size("amd64"), "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    registry
        .put_manifest(
            "test/multi",
            "latest",
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = service(dir.path())
        .import_oci(
            &format!("{}/test/multi:latest", registry.host()),
            "multi",
            false,
            &RecordingProgress::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", banger_image::error_chain(&e)));
    assert!(
        outcome.resolved.ends_with(&amd64_manifest),
        "{}",
        outcome.resolved
    );
    assert!(
        debugfs(&outcome.artifact.path, "cat /arch")
            .await
            .contains("amd64")
    );
}
