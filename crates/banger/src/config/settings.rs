//! The effective settings of a new VM: a flag wins over the config file, the file over
//! banger's built-in default. Pure: [`resolve`] takes the flags given and the parsed
//! file and says, for each setting, its value and where it came from.
//!
//! The network is one decision: any of `--nat`, `--allow`, `--deny-all` on the command
//! line replaces the file's `nat` and `[policy]` together (so `--nat` alone keeps its
//! meaning: everything allowed); with none of them, the file's `nat` and `[policy]` apply.

use std::path::PathBuf;

use serde::Serialize;

use super::file::{FileConfig, FileSync};

/// Where the extra CA certificates are by default (Debian's place for local CAs).
pub const DEFAULT_HOST_CA_PATH: &str = "/usr/local/share/ca-certificates";

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    File,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::File => "file",
            Source::Default => "default",
        })
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// What the command line said; `None` (or `false` for the network flags) where it said
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub image: Option<String>,
    pub kernel: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disk_mib: Option<u64>,
    pub nat: bool,
    pub allow: Vec<String>,
    pub deny_all: bool,
    pub guest_path: Option<String>,
    /// `vm run`'s bootstrap flag (`--no-bootstrap` is `Some(false)`).
    pub bootstrap: Option<bool>,
    /// `--no-git-identity` is `Some(false)`.
    pub git_identity: Option<bool>,
    /// `--host-ca` is `Some(Some(path))` or `Some(None)` (the configured or default path);
    /// `--no-host-ca` is `None` with `no_host_ca`.
    pub host_ca: Option<Option<PathBuf>>,
    pub no_host_ca: bool,
}

/// The egress policy on top of NAT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub allow: Vec<String>,
    pub deny_all: bool,
}

/// Whether and from where the host's CA certificates go into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCa {
    pub enabled: bool,
    /// A directory (its `*.crt`) or one certificate file.
    pub path: PathBuf,
}

/// Every setting of a new VM. `None` for image, kernel and sizes means "the daemon's
/// default" (the catalog's image, the image's kernel, the built-in spec), which is sent
/// as absent so the daemon stays the one that decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub image: Setting<Option<String>>,
    pub kernel: Setting<Option<String>>,
    pub vcpus: Setting<Option<u32>>,
    pub memory_mib: Setting<Option<u64>>,
    pub disk_mib: Setting<Option<u64>>,
    pub nat: Setting<bool>,
    pub policy: Setting<Policy>,
    pub guest_path: Setting<String>,
    pub bootstrap: Setting<bool>,
    pub git_identity: Setting<bool>,
    pub host_ca: Setting<HostCa>,
    pub file_sync: Setting<Vec<FileSync>>,
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> Setting<T> {
    match (flag, file) {
        (Some(value), _) => Setting {
            value,
            source: Source::Flag,
        },
        (None, Some(value)) => Setting {
            value,
            source: Source::File,
        },
        (None, None) => Setting {
            value: default,
            source: Source::Default,
        },
    }
}

/// Like [`pick`] for settings whose default is "absent".
fn pick_opt<T>(flag: Option<T>, file: Option<T>) -> Setting<Option<T>> {
    pick(flag.map(Some), file.map(Some), None)
}

/// Flag > file > default, setting by setting.
pub fn resolve(flags: &Flags, file: &FileConfig) -> Settings {
    let network_flag = flags.nat || !flags.allow.is_empty() || flags.deny_all;
    let (nat, policy) = if network_flag {
        (
            Setting {
                value: flags.nat,
                source: Source::Flag,
            },
            Setting {
                value: Policy {
                    allow: flags.allow.clone(),
                    deny_all: flags.deny_all,
                },
                source: Source::Flag,
            },
        )
    } else {
        (
            pick(None, file.nat, false),
            pick(
                None,
                file.policy.as_ref().map(|p| Policy {
                    allow: p.allow.clone(),
                    deny_all: p.deny_all,
                }),
                Policy::default(),
            ),
        )
    };
    let configured_ca_path = || {
        file.host_ca_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOST_CA_PATH))
    };
    let host_ca_flag = match (&flags.host_ca, flags.no_host_ca) {
        (Some(path), _) => Some(HostCa {
            enabled: true,
            path: path.clone().unwrap_or_else(configured_ca_path),
        }),
        (None, true) => Some(HostCa {
            enabled: false,
            path: configured_ca_path(),
        }),
        (None, false) => None,
    };
    let host_ca_file = (file.host_ca.is_some() || file.host_ca_path.is_some()).then(|| HostCa {
        enabled: file.host_ca.unwrap_or(false),
        path: configured_ca_path(),
    });
    Settings {
        image: pick_opt(flags.image.clone(), file.image.clone()),
        kernel: pick_opt(flags.kernel.clone(), file.kernel.clone()),
        vcpus: pick_opt(flags.vcpus, file.vcpus),
        memory_mib: pick_opt(flags.memory_mib, file.memory_mib),
        disk_mib: pick_opt(flags.disk_mib, file.disk_mib),
        nat,
        policy,
        guest_path: pick(
            flags.guest_path.clone(),
            file.guest_path.clone(),
            banger_workspace::DEFAULT_GUEST_PATH.to_string(),
        ),
        bootstrap: pick(flags.bootstrap, file.bootstrap, true),
        git_identity: pick(flags.git_identity, file.git_identity, true),
        host_ca: pick(
            host_ca_flag,
            host_ca_file,
            HostCa {
                enabled: false,
                path: PathBuf::from(DEFAULT_HOST_CA_PATH),
            },
        ),
        file_sync: pick(
            None,
            (!file.file_sync.is_empty()).then(|| file.file_sync.clone()),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::FilePolicy;
    use Source::{Default as D, File as F, Flag as G};

    fn file() -> FileConfig {
        FileConfig {
            image: Some("file-image".into()),
            vcpus: Some(2),
            memory_mib: Some(2048),
            nat: Some(true),
            guest_path: Some("/work".into()),
            bootstrap: Some(false),
            git_identity: Some(false),
            host_ca: Some(true),
            policy: Some(FilePolicy {
                allow: vec!["example.com:443".into()],
                deny_all: false,
            }),
            file_sync: vec![FileSync {
                source: "~/.npmrc".into(),
                dest: None,
            }],
            ..FileConfig::default()
        }
    }

    /// (what, flags, file, expected value rendered with Debug, expected source)
    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        type Case = (
            &'static str,
            Flags,
            FileConfig,
            fn(&Settings) -> (String, Source),
        );
        let image: fn(&Settings) -> (String, Source) =
            |s| (format!("{:?}", s.image.value), s.image.source);
        let vcpus: fn(&Settings) -> (String, Source) =
            |s| (format!("{:?}", s.vcpus.value), s.vcpus.source);
        let guest: fn(&Settings) -> (String, Source) =
            |s| (s.guest_path.value.clone(), s.guest_path.source);
        let boot: fn(&Settings) -> (String, Source) =
            |s| (s.bootstrap.value.to_string(), s.bootstrap.source);
        let git: fn(&Settings) -> (String, Source) =
            |s| (s.git_identity.value.to_string(), s.git_identity.source);
        let net: fn(&Settings) -> (String, Source) = |s| {
            assert_eq!(s.nat.source, s.policy.source);
            (
                format!("nat={} {:?}", s.nat.value, s.policy.value),
                s.policy.source,
            )
        };
        let ca: fn(&Settings) -> (String, Source) = |s| {
            (
                format!(
                    "{} {}",
                    s.host_ca.value.enabled,
                    s.host_ca.value.path.display()
                ),
                s.host_ca.source,
            )
        };
        let sync: fn(&Settings) -> (String, Source) =
            |s| (s.file_sync.value.len().to_string(), s.file_sync.source);
        let none = Flags::default;
        let empty = FileConfig::default;
        let cases: Vec<(Case, &str, Source)> = vec![
            (("image default", none(), empty(), image), "None", D),
            (
                ("image file", none(), file(), image),
                "Some(\"file-image\")",
                F,
            ),
            (
                (
                    "image flag",
                    Flags {
                        image: Some("flag-image".into()),
                        ..none()
                    },
                    file(),
                    image,
                ),
                "Some(\"flag-image\")",
                G,
            ),
            (("vcpus default", none(), empty(), vcpus), "None", D),
            (("vcpus file", none(), file(), vcpus), "Some(2)", F),
            (
                (
                    "vcpus flag",
                    Flags {
                        vcpus: Some(4),
                        ..none()
                    },
                    file(),
                    vcpus,
                ),
                "Some(4)",
                G,
            ),
            (("guest default", none(), empty(), guest), "/root/repo", D),
            (("guest file", none(), file(), guest), "/work", F),
            (
                (
                    "guest flag",
                    Flags {
                        guest_path: Some("/x".into()),
                        ..none()
                    },
                    file(),
                    guest,
                ),
                "/x",
                G,
            ),
            (("bootstrap default", none(), empty(), boot), "true", D),
            (("bootstrap file", none(), file(), boot), "false", F),
            (
                (
                    "bootstrap flag",
                    Flags {
                        bootstrap: Some(true),
                        ..none()
                    },
                    file(),
                    boot,
                ),
                "true",
                G,
            ),
            (("git default", none(), empty(), git), "true", D),
            (("git file", none(), file(), git), "false", F),
            (
                (
                    "git flag",
                    Flags {
                        git_identity: Some(false),
                        ..none()
                    },
                    empty(),
                    git,
                ),
                "false",
                G,
            ),
            (
                ("network default", none(), empty(), net),
                "nat=false Policy { allow: [], deny_all: false }",
                D,
            ),
            (
                ("network file", none(), file(), net),
                "nat=true Policy { allow: [\"example.com:443\"], deny_all: false }",
                F,
            ),
            (
                (
                    "--nat alone ignores the file's policy",
                    Flags {
                        nat: true,
                        ..none()
                    },
                    file(),
                    net,
                ),
                "nat=true Policy { allow: [], deny_all: false }",
                G,
            ),
            (
                (
                    "--deny-all beats the file",
                    Flags {
                        deny_all: true,
                        ..none()
                    },
                    file(),
                    net,
                ),
                "nat=false Policy { allow: [], deny_all: true }",
                G,
            ),
            (
                ("host ca default", none(), empty(), ca),
                "false /usr/local/share/ca-certificates",
                D,
            ),
            (
                ("host ca file", none(), file(), ca),
                "true /usr/local/share/ca-certificates",
                F,
            ),
            (
                (
                    "--host-ca takes the file's path",
                    Flags {
                        host_ca: Some(None),
                        ..none()
                    },
                    FileConfig {
                        host_ca_path: Some("/corp".into()),
                        ..empty()
                    },
                    ca,
                ),
                "true /corp",
                G,
            ),
            (
                (
                    "--host-ca=PATH",
                    Flags {
                        host_ca: Some(Some("/mine".into())),
                        ..none()
                    },
                    file(),
                    ca,
                ),
                "true /mine",
                G,
            ),
            (
                (
                    "--no-host-ca",
                    Flags {
                        no_host_ca: true,
                        ..none()
                    },
                    file(),
                    ca,
                ),
                "false /usr/local/share/ca-certificates",
                G,
            ),
            (("file_sync default", none(), empty(), sync), "0", D),
            (("file_sync file", none(), file(), sync), "1", F),
        ];
        for ((what, flags, file, get), want, source) in cases {
            let settings = resolve(&flags, &file);
            assert_eq!(get(&settings), (want.to_string(), source), "{what}");
        }
    }
}
