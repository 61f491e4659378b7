//! Names and one-line descriptions of the built-in image and kernel catalogs, as plain
//! data. The CLI completes `--image`/`--kernel` from these without asking the daemon;
//! how each entry is built or downloaded lives in `banger-image`, keyed by these names.

/// The image a VM gets when `--image` is omitted.
pub const DEFAULT_IMAGE: &str = "debian-bookworm";

/// The kernel an image boots with when neither the image nor `--kernel` names one.
pub const DEFAULT_KERNEL: &str = "debian-6.1-cloud";

/// Built-in images as `(name, description)`.
pub const BUILTIN_IMAGES: &[(&str, &str)] = &[
    (
        "debian-bookworm",
        "Debian 12 (bookworm) with systemd, ssh and git",
    ),
    ("tiny", "busybox + dropbear + git, boots in ~3 s"),
];

/// Built-in kernels as `(name, description)`.
pub const BUILTIN_KERNELS: &[(&str, &str)] = &[(
    "debian-6.1-cloud",
    "Debian bookworm's cloud kernel (linux 6.1 LTS) with its initramfs",
)];

/// True when `name` is a built-in image.
pub fn is_builtin_image(name: &str) -> bool {
    BUILTIN_IMAGES.iter().any(|(n, _)| *n == name)
}

/// True when `name` is a built-in kernel.
pub fn is_builtin_kernel(name: &str) -> bool {
    BUILTIN_KERNELS.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::ResourceName;

    #[test]
    fn defaults_are_in_the_catalogs() {
        assert!(is_builtin_image(DEFAULT_IMAGE));
        assert!(is_builtin_kernel(DEFAULT_KERNEL));
        assert!(!is_builtin_image("nope"));
        assert!(!is_builtin_kernel(DEFAULT_IMAGE));
    }

    #[test]
    fn every_catalog_name_is_a_valid_resource_name() {
        for (name, description) in BUILTIN_IMAGES.iter().chain(BUILTIN_KERNELS) {
            assert!(ResourceName::parse(name).is_ok(), "{name}");
            assert!(!description.is_empty(), "{name} has no description");
        }
    }
}
