//! The `--json` records of an image (`image list`, `show`, `pull`, `import`, `register`,
//! `promote`, `delete`), of a catalog entry (`image catalog`, `kernel catalog`), of
//! `image warm` and of `image cache prune`.

use banger_api::methods::{CachePruneOutput, ImageWarmOutput};
use banger_api::types::{CatalogEntry, ImageInfo, ImageSource};
use serde::Serialize;

/// One local image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageJson {
    pub name: String,
    pub source: ImageSource,
    pub digest: String,
    pub size_bytes: u64,
    pub disk_bytes: u64,
    pub path: String,
    pub kernel: String,
    /// `systemd` or `busybox`; `null` when the record does not say.
    pub init: Option<String>,
    /// OCI `reference@digest`, the registered file, the promoted VM; `null` for catalog.
    pub origin: Option<String>,
    pub used_by: Vec<String>,
    pub created_at: String,
    /// `pull` and `import`: whether it was built or recorded now; `null` elsewhere.
    pub updated: Option<bool>,
}

impl From<&ImageInfo> for ImageJson {
    fn from(i: &ImageInfo) -> ImageJson {
        let non_empty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        ImageJson {
            name: i.name.clone(),
            source: i.source,
            digest: i.digest.clone(),
            size_bytes: i.size_bytes,
            disk_bytes: i.disk_bytes,
            path: i.path.clone(),
            kernel: i.kernel.clone(),
            init: non_empty(&i.init),
            origin: non_empty(&i.origin),
            used_by: i.used_by.clone(),
            created_at: i.created_at.clone(),
            updated: i.updated,
        }
    }
}

/// An entry of the built-in image or kernel catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogJson {
    pub name: String,
    pub description: String,
    pub kind: String,
    pub pulled: bool,
    pub default: bool,
}

impl From<&CatalogEntry> for CatalogJson {
    fn from(e: &CatalogEntry) -> CatalogJson {
        CatalogJson {
            name: e.name.clone(),
            description: e.description.clone(),
            kind: e.kind.clone(),
            pulled: e.pulled,
            default: e.default,
        }
    }
}

/// What `image warm` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmJson {
    pub image: String,
    pub warm: bool,
    pub changed: bool,
    pub removed_templates: Vec<String>,
}

impl From<&ImageWarmOutput> for WarmJson {
    fn from(w: &ImageWarmOutput) -> WarmJson {
        WarmJson {
            image: w.image.clone(),
            warm: w.warm,
            changed: w.changed,
            removed_templates: w.removed_templates.clone(),
        }
    }
}

/// What `image cache prune` removed (or would, with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachePruneJson {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub dry_run: bool,
}

impl From<&CachePruneOutput> for CachePruneJson {
    fn from(p: &CachePruneOutput) -> CachePruneJson {
        CachePruneJson {
            removed: p.removed.clone(),
            freed_bytes: p.freed_bytes,
            dry_run: p.dry_run,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ImageInfo {
        ImageInfo {
            name: "tiny".into(),
            source: ImageSource::Catalog,
            digest: "sha256:ab12".into(),
            size_bytes: 1 << 30,
            path: "/state/images/tiny.ext4".into(),
            kernel: "debian-6.1-cloud".into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            disk_bytes: 300 << 20,
            origin: String::new(),
            init: String::new(),
            used_by: vec!["web".into()],
            updated: None,
        }
    }

    /// A catalog image records no origin or init: `null`, not a missing key.
    #[test]
    fn a_sparse_image_has_every_key() {
        insta::assert_json_snapshot!(ImageJson::from(&sample()));
    }

    #[test]
    fn an_imported_image() {
        let mut image = sample();
        image.source = ImageSource::Oci;
        image.origin = "localhost:5000/app:latest@sha256:cd34".into();
        image.init = "busybox".into();
        image.updated = Some(true);
        insta::assert_json_snapshot!(ImageJson::from(&image));
    }

    #[test]
    fn warm_and_prune() {
        let warm = ImageWarmOutput {
            image: "tiny".into(),
            warm: true,
            changed: true,
            removed_templates: Vec::new(),
        };
        insta::assert_json_snapshot!("warm", WarmJson::from(&warm));
        let pruned = CachePruneOutput {
            removed: vec!["layer-ab".into()],
            freed_bytes: 4096,
            dry_run: false,
        };
        insta::assert_json_snapshot!("cache_prune", CachePruneJson::from(&pruned));
    }
}
