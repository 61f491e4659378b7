//! The `--json` record of a snapshot (`vm snapshot`, `snapshot list`, `show`, `delete`).

use banger_api::types::SnapshotInfo;
use serde::Serialize;

const MIB: u64 = 1024 * 1024;

/// One saved guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotJson {
    pub id: String,
    pub name: String,
    pub state: String,
    pub source_vm: String,
    pub image: String,
    pub kernel: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub driver: String,
    pub size_bytes: u64,
    pub dir: String,
    pub running_forks: Vec<String>,
    /// A warm template's inputs; `null` for a snapshot taken by `vm snapshot`.
    pub template_key: Option<String>,
    pub created_at: String,
}

impl From<&SnapshotInfo> for SnapshotJson {
    fn from(s: &SnapshotInfo) -> SnapshotJson {
        SnapshotJson {
            id: s.id.clone(),
            name: s.name.clone(),
            state: s.state.clone(),
            source_vm: s.source_vm.clone(),
            image: s.image.clone(),
            kernel: s.kernel.clone(),
            vcpus: s.vcpus,
            memory_bytes: s.memory_mib.saturating_mul(MIB),
            disk_bytes: s.disk_mib.saturating_mul(MIB),
            driver: s.driver.clone(),
            size_bytes: s.size_bytes,
            dir: s.dir.clone(),
            running_forks: s.running_forks.clone(),
            template_key: s.template_key.clone(),
            created_at: s.created_at.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> SnapshotInfo {
        SnapshotInfo {
            id: "5e5e5e5e00112233".into(),
            name: "base".into(),
            state: "ready".into(),
            source_vm: "src".into(),
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 1,
            memory_mib: 256,
            disk_mib: 1024,
            driver: "qemu".into(),
            size_bytes: 300 << 20,
            dir: "/state/snapshots/5e5e5e5e00112233".into(),
            running_forks: vec!["c-1".into()],
            template_key: None,
            created_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    /// Sizes in bytes; no template key is `null`, not a missing key.
    #[test]
    fn a_snapshot_has_every_key_in_bytes() {
        insta::assert_json_snapshot!(SnapshotJson::from(&sample()));
    }
}
