//! The `--json` records of `ping`, `health`, `version`, `vm cp` and `config show`.

use banger_api::methods::CopyOutput;
use banger_api::types::{DriverStatus, Health, Pong, StoreStatus, VmState};
use serde::Serialize;

use crate::config::FileSync;
use crate::config::settings::{HostCa, Policy, Setting, Settings};

const MIB: u64 = 1024 * 1024;

/// `ping`: the daemon's version and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PongJson {
    pub daemon_version: String,
    pub protocol: u32,
}

impl From<&Pong> for PongJson {
    fn from(p: &Pong) -> PongJson {
        PongJson {
            daemon_version: p.daemon_version.clone(),
            protocol: p.protocol,
        }
    }
}

/// `health`: the daemon's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthJson {
    pub daemon_version: String,
    pub protocol: u32,
    pub pid: u32,
    pub uptime_secs: u64,
    pub store: StoreJson,
    pub drivers: Vec<DriverJson>,
    pub accelerator: String,
    /// VMs per state.
    pub vms: Vec<StateCountJson>,
}

/// The state database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreJson {
    pub ok: bool,
    pub path: String,
    pub schema_version: u32,
    /// Why it is not ok; `null` when it is.
    pub error: Option<String>,
}

/// Whether a VMM driver can run guests here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverJson {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

/// How many VMs are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCountJson {
    pub state: VmState,
    pub count: u64,
}

impl From<&Health> for HealthJson {
    fn from(h: &Health) -> HealthJson {
        HealthJson {
            daemon_version: h.daemon_version.clone(),
            protocol: h.protocol,
            pid: h.pid,
            uptime_secs: h.uptime_secs,
            store: StoreJson::from(&h.store),
            drivers: super::all(&h.drivers),
            accelerator: h.accelerator.clone(),
            vms: h
                .vms
                .iter()
                .map(|&(state, count)| StateCountJson { state, count })
                .collect(),
        }
    }
}

impl From<&StoreStatus> for StoreJson {
    fn from(s: &StoreStatus) -> StoreJson {
        StoreJson {
            ok: s.ok,
            path: s.path.clone(),
            schema_version: s.schema_version,
            error: s.error.clone(),
        }
    }
}

impl From<&DriverStatus> for DriverJson {
    fn from(d: &DriverStatus) -> DriverJson {
        DriverJson {
            name: d.name.clone(),
            available: d.available,
            detail: d.detail.clone(),
        }
    }
}

/// `version`: the CLI's version and the daemon's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionJson {
    pub cli: VersionOfJson,
    /// `null` when the daemon did not answer.
    pub daemon: Option<VersionOfJson>,
    /// Why the daemon did not answer; `null` when it did.
    pub daemon_error: Option<String>,
}

/// One side's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionOfJson {
    pub version: String,
    pub protocol: u32,
}

/// `vm cp`: what was copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyJson {
    pub entries: u64,
    pub content_bytes: u64,
    pub path: String,
}

impl From<&CopyOutput> for CopyJson {
    fn from(c: &CopyOutput) -> CopyJson {
        CopyJson {
            entries: c.entries,
            content_bytes: c.bytes,
            path: c.path.clone(),
        }
    }
}

/// `config show`: the settings new VMs get and where each came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigJson {
    pub file: String,
    pub exists: bool,
    pub settings: SettingsJson,
}

/// Each setting as `{"value": ..., "source": "flag" | "file" | "default"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsJson {
    pub image: Setting<Option<String>>,
    pub kernel: Setting<Option<String>>,
    pub vcpus: Setting<Option<u32>>,
    pub memory_bytes: Setting<Option<u64>>,
    pub disk_bytes: Setting<Option<u64>>,
    pub nat: Setting<bool>,
    pub policy: Setting<Policy>,
    pub guest_path: Setting<String>,
    pub bootstrap: Setting<bool>,
    pub git_identity: Setting<bool>,
    pub host_ca: Setting<HostCa>,
    pub file_sync: Setting<Vec<FileSync>>,
}

impl ConfigJson {
    pub fn new(file: &std::path::Path, exists: bool, s: &Settings) -> ConfigJson {
        let bytes = |m: &Setting<Option<u64>>| Setting {
            value: m.value.map(|mib| mib.saturating_mul(MIB)),
            source: m.source,
        };
        ConfigJson {
            file: file.display().to_string(),
            exists,
            settings: SettingsJson {
                image: s.image.clone(),
                kernel: s.kernel.clone(),
                vcpus: s.vcpus.clone(),
                memory_bytes: bytes(&s.memory_mib),
                disk_bytes: bytes(&s.disk_mib),
                nat: s.nat.clone(),
                policy: s.policy.clone(),
                guest_path: s.guest_path.clone(),
                bootstrap: s.bootstrap.clone(),
                git_identity: s.git_identity.clone(),
                host_ca: s.host_ca.clone(),
                file_sync: s.file_sync.clone(),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn health() -> Health {
        Health {
            daemon_version: "0.1.0".into(),
            protocol: 3,
            pid: 77,
            uptime_secs: 12,
            store: StoreStatus {
                ok: true,
                path: "/state/banger.db".into(),
                schema_version: 10,
                error: None,
            },
            drivers: vec![DriverStatus {
                name: "qemu".into(),
                available: true,
                detail: "qemu-system-x86_64 8.2".into(),
            }],
            accelerator: "tcg".into(),
            vms: vec![(VmState::Running, 2)],
        }
    }

    pub(crate) fn version() -> VersionJson {
        VersionJson {
            cli: VersionOfJson {
                version: "0.1.0".into(),
                protocol: 3,
            },
            daemon: Some(VersionOfJson {
                version: "0.1.0".into(),
                protocol: 3,
            }),
            daemon_error: None,
        }
    }

    pub(crate) fn copy() -> CopyOutput {
        CopyOutput {
            entries: 3,
            bytes: 120,
            path: "/root/repo".into(),
        }
    }

    pub(crate) fn config() -> ConfigJson {
        let settings = crate::config::resolve(
            &crate::config::Flags {
                memory_mib: Some(512),
                ..Default::default()
            },
            &crate::config::FileConfig::default(),
        );
        ConfigJson::new(
            std::path::Path::new("/home/dev/.config/banger/config.toml"),
            false,
            &settings,
        )
    }

    /// A store without an error has `"error": null`; VMs per state are objects.
    #[test]
    fn health_and_friends() {
        insta::assert_json_snapshot!("health", HealthJson::from(&health()));
        insta::assert_json_snapshot!("version", version());
        insta::assert_json_snapshot!("copy", CopyJson::from(&copy()));
        insta::assert_json_snapshot!(
            "ping",
            PongJson::from(&Pong {
                daemon_version: "0.1.0".into(),
                protocol: 3
            })
        );
    }

    /// Memory and disk in bytes, like the VM record.
    #[test]
    fn config_sizes_are_bytes() {
        insta::assert_json_snapshot!(config());
    }
}
