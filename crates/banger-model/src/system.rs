//! system: where `banger system install` puts things and what it records about them.
//! [`SystemLayout`] is every path of an installation below one root (`/` in production,
//! a temporary directory in tests, chosen by `BANGER_SYSTEM_ROOT`); [`InstallMetadata`]
//! is the root-owned record (`<root>/etc/banger/install.json`) of who the installation
//! serves, where its binaries, sockets and directories are, how its services run and
//! which versions are installed. The CLI writes it, the CLI and `doctor` read it; the
//! helper's owner uid and the daemon's environment are generated from it.
//!
//! Root runs only binaries under `<root>/usr/local` (`bin/` for `banger` and `bangerd`,
//! `lib/banger/` for `banger-helper` and the guest agent), never a user-writable path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The variable that moves a whole installation below another root (tests).
pub const SYSTEM_ROOT_ENV: &str = "BANGER_SYSTEM_ROOT";

/// Bumped when [`InstallMetadata`] changes incompatibly.
pub const METADATA_FORMAT: u32 = 1;

/// The two services of an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// `banger-helper`, as root.
    Helper,
    /// `bangerd`, as the owner.
    Daemon,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Helper, Service::Daemon];

    /// The binary's (and the service's) name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Helper => "banger-helper",
            Service::Daemon => "bangerd",
        }
    }

    /// The systemd unit's file name.
    pub fn unit_name(self) -> String {
        format!("{}.service", self.name())
    }
}

/// How the services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    /// Two systemd units (systemd is PID 1).
    Systemd,
    /// Two supervised background processes (`banger system supervise`): pid files,
    /// restart on crash, logs to files. For containers and hosts without systemd.
    Supervised,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Systemd => "systemd",
            ServiceMode::Supervised => "supervised",
        }
    }
}

/// Every path of an installation below `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemLayout {
    root: PathBuf,
}

impl SystemLayout {
    pub fn new(root: impl Into<PathBuf>) -> SystemLayout {
        SystemLayout { root: root.into() }
    }

    /// `BANGER_SYSTEM_ROOT` through `env`, else `/`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> SystemLayout {
        let root = env(SYSTEM_ROOT_ENV)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        SystemLayout::new(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the real system (root `/`), where systemd units can apply.
    pub fn is_system_root(&self) -> bool {
        self.root == Path::new("/")
    }

    fn at(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// `banger` and `bangerd`.
    pub fn bin_dir(&self) -> PathBuf {
        self.at("usr/local/bin")
    }

    /// `banger-helper` and the guest agent.
    pub fn lib_dir(&self) -> PathBuf {
        self.at("usr/local/lib/banger")
    }

    pub fn banger(&self) -> PathBuf {
        self.bin_dir().join("banger")
    }

    pub fn bangerd(&self) -> PathBuf {
        self.bin_dir().join("bangerd")
    }

    pub fn helper(&self) -> PathBuf {
        self.lib_dir().join("banger-helper")
    }

    pub fn agent(&self) -> PathBuf {
        self.lib_dir().join("banger-agent")
    }

    /// The binary a service runs.
    pub fn binary(&self, service: Service) -> PathBuf {
        match service {
            Service::Helper => self.helper(),
            Service::Daemon => self.bangerd(),
        }
    }

    pub fn etc_dir(&self) -> PathBuf {
        self.at("etc/banger")
    }

    pub fn metadata(&self) -> PathBuf {
        self.etc_dir().join("install.json")
    }

    /// Root-owned, 0755: the helper's socket, pid files of supervised services.
    pub fn run_dir(&self) -> PathBuf {
        self.at("run/banger")
    }

    pub fn helper_socket(&self) -> PathBuf {
        self.run_dir().join("helper.sock")
    }

    /// The owner's runtime directory for an installed daemon (0700, the owner's): the
    /// daemon socket and VM runtime files. Outside `/tmp` (private there under systemd)
    /// and outside logind's `/run/user/<uid>` (removed at logout).
    pub fn owner_runtime_dir(&self, uid: u32) -> PathBuf {
        self.at(&format!("run/banger-{uid}"))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.at("var/log/banger")
    }

    pub fn log_file(&self, service: Service) -> PathBuf {
        self.log_dir().join(format!("{}.log", service.name()))
    }

    /// The supervised service process's pid.
    pub fn pid_file(&self, service: Service) -> PathBuf {
        self.run_dir().join(format!("{}.pid", service.name()))
    }

    /// The supervisor's own pid.
    pub fn supervisor_pid_file(&self, service: Service) -> PathBuf {
        self.run_dir()
            .join(format!("{}.supervisor.pid", service.name()))
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.at("etc/systemd/system")
    }

    pub fn unit_file(&self, service: Service) -> PathBuf {
        self.unit_dir().join(service.unit_name())
    }
}

/// The user an installation serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups the daemon keeps (e.g. `kvm`).
    #[serde(default)]
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

/// Installed paths, recorded so uninstall and doctor need not recompute them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPaths {
    pub banger: PathBuf,
    pub bangerd: PathBuf,
    pub helper: PathBuf,
    pub agent: Option<PathBuf>,
    pub helper_socket: PathBuf,
    pub daemon_socket: PathBuf,
    pub runtime_dir: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// The guest network the helper and the daemon are configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledNetwork {
    pub bridge: String,
    pub subnet: String,
    pub dns_port: u16,
}

/// `<root>/etc/banger/install.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallMetadata {
    pub format: u32,
    /// banger's version that wrote it (all three binaries come from one build).
    pub version: String,
    pub mode: ServiceMode,
    pub owner: Owner,
    pub paths: InstalledPaths,
    pub network: InstalledNetwork,
    /// Unix seconds of the first install and of the latest (re)install.
    pub installed_at: u64,
    pub updated_at: u64,
}

/// Why metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("banger is not installed as a service here ({} does not exist)", .path.display())]
    NotInstalled { path: PathBuf },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not banger's install metadata", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has format {found}; this banger reads format {METADATA_FORMAT}", .path.display())]
    Format { path: PathBuf, found: u32 },
}

impl InstallMetadata {
    /// Parses metadata text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<InstallMetadata, MetadataError> {
        let metadata: InstallMetadata =
            serde_json::from_str(text).map_err(|source| MetadataError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if metadata.format != METADATA_FORMAT {
            return Err(MetadataError::Format {
                path: path.to_path_buf(),
                found: metadata.format,
            });
        }
        Ok(metadata)
    }

    /// Reads `layout`'s metadata file.
    pub fn read(layout: &SystemLayout) -> Result<InstallMetadata, MetadataError> {
        let path = layout.metadata();
        match std::fs::read_to_string(&path) {
            Ok(text) => InstallMetadata::parse(&text, &path),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(MetadataError::NotInstalled { path })
            }
            Err(source) => Err(MetadataError::Read { path, source }),
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The daemon's environment: what `Dirs` and the networking settings read. Nothing
    /// else is inherited by the service.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut env = vec![
            ("HOME".to_owned(), path(&self.owner.home)),
            ("USER".to_owned(), self.owner.name.clone()),
            ("LOGNAME".to_owned(), self.owner.name.clone()),
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("BANGER_STATE_DIR".to_owned(), path(&self.paths.state_dir)),
            ("BANGER_CACHE_DIR".to_owned(), path(&self.paths.cache_dir)),
            ("BANGER_CONFIG_DIR".to_owned(), path(&self.paths.config_dir)),
            (
                "BANGER_RUNTIME_DIR".to_owned(),
                path(&self.paths.runtime_dir),
            ),
            ("BANGER_SOCKET".to_owned(), path(&self.paths.daemon_socket)),
            (
                "BANGER_HELPER_SOCKET".to_owned(),
                path(&self.paths.helper_socket),
            ),
            ("BANGER_BRIDGE".to_owned(), self.network.bridge.clone()),
            ("BANGER_SUBNET".to_owned(), self.network.subnet.clone()),
            (
                "BANGER_DNS_PORT".to_owned(),
                self.network.dns_port.to_string(),
            ),
        ];
        if let Some(agent) = &self.paths.agent {
            env.push(("BANGER_AGENT".to_owned(), path(agent)));
        }
        env
    }

    /// The helper's command line after its binary.
    pub fn helper_args(&self) -> Vec<String> {
        vec![
            "--owner-uid".to_owned(),
            self.owner.uid.to_string(),
            "--socket".to_owned(),
            self.paths.helper_socket.display().to_string(),
            "--bridge".to_owned(),
            self.network.bridge.clone(),
            "--subnet".to_owned(),
            self.network.subnet.clone(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(layout: &SystemLayout) -> InstallMetadata {
        InstallMetadata {
            format: METADATA_FORMAT,
            version: "0.1.0".into(),
            mode: ServiceMode::Supervised,
            owner: Owner {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![994],
                home: "/home/alice".into(),
            },
            paths: InstalledPaths {
                banger: layout.banger(),
                bangerd: layout.bangerd(),
                helper: layout.helper(),
                agent: Some(layout.agent()),
                helper_socket: layout.helper_socket(),
                daemon_socket: layout.owner_runtime_dir(1000).join("bangerd.sock"),
                runtime_dir: layout.owner_runtime_dir(1000),
                state_dir: "/home/alice/.local/state/banger".into(),
                cache_dir: "/home/alice/.cache/banger".into(),
                config_dir: "/home/alice/.config/banger".into(),
                log_dir: layout.log_dir(),
            },
            network: InstalledNetwork {
                bridge: "banger0".into(),
                subnet: "172.30.0.0/24".into(),
                dns_port: 42069,
            },
            installed_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn layout_paths() {
        let real = SystemLayout::new("/");
        assert!(real.is_system_root());
        assert_eq!(
            real.helper(),
            Path::new("/usr/local/lib/banger/banger-helper")
        );
        assert_eq!(real.bangerd(), Path::new("/usr/local/bin/bangerd"));
        assert_eq!(real.helper_socket(), Path::new("/run/banger/helper.sock"));
        assert_eq!(real.metadata(), Path::new("/etc/banger/install.json"));
        assert_eq!(
            real.unit_file(Service::Daemon),
            Path::new("/etc/systemd/system/bangerd.service")
        );
        assert_eq!(
            real.supervisor_pid_file(Service::Helper),
            Path::new("/run/banger/banger-helper.supervisor.pid")
        );
        let test = SystemLayout::from_env(|k| (k == SYSTEM_ROOT_ENV).then(|| "/tmp/r".into()));
        assert!(!test.is_system_root());
        assert_eq!(test.owner_runtime_dir(7), Path::new("/tmp/r/run/banger-7"));
        assert_eq!(SystemLayout::from_env(|_| None).root(), Path::new("/"));
    }

    #[test]
    fn metadata_round_trips_and_checks_its_format() {
        let layout = SystemLayout::new("/");
        let metadata = sample(&layout);
        let path = Path::new("/etc/banger/install.json");
        let text = metadata.to_text();
        assert_eq!(InstallMetadata::parse(&text, path).unwrap(), metadata);
        let newer = text.replace("\"format\": 1", "\"format\": 9");
        assert!(matches!(
            InstallMetadata::parse(&newer, path),
            Err(MetadataError::Format { found: 9, .. })
        ));
        assert!(matches!(
            InstallMetadata::parse("{}", path),
            Err(MetadataError::Parse { .. })
        ));
    }

    #[test]
    fn service_environment_and_helper_flags_come_from_metadata() {
        let metadata = sample(&SystemLayout::new("/"));
        let env = metadata.daemon_env();
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("BANGER_SOCKET"), "/run/banger-1000/bangerd.sock");
        assert_eq!(get("BANGER_HELPER_SOCKET"), "/run/banger/helper.sock");
        assert_eq!(get("HOME"), "/home/alice");
        assert_eq!(get("BANGER_AGENT"), "/usr/local/lib/banger/banger-agent");
        assert_eq!(
            metadata.helper_args(),
            [
                "--owner-uid",
                "1000",
                "--socket",
                "/run/banger/helper.sock",
                "--bridge",
                "banger0",
                "--subnet",
                "172.30.0.0/24"
            ]
        );
    }
}
