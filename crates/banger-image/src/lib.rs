//! banger-image: the kernels and root filesystem images guests boot from.
//!
//! [`ImageService`] pulls a catalog entry by name and returns paths to immutable
//! artifacts. Kernels come from Debian's `linux-image-*-cloud-amd64` package (ELF
//! `vmlinux` extracted in Rust, plus a small busybox initramfs written as cpio in Rust).
//! Images are ext4 files made by `mkfs.ext4 -d` from one tar stream: `tiny` is assembled
//! in memory from .deb data tars, `debian-bookworm` comes from `mmdebstrap` and is
//! post-processed as a tar stream, `Bundle` entries are downloaded and checked. Nothing
//! needs root: no mounts, no chroot, ownership lives in the tar.
//!
//! Caches: `<cache>/kernels/<name>/<version>/`, `<cache>/debs/`, `<cache>/resolved/`.
//! Published images: `<state>/images/sha256-<digest>.ext4` (read-only), found again by a
//! key derived from the recipe and its resolved inputs (`<state>/images/keys/<key>.json`).

mod apt;
pub mod apt_query;
mod bundle;
pub mod catalog;
pub mod cpio;
pub mod deb;
mod debian;
mod error;
pub mod ext4;
pub mod http;
pub mod initramfs;
mod kernel;
mod local;
pub mod mirror;
pub mod mise;
pub mod oci;
pub mod prune;
mod recipe;
mod resolve_memo;
mod service;
pub mod store;
pub mod tar_edit;
#[cfg(test)]
mod test_tar;
mod tiny;
pub mod tree;
pub mod usrmerge;
pub mod vmlinux;

pub use banger_model::catalog::{DEFAULT_IMAGE, DEFAULT_KERNEL};
pub use catalog::{
    Catalog, GuestInit, ImageEntry, ImageRecipe, KernelEntry, KernelRecipe, TINY_IMAGE,
};
pub use error::{ImageError, error_chain};
pub use kernel::{INITRAMFS_FILE, INITRAMFS_RECIPE_VERSION, KernelArtifact, VMLINUX_FILE};
pub use local::LocalSource;
pub use service::{ImageArtifact, ImageService, ImportOutcome, Pulled};
