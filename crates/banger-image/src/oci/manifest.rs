//! The JSON documents of an image: indexes (manifest lists), manifests and the image
//! config, in both the OCI and the Docker v2 schema 2 media types. Only the fields banger
//! uses are read. Which media types are accepted is decided here, so an unknown one is
//! refused by name before anything is downloaded. Pure.

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What the `Accept` header of a manifest request offers, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The platform banger's guests run.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A manifest or an index, as the registry returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Index(Vec<Descriptor>),
    Manifest(ImageManifest),
}

/// An image manifest: the config blob and the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<(Descriptor, Compression)>,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("unknown manifest media type {0:?}")]
    UnknownMediaType(String),
    #[error("unknown layer media type {media_type:?} (layer {digest})")]
    UnknownLayerType { media_type: String, digest: String },
    #[error("unknown config media type {0:?}")]
    UnknownConfigType(String),
    #[error("the manifest is not valid JSON: {0}")]
    Json(String),
    #[error("the image has no linux/amd64 variant (it has: {0})")]
    NoPlatform(String),
    #[error("invalid digest {0:?} in the manifest")]
    BadDigest(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Parses a manifest or index. `content_type` is the response's `Content-Type`; the
/// document's own `mediaType` wins when present (some registries send a generic type).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Document, ManifestError> {
    let raw: RawDocument =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    let declared = raw.media_type.clone().unwrap_or_else(|| {
        content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    });
    // An OCI document may omit mediaType; its shape tells index from manifest.
    let kind = match declared.as_str() {
        OCI_INDEX | DOCKER_LIST => "index",
        OCI_MANIFEST | DOCKER_MANIFEST => "manifest",
        "" | "application/json" if raw.schema_version == Some(2) && raw.manifests.is_some() => {
            "index"
        }
        "" | "application/json" if raw.schema_version == Some(2) && raw.config.is_some() => {
            "manifest"
        }
        other => return Err(ManifestError::UnknownMediaType(other.to_string())),
    };
    if kind == "index" {
        let manifests = raw.manifests.unwrap_or_default();
        for m in &manifests {
            check_digest(&m.digest)?;
        }
        return Ok(Document::Index(manifests));
    }
    let config = raw
        .config
        .ok_or_else(|| ManifestError::Json("a manifest without a config".into()))?;
    check_digest(&config.digest)?;
    match config.media_type.as_str() {
        "application/vnd.oci.image.config.v1+json"
        | "application/vnd.docker.container.image.v1+json"
        | "" => {}
        other => return Err(ManifestError::UnknownConfigType(other.to_string())),
    }
    let mut layers = Vec::new();
    for layer in raw.layers.unwrap_or_default() {
        check_digest(&layer.digest)?;
        let compression = layer_compression(&layer.media_type).ok_or_else(|| {
            ManifestError::UnknownLayerType {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
            }
        })?;
        layers.push((layer, compression));
    }
    Ok(Document::Manifest(ImageManifest { config, layers }))
}

/// How a layer of `media_type` is compressed, or `None` when banger cannot apply it
/// (foreign Windows layers, encrypted layers, anything unknown).
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

fn check_digest(digest: &str) -> Result<(), ManifestError> {
    if super::reference::is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(ManifestError::BadDigest(digest.to_string()))
    }
}

/// The index entry for linux/amd64 (a `v1`/no variant preferred over others).
pub fn select_platform(manifests: &[Descriptor]) -> Result<&Descriptor, ManifestError> {
    let matching = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
    };
    manifests
        .iter()
        .filter(matching)
        .min_by_key(|d| {
            d.platform
                .as_ref()
                .and_then(|p| p.variant.as_deref())
                .map_or(0, |v| if v == "v1" { 0 } else { 1 })
        })
        .ok_or_else(|| {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            ManifestError::NoPlatform(if have.is_empty() {
                "no platforms listed".into()
            } else {
                have.join(", ")
            })
        })
}

/// The part of the image config banger uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: ContainerConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

/// Parses the config and checks that it is a linux/amd64 image.
pub fn parse_config(body: &[u8]) -> Result<ImageConfig, ManifestError> {
    let config: ImageConfig =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    let os_ok = config.os.is_empty() || config.os == PLATFORM_OS;
    let arch_ok = config.architecture.is_empty() || config.architecture == PLATFORM_ARCH;
    if !os_ok || !arch_ok {
        return Err(ManifestError::NoPlatform(format!(
            "{}/{}",
            config.os, config.architecture
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn manifests_and_indexes() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":10}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":5}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{}","size":6}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":7}}]}}"#,
            digest('a'),
            digest('b'),
            digest('c'),
            digest('d')
        );
        let Document::Manifest(parsed) = parse("application/json", manifest.as_bytes()).unwrap()
        else {
            panic!("not a manifest")
        };
        assert_eq!(parsed.config.size, 10);
        let kinds: Vec<Compression> = parsed.layers.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            kinds,
            [Compression::Gzip, Compression::Zstd, Compression::None]
        );

        // OCI manifest without mediaType, recognised by shape and Content-Type.
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[]}}"#,
            digest('e')
        );
        assert!(matches!(
            parse(OCI_MANIFEST, oci.as_bytes()),
            Ok(Document::Manifest(_))
        ));
        assert!(matches!(
            parse("", oci.as_bytes()),
            Ok(Document::Manifest(_))
        ));

        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
            digest('1'),
            digest('2'),
            digest('3')
        );
        let Document::Index(entries) = parse(OCI_INDEX, index.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(select_platform(&entries).unwrap().digest, digest('2'));
        assert_eq!(
            select_platform(&entries[..1]),
            Err(ManifestError::NoPlatform("linux/arm64/v8".into()))
        );
    }

    #[test]
    fn unknown_types_are_refused_by_name() {
        let v1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert_eq!(
            parse("", v1.as_bytes()),
            Err(ManifestError::UnknownMediaType(
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into()
            ))
        );
        let foreign = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":1}}]}}"#,
            digest('a'),
            digest('b')
        );
        assert_eq!(
            parse("", foreign.as_bytes()),
            Err(ManifestError::UnknownLayerType {
                media_type: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into(),
                digest: digest('b'),
            })
        );
        let artifact = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":1}},"layers":[]}}"#,
            digest('a')
        );
        assert_eq!(
            parse("", artifact.as_bytes()),
            Err(ManifestError::UnknownConfigType(
                "application/vnd.cncf.helm.config.v1+json".into()
            ))
        );
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"md5:abc","size":1}},"layers":[]}}"#
        );
        assert_eq!(
            parse("", bad_digest.as_bytes()),
            Err(ManifestError::BadDigest("md5:abc".into()))
        );
    }

    #[test]
    fn configs_must_be_linux_amd64() {
        let ok = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"WorkingDir":"/app"}}"#;
        let config = parse_config(ok).unwrap();
        assert_eq!(config.config.env, Some(vec!["PATH=/usr/bin".to_string()]));
        assert_eq!(config.config.working_dir.as_deref(), Some("/app"));
        assert!(matches!(
            parse_config(br#"{"architecture":"arm64","os":"linux"}"#),
            Err(ManifestError::NoPlatform(p)) if p == "linux/arm64"
        ));
    }
}
