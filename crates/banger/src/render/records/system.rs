//! The `--json` records of `system status`, `system restart` (the services, an array),
//! `system install` (the installation) and `system uninstall` (what it removed).

use banger_model::system::{InstallMetadata, InstalledNetwork, InstalledPaths, Owner};
use serde::Serialize;

use crate::system::ops::{ServiceStatus, UninstallReport};

/// `system status`: how banger is installed and each service's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusJson {
    pub mode: String,
    pub owner: OwnerJson,
    pub version: String,
    pub services: Vec<ServiceJson>,
}

/// One installed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceJson {
    pub service: String,
    pub mode: String,
    pub state: String,
    pub pid: Option<i32>,
    pub answers: bool,
    /// Why it does not answer; `null` when it does.
    pub answer_error: Option<String>,
    pub version: String,
    pub socket: String,
    pub user: String,
    pub log: String,
}

/// The user the services run for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerJson {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// `system install`: the installation, as recorded in `/etc/banger/install.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallJson {
    pub version: String,
    pub mode: String,
    pub owner: OwnerJson,
    pub paths: PathsJson,
    pub network: NetworkJson,
    pub installed_at: String,
    pub updated_at: String,
}

/// Where the installation put things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathsJson {
    pub banger: String,
    pub bangerd: String,
    pub helper: String,
    /// `null` when no guest agent binary was installed.
    pub agent: Option<String>,
    pub helper_socket: String,
    pub daemon_socket: String,
    pub runtime_dir: String,
    pub state_dir: String,
    pub cache_dir: String,
    pub config_dir: String,
    pub log_dir: String,
}

/// The guest network the services are configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkJson {
    pub bridge: String,
    pub subnet: String,
    pub dns_port: u16,
}

/// `system uninstall`: what it removed and kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UninstallJson {
    pub removed: Vec<String>,
    /// The host network's teardown report; `null` when there was none to undo.
    pub network: Option<serde_json::Value>,
    pub kept: Vec<String>,
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Unix seconds as RFC 3339 (UTC); the number itself when out of range.
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| secs.to_string(), |t| t.to_string())
}

impl StatusJson {
    pub fn new(metadata: &InstallMetadata, rows: &[ServiceStatus]) -> StatusJson {
        StatusJson {
            mode: metadata.mode.as_str().to_owned(),
            owner: OwnerJson::from(&metadata.owner),
            version: metadata.version.clone(),
            services: super::all(rows),
        }
    }
}

impl From<&ServiceStatus> for ServiceJson {
    fn from(s: &ServiceStatus) -> ServiceJson {
        ServiceJson {
            service: s.service.to_owned(),
            mode: s.mode.to_owned(),
            state: s.state.clone(),
            pid: s.pid,
            answers: s.answers,
            answer_error: s.answer_error.clone(),
            version: s.version.clone(),
            socket: path(&s.socket),
            user: s.user.clone(),
            log: s.log.clone(),
        }
    }
}

impl From<&Owner> for OwnerJson {
    fn from(o: &Owner) -> OwnerJson {
        OwnerJson {
            name: o.name.clone(),
            uid: o.uid,
            gid: o.gid,
            groups: o.groups.clone(),
            home: path(&o.home),
        }
    }
}

impl From<&InstallMetadata> for InstallJson {
    fn from(m: &InstallMetadata) -> InstallJson {
        InstallJson {
            version: m.version.clone(),
            mode: m.mode.as_str().to_owned(),
            owner: OwnerJson::from(&m.owner),
            paths: PathsJson::from(&m.paths),
            network: NetworkJson::from(&m.network),
            installed_at: rfc3339(m.installed_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

impl From<&InstalledPaths> for PathsJson {
    fn from(p: &InstalledPaths) -> PathsJson {
        PathsJson {
            banger: path(&p.banger),
            bangerd: path(&p.bangerd),
            helper: path(&p.helper),
            agent: p.agent.as_deref().map(path),
            helper_socket: path(&p.helper_socket),
            daemon_socket: path(&p.daemon_socket),
            runtime_dir: path(&p.runtime_dir),
            state_dir: path(&p.state_dir),
            cache_dir: path(&p.cache_dir),
            config_dir: path(&p.config_dir),
            log_dir: path(&p.log_dir),
        }
    }
}

impl From<&InstalledNetwork> for NetworkJson {
    fn from(n: &InstalledNetwork) -> NetworkJson {
        NetworkJson {
            bridge: n.bridge.clone(),
            subnet: n.subnet.clone(),
            dns_port: n.dns_port,
        }
    }
}

impl From<&UninstallReport> for UninstallJson {
    fn from(r: &UninstallReport) -> UninstallJson {
        UninstallJson {
            removed: r.removed.iter().map(|p| path(p)).collect(),
            network: r.network.clone(),
            kept: r.kept.iter().map(|p| path(p)).collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use banger_model::system::ServiceMode;

    pub(crate) fn metadata() -> InstallMetadata {
        let p = |s: &str| std::path::PathBuf::from(s);
        InstallMetadata {
            format: 1,
            version: "0.1.0".into(),
            mode: ServiceMode::Systemd,
            owner: Owner {
                name: "dev".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![108],
                home: p("/home/dev"),
            },
            paths: InstalledPaths {
                banger: p("/usr/local/bin/banger"),
                bangerd: p("/usr/local/bin/bangerd"),
                helper: p("/usr/local/bin/banger-helper"),
                agent: Some(p("/usr/local/lib/banger/banger-agent")),
                helper_socket: p("/run/banger/helper.sock"),
                daemon_socket: p("/run/banger/bangerd.sock"),
                runtime_dir: p("/run/banger"),
                state_dir: p("/home/dev/.local/state/banger"),
                cache_dir: p("/home/dev/.cache/banger"),
                config_dir: p("/home/dev/.config/banger"),
                log_dir: p("/var/log/banger"),
            },
            network: InstalledNetwork {
                bridge: "banger0".into(),
                subnet: "10.77.0.0/24".into(),
                dns_port: 53,
            },
            installed_at: 1_767_323_045,
            updated_at: 1_767_323_045,
        }
    }

    pub(crate) fn rows() -> Vec<ServiceStatus> {
        vec![ServiceStatus {
            service: "bangerd",
            mode: "systemd",
            state: "active".into(),
            pid: None,
            answers: false,
            answer_error: Some("connection refused".into()),
            version: "0.1.0".into(),
            socket: "/run/banger/bangerd.sock".into(),
            user: "dev".into(),
            log: "journalctl -u bangerd".into(),
        }]
    }

    pub(crate) fn uninstall() -> UninstallReport {
        UninstallReport {
            removed: vec!["/etc/banger/install.json".into()],
            network: None,
            kept: vec!["/home/dev/.local/state/banger".into()],
        }
    }

    #[test]
    fn status_install_and_uninstall() {
        insta::assert_json_snapshot!("status", StatusJson::new(&metadata(), &rows()));
        insta::assert_json_snapshot!("install", InstallJson::from(&metadata()));
        insta::assert_json_snapshot!("uninstall", UninstallJson::from(&uninstall()));
    }
}
