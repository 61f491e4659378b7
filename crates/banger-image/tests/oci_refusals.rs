//! Safe extraction and download integrity against a real registry: each crafted image
//! (hostile layer names, links and whiteouts, a digest mismatch, a layer larger than
//! declared, a decompression bomb, an unknown media type, a truncated download) is
//! pushed to `docker-registry` and imported; the import must fail with an error naming
//! the entry or blob, and leave no image, no staging directory and no partial file. A
//! download cut short once is resumed with a `Range` request and succeeds.

mod common;

use std::path::Path;
use std::sync::Arc;

use banger_e2e::registry::{Blob, Fault, FaultyProxy, LayerBuilder, Registry, image_config};
use banger_exec::SystemRunner;
use banger_image::{ImageService, error_chain};
use common::RecordingProgress;

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

/// Nothing published, nothing staged, nothing half-downloaded.
fn assert_nothing_left(dir: &Path, case: &str) {
    let images = dir.join("state/images");
    let leftovers: Vec<String> = std::fs::read_dir(&images)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "keys")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "{case}: left in the image store: {leftovers:?}"
    );
    for sub in ["cache/oci/blobs/sha256", "cache/oci/layers"] {
        let partial: Vec<String> = std::fs::read_dir(dir.join(sub))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".partial"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            partial.is_empty(),
            "{case}: partial files in {sub}: {partial:?}"
        );
    }
}

fn base() -> Blob {
    LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", 0o644, b"ID=test\n")
        .gzip()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_by_entry() {
    require_registry_and_apt!();
    let registry = Registry::start().unwrap();
    let config = image_config(&[]);
    let cases: Vec<(&str, Blob, &str)> = vec![
        (
            "traversal",
            LayerBuilder::new()
                .file("../../etc/evil", 0o644, b"x")
                .gzip(),
            "layer entry \"../../etc/evil\" is refused: `..` in the path",
        ),
        (
            "symlink-parent",
            LayerBuilder::new()
                .symlink("escape", "../../../../tmp")
                .file("escape/owned", 0o644, b"x")
                .gzip(),
            "layer entry \"escape/owned\" is refused: the symlink escape in its parent path points outside the image",
        ),
        (
            "hardlink-outside",
            LayerBuilder::new()
                .hardlink("shadow", "../../etc/shadow")
                .gzip(),
            "layer entry \"shadow\" is a hard link to \"../../etc/shadow\", outside the image",
        ),
        (
            "hardlink-early",
            LayerBuilder::new()
                .hardlink("early", "later")
                .file("later", 0o644, b"x")
                .gzip(),
            "layer entry \"early\" is a hard link to \"later\", which is not a file extracted before it",
        ),
        (
            "whiteout-escape",
            LayerBuilder::new()
                .file("etc/../../.wh.etc", 0o644, b"")
                .gzip(),
            "layer entry \"etc/../../.wh.etc\" is refused: `..` in the path",
        ),
    ];
    for (name, hostile, expected) in cases {
        registry
            .push(
                &format!("hostile/{name}"),
                "latest",
                &config,
                &[base(), hostile],
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let error = service(dir.path())
            .import_oci(
                &format!("{}/hostile/{name}", registry.host()),
                name,
                false,
                &RecordingProgress::default(),
            )
            .await
            .map(|o| o.artifact.path)
            .unwrap_err();
        let text = error_chain(&error);
        assert!(text.contains(expected), "{name}: {text}");
        assert_nothing_left(dir.path(), name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_blobs_and_documents_are_refused() {
    require_registry_and_apt!();
    let registry = Registry::start().unwrap();
    let config = image_config(&[]);

    // A digest mismatch: the registry's stored bytes are changed after the push.
    let victim = LayerBuilder::new().file("data", 0o644, &[7u8; 4096]).gzip();
    registry
        .push(
            "bad/digest",
            "latest",
            &config,
            std::slice::from_ref(&victim),
        )
        .unwrap();
    let hex = victim.digest().trim_start_matches("sha256:").to_string();
    let stored = registry
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    // A layer larger than its manifest says.
    let big = LayerBuilder::new()
        .file("data", 0o644, &[1u8; 20000])
        .gzip();
    registry.upload("bad/size", &big).unwrap();
    registry.upload("bad/size", &config).unwrap();
    let mut small_descriptor = serde_json::json!({
        "mediaType": big.media_type, "digest": big.digest(), "size": big.bytes.len() - 100,
    });
    let manifest = |layer: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config.media_type, "digest": config.digest(), "size": config.bytes.len()},
            "layers": [layer],
        }))
        .unwrap()
    };
    let size_pushed = registry.put_manifest(
        "bad/size",
        "latest",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest(small_descriptor.clone()),
    );

    // A layer media type banger does not know.
    registry.upload("bad/media", &big).unwrap();
    registry.upload("bad/media", &config).unwrap();
    small_descriptor["size"] = big.bytes.len().into();
    small_descriptor["mediaType"] = "application/vnd.example.mystery.layer".into();
    registry
        .put_manifest(
            "bad/media",
            "latest",
            "application/vnd.oci.image.manifest.v1+json",
            &manifest(small_descriptor),
        )
        .unwrap();

    // A decompression bomb: 64 MiB of zeros in a small gzip, against an 8 MiB limit.
    let bomb = LayerBuilder::new()
        .file("zeros", 0o644, &vec![0u8; 64 << 20])
        .gzip();
    registry
        .push("bad/bomb", "latest", &config, &[bomb])
        .unwrap();

    let mut cases: Vec<(&str, String, u64)> = vec![
        (
            "bad/digest",
            format!("layer {} has sha256 sha256:", victim.digest()),
            1 << 30,
        ),
        (
            "bad/media",
            "unknown layer media type \"application/vnd.example.mystery.layer\"".to_string(),
            1 << 30,
        ),
        (
            "bad/bomb",
            "the layers expand to more than 8388608 bytes".to_string(),
            8 << 20,
        ),
    ];
    match size_pushed {
        Ok(_) => cases.push((
            "bad/size",
            format!(
                "layer {} is larger than its declared {} bytes",
                big.digest(),
                big.bytes.len() - 100
            ),
            1 << 30,
        )),
        Err(error) => panic!("the registry refused a manifest with a short size: {error}"),
    }
    for (repository, expected, limit) in cases {
        let dir = tempfile::tempdir().unwrap();
        let error = service(dir.path())
            .with_import_limit(limit)
            .import_oci(
                &format!("{}/{repository}", registry.host()),
                "bad",
                false,
                &RecordingProgress::default(),
            )
            .await
            .map(|o| o.artifact.path)
            .unwrap_err();
        let text = error_chain(&error);
        assert!(text.contains(&expected), "{repository}: {text}");
        assert_nothing_left(dir.path(), repository);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_download_is_resumed_and_one_that_never_completes_is_not_published() {
    require_registry_and_apt!();
    let registry = Registry::start().unwrap();
    let config = image_config(&[]);
    // Random bytes do not compress: the layer blob is ~256 KiB.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..256 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let layer = LayerBuilder::new().file("noise", 0o644, &noise).gzip();
    registry
        .push("cut/layer", "latest", &config, std::slice::from_ref(&layer))
        .unwrap();

    // Cut once, after 100 KiB: the client resumes from where it stopped.
    let proxy = FaultyProxy::start(
        &registry,
        &layer.digest(),
        Fault::Truncate {
            body_bytes: 100 << 10,
            times: 1,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = service(dir.path())
        .import_oci(
            &format!("{}/cut/layer", proxy.host()),
            "cut",
            false,
            &RecordingProgress::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert!(outcome.artifact.path.exists());
    let ranges: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.to_ascii_lowercase().contains("range: bytes="))
        .collect();
    assert_eq!(ranges.len(), 1, "{:?}", proxy.requests());
    assert!(
        ranges[0].contains(&format!("bytes={}-", 100 << 10)),
        "{}",
        ranges[0]
    );

    // Cut every time: the import gives up, and nothing is published.
    let proxy = FaultyProxy::start(
        &registry,
        &layer.digest(),
        Fault::Truncate {
            body_bytes: 1000,
            times: usize::MAX,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let error = service(dir.path())
        .import_oci(
            &format!("{}/cut/layer", proxy.host()),
            "cut",
            false,
            &RecordingProgress::default(),
        )
        .await
        .map(|o| o.artifact.path)
        .unwrap_err();
    let text = error_chain(&error);
    assert!(text.contains("after 4 attempts"), "{text}");
    let images = dir.path().join("state/images");
    assert!(
        std::fs::read_dir(&images).map(|e| e.count()).unwrap_or(0) == 0,
        "nothing published"
    );
}
