//! The `--json` record of a kernel (`kernel list`, `show`, `pull`, `delete`).

use banger_api::types::KernelInfo;
use serde::Serialize;

/// One local kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelJson {
    pub name: String,
    pub version: String,
    pub vmlinux: String,
    /// `null` for a kernel without one.
    pub initramfs: Option<String>,
    pub size_bytes: u64,
    pub used_by: Vec<String>,
    pub created_at: String,
}

impl From<&KernelInfo> for KernelJson {
    fn from(k: &KernelInfo) -> KernelJson {
        KernelJson {
            name: k.name.clone(),
            version: k.version.clone(),
            vmlinux: k.vmlinux.clone(),
            initramfs: Some(k.initramfs.clone()).filter(|p| !p.is_empty()),
            size_bytes: k.size_bytes,
            used_by: k.used_by.clone(),
            created_at: k.created_at.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> KernelInfo {
        KernelInfo {
            name: "debian-6.1-cloud".into(),
            version: "6.1.0-28-cloud-amd64".into(),
            vmlinux: "/state/kernels/debian-6.1-cloud/vmlinux".into(),
            initramfs: "/state/kernels/debian-6.1-cloud/initrd.img".into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            size_bytes: 40 << 20,
            used_by: vec!["tiny".into()],
        }
    }

    #[test]
    fn a_kernel() {
        insta::assert_json_snapshot!(KernelJson::from(&sample()));
    }
}
