//! The `oci_manifest` target: what a registry answers for a manifest (an index, a
//! manifest, under any `Content-Type`) and the image config it points at.

use banger_image::oci::manifest::{
    self, Compression, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Document, ImageManifest,
    OCI_INDEX, OCI_MANIFEST, PLATFORM_ARCH, PLATFORM_OS,
};
use serde_json::{Value, json};

/// The `Content-Type`s a registry may send with a manifest.
const CONTENT_TYPES: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    "application/json",
    "application/json; charset=utf-8",
    "",
    "text/html",
];

/// The config media types a manifest may name (empty: not given).
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
    "",
];

/// `sha256:` and 64 lowercase hex digits, checked here independently of the parser.
fn is_digest(digest: &str) -> bool {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return false;
    };
    hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

fn descriptor(d: &Descriptor) -> Value {
    let mut value = json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    if let Some(p) = &d.platform {
        value["platform"] =
            json!({"architecture": p.architecture, "os": p.os, "variant": p.variant});
    }
    value
}

/// A document as a registry would send it, from what was parsed.
fn encode(document: &Document) -> (String, Vec<u8>) {
    let (media_type, value) = match document {
        Document::Index(entries) => (
            OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": entries.iter().map(descriptor).collect::<Vec<_>>()}),
        ),
        Document::Manifest(ImageManifest { config, layers }) => (
            OCI_MANIFEST,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config),
                   "layers": layers.iter().map(|(d, _)| descriptor(d)).collect::<Vec<_>>()}),
        ),
    };
    (
        media_type.to_owned(),
        serde_json::to_vec(&value).expect("a document encodes"),
    )
}

/// Panics when the parser breaks a promise: no panic on any bytes; every digest of what
/// parses is a sha256 digest; a manifest's config has a known config type and each
/// layer the compression its media type names; a document that declares its media type
/// is parsed as that kind; what parsed, sent again, parses the same; the platform chosen
/// from an index is a linux/amd64 entry of it; a config that parses is linux/amd64 (or
/// says nothing).
pub fn oci_manifest(data: &[u8]) {
    let declared = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned));
    for content_type in CONTENT_TYPES {
        let Ok(document) = manifest::parse(content_type, data) else {
            continue;
        };
        match &document {
            Document::Index(entries) => {
                if let Some(declared) = &declared {
                    assert!(
                        matches!(
                            declared.as_str(),
                            OCI_INDEX | DOCKER_LIST | "" | "application/json"
                        ),
                        "declared {declared:?}, parsed as an index"
                    );
                }
                for entry in entries {
                    assert!(is_digest(&entry.digest), "{entry:?}");
                }
                if let Ok(chosen) = manifest::select_platform(entries) {
                    assert!(entries.contains(chosen));
                    let platform = chosen.platform.as_ref().expect("a chosen platform");
                    assert_eq!(
                        (platform.os.as_str(), platform.architecture.as_str()),
                        (PLATFORM_OS, PLATFORM_ARCH)
                    );
                } else {
                    assert!(!entries.iter().any(|e| {
                        e.platform
                            .as_ref()
                            .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
                    }));
                }
            }
            Document::Manifest(parsed) => {
                if let Some(declared) = &declared {
                    assert!(
                        matches!(
                            declared.as_str(),
                            OCI_MANIFEST | DOCKER_MANIFEST | "" | "application/json"
                        ),
                        "declared {declared:?}, parsed as a manifest"
                    );
                }
                assert!(is_digest(&parsed.config.digest), "{:?}", parsed.config);
                assert!(
                    CONFIG_TYPES.contains(&parsed.config.media_type.as_str()),
                    "{:?}",
                    parsed.config
                );
                for (layer, compression) in &parsed.layers {
                    assert!(is_digest(&layer.digest), "{layer:?}");
                    assert_eq!(
                        manifest::layer_compression(&layer.media_type),
                        Some(*compression)
                    );
                    let suffix = match compression {
                        Compression::None => "tar",
                        Compression::Gzip => "gzip",
                        Compression::Zstd => "zstd",
                    };
                    assert!(layer.media_type.ends_with(suffix), "{layer:?}");
                }
            }
        }
        let (media_type, body) = encode(&document);
        let again = manifest::parse(&media_type, &body).expect("a parsed document parses again");
        assert_eq!(again, document, "sent again, it parses differently");
    }
    if let Ok(config) = manifest::parse_config(data) {
        assert!(config.os.is_empty() || config.os == PLATFORM_OS);
        assert!(config.architecture.is_empty() || config.architecture == PLATFORM_ARCH);
    }
}
