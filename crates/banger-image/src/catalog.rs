//! The catalog: which images and kernels banger can pull, and the recipe behind each
//! name. The built-in names and descriptions come from `banger_model::catalog` (the CLI
//! completes them without the daemon); this module adds how each one is made. A daemon
//! may replace the catalog (e.g. add `Bundle` entries from its configuration).

use serde::{Deserialize, Serialize};

use banger_model::catalog::{BUILTIN_IMAGES, BUILTIN_KERNELS, DEFAULT_IMAGE, DEFAULT_KERNEL};

/// Name of the small busybox + dropbear + git image.
pub const TINY_IMAGE: &str = "tiny";

/// How the guest's PID 1 works; the VM service installs the agent differently per init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestInit {
    /// systemd: the agent runs from `banger-agent.service`.
    Systemd,
    /// busybox init: `/etc/init.d/rcS` starts `/usr/local/sbin/banger-agent` if present.
    Busybox,
}

/// How an image is produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageRecipe {
    /// busybox-static + dropbear + git assembled from bookworm .debs, busybox init.
    Tiny,
    /// `mmdebstrap` bookworm minbase with systemd, sshd, git, build tools and docker.
    DebianBookworm,
    /// A prebuilt ext4 image (optionally gzip-compressed, `.gz`) at `url`, checked
    /// against `sha256` (of the downloaded bytes).
    Bundle {
        url: String,
        sha256: String,
        init: GuestInit,
    },
}

/// How a kernel is produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KernelRecipe {
    /// The newest `linux-image-<series>-N-<flavour>` Debian package.
    DebianPackage { series: String, flavour: String },
}

/// One image of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub name: String,
    pub description: String,
    pub recipe: ImageRecipe,
    /// The kernel this image boots with unless the user names another.
    pub kernel: String,
}

/// One kernel of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEntry {
    pub name: String,
    pub description: String,
    pub recipe: KernelRecipe,
}

/// Every image and kernel banger knows how to pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub images: Vec<ImageEntry>,
    pub kernels: Vec<KernelEntry>,
}

impl Catalog {
    /// The built-in catalog: `debian-bookworm` (default), `tiny`, kernel `debian-6.1-cloud`.
    pub fn builtin() -> Catalog {
        let describe = |table: &[(&str, &str)], name: &str| {
            table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, description)| (*description).to_string())
                .unwrap_or_default()
        };
        let image = |name: &str, recipe: ImageRecipe| ImageEntry {
            name: name.to_string(),
            description: describe(BUILTIN_IMAGES, name),
            recipe,
            kernel: DEFAULT_KERNEL.to_string(),
        };
        Catalog {
            images: vec![
                image(DEFAULT_IMAGE, ImageRecipe::DebianBookworm),
                image(TINY_IMAGE, ImageRecipe::Tiny),
            ],
            kernels: vec![KernelEntry {
                name: DEFAULT_KERNEL.to_string(),
                description: describe(BUILTIN_KERNELS, DEFAULT_KERNEL),
                recipe: KernelRecipe::DebianPackage {
                    series: "6.1.0".to_string(),
                    flavour: "cloud-amd64".to_string(),
                },
            }],
        }
    }

    pub fn image(&self, name: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|entry| entry.name == name)
    }

    pub fn kernel(&self, name: &str) -> Option<&KernelEntry> {
        self.kernels.iter().find(|entry| entry.name == name)
    }
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_matches_the_model_names() {
        let catalog = Catalog::builtin();
        for (name, _) in BUILTIN_IMAGES {
            let entry = catalog.image(name).expect(name);
            assert!(!entry.description.is_empty(), "{name}");
            assert!(catalog.kernel(&entry.kernel).is_some(), "{name}");
        }
        for (name, _) in BUILTIN_KERNELS {
            assert!(catalog.kernel(name).is_some(), "{name}");
        }
        assert_eq!(
            catalog.image(DEFAULT_IMAGE).map(|e| &e.recipe),
            Some(&ImageRecipe::DebianBookworm)
        );
        assert!(catalog.image("nope").is_none());
    }

    #[test]
    fn recipes_serialize_with_a_kind_tag_and_lowercase_init() {
        let cases = [
            (ImageRecipe::Tiny, r#"{"kind":"tiny"}"#),
            (ImageRecipe::DebianBookworm, r#"{"kind":"debian-bookworm"}"#),
            (
                ImageRecipe::Bundle {
                    url: "http://x/y.ext4".into(),
                    sha256: "ab".into(),
                    init: GuestInit::Systemd,
                },
                r#"{"kind":"bundle","url":"http://x/y.ext4","sha256":"ab","init":"systemd"}"#,
            ),
        ];
        for (recipe, json) in cases {
            assert_eq!(serde_json::to_string(&recipe).unwrap(), json);
            assert_eq!(serde_json::from_str::<ImageRecipe>(json).unwrap(), recipe);
        }
        assert_eq!(
            serde_json::to_string(&GuestInit::Busybox).unwrap(),
            r#""busybox""#
        );
    }
}
