//! The config file's text to [`FileConfig`]: pure (text in, value or error out). Every
//! value is checked with the same rules as its flag, so a file that parses here behaves
//! like the flags it stands for. An unknown key, a value of the wrong type or a value
//! its rule refuses is a [`ConfigError`] naming the file, the line and the key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::values;

/// What a config file says; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub image: Option<String>,
    pub kernel: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub disk_mib: Option<u64>,
    pub nat: Option<bool>,
    pub guest_path: Option<String>,
    pub bootstrap: Option<bool>,
    pub git_identity: Option<bool>,
    pub host_ca: Option<bool>,
    pub host_ca_path: Option<PathBuf>,
    /// `[policy]`, when the file has the table.
    pub policy: Option<FilePolicy>,
    pub file_sync: Vec<FileSync>,
}

/// `[policy]`: the egress policy a VM gets when no network flag is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePolicy {
    /// Normalised `HOST[:PORT]` rules, as `--allow` takes them.
    pub allow: Vec<String>,
    pub deny_all: bool,
}

/// One `[[file_sync]]` entry: a path in the owner's home (`~/x`, relative to the home,
/// or absolute) and where it goes in the guest (default: the same path under `/root`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSync {
    pub source: String,
    pub dest: Option<String>,
}

/// A config file that cannot be used: `FILE:LINE: KEY: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {key}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    /// The key, dotted inside a table (`policy.allow`, `file_sync.source`).
    pub key: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    image: Option<Spanned<String>>,
    kernel: Option<Spanned<String>>,
    vcpus: Option<Spanned<i64>>,
    memory: Option<Spanned<Size>>,
    disk: Option<Spanned<Size>>,
    nat: Option<bool>,
    guest_path: Option<Spanned<String>>,
    bootstrap: Option<bool>,
    git_identity: Option<bool>,
    host_ca: Option<bool>,
    host_ca_path: Option<Spanned<String>>,
    policy: Option<RawPolicy>,
    file_sync: Option<Vec<RawSync>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allow: Option<Vec<Spanned<String>>>,
    deny_all: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    source: Spanned<String>,
    dest: Option<Spanned<String>>,
}

/// `memory = "2GiB"` or `memory = 2048` (MiB, like a bare number on the command line).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a size such as \"2GiB\" or a number of MiB")]
enum Size {
    Text(String),
    Mib(i64),
}

impl Size {
    fn text(&self) -> String {
        match self {
            Size::Text(text) => text.clone(),
            Size::Mib(mib) => mib.to_string(),
        }
    }
}

/// Parses the config file `path` whose contents are `text`.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let fail = |span: Range<usize>, key: &str, message: String| ConfigError {
        path: path.to_path_buf(),
        line: line_of(text, span.start),
        key: key.to_string(),
        message,
    };
    let raw: Raw = toml::from_str(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        ConfigError {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            key: key_at(text, span.start),
            message: err.message().trim().to_string(),
        }
    })?;
    let checked =
        |value: &Spanned<String>, key: &str, check: &dyn Fn(&str) -> Result<String, String>| {
            check(value.get_ref()).map_err(|message| fail(value.span(), key, message))
        };
    let size = |value: &Spanned<Size>, key: &str, check: fn(&str) -> Result<u64, String>| {
        check(&value.get_ref().text()).map_err(|message| fail(value.span(), key, message))
    };
    let mut config = FileConfig {
        image: raw
            .image
            .as_ref()
            .map(|v| checked(v, "image", &|s| resource("image name", s)))
            .transpose()?,
        kernel: raw
            .kernel
            .as_ref()
            .map(|v| checked(v, "kernel", &|s| resource("kernel name", s)))
            .transpose()?,
        vcpus: raw
            .vcpus
            .as_ref()
            .map(|v| {
                u32::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        fail(
                            v.span(),
                            "vcpus",
                            "must be a whole number, at least 1".into(),
                        )
                    })
            })
            .transpose()?,
        memory_mib: raw
            .memory
            .as_ref()
            .map(|v| size(v, "memory", values::memory_mib))
            .transpose()?,
        disk_mib: raw
            .disk
            .as_ref()
            .map(|v| size(v, "disk", values::disk_mib))
            .transpose()?,
        nat: raw.nat,
        guest_path: raw
            .guest_path
            .as_ref()
            .map(|v| {
                checked(v, "guest_path", &|s| {
                    banger_workspace::validate_guest_path(s).map_err(|e| e.to_string())
                })
            })
            .transpose()?,
        bootstrap: raw.bootstrap,
        git_identity: raw.git_identity,
        host_ca: raw.host_ca,
        host_ca_path: raw
            .host_ca_path
            .as_ref()
            .map(|v| checked(v, "host_ca_path", &absolute))
            .transpose()?
            .map(PathBuf::from),
        policy: None,
        file_sync: Vec::new(),
    };
    if let Some(policy) = &raw.policy {
        let allow = policy
            .allow
            .iter()
            .flatten()
            .map(|rule| checked(rule, "policy.allow", &values::allow_rule))
            .collect::<Result<Vec<_>, _>>()?;
        let deny_all = policy.deny_all.as_ref().is_some_and(|d| *d.get_ref());
        if let (true, Some(deny)) = (deny_all && !allow.is_empty(), &policy.deny_all) {
            return Err(fail(
                deny.span(),
                "policy.deny_all",
                "deny_all = true and a non-empty allow list contradict each other".into(),
            ));
        }
        config.policy = Some(FilePolicy { allow, deny_all });
    }
    for entry in raw.file_sync.iter().flatten() {
        let source = checked(&entry.source, "file_sync.source", &|s| {
            if s.is_empty() {
                Err("is empty; name a file or directory in your home".into())
            } else {
                Ok(s.to_string())
            }
        })?;
        let dest = entry
            .dest
            .as_ref()
            .map(|d| {
                checked(d, "file_sync.dest", &|s| {
                    absolute(s).and_then(|s| {
                        if s.trim_end_matches('/').is_empty() {
                            Err("cannot be / itself; name the file or directory it becomes".into())
                        } else {
                            Ok(s)
                        }
                    })
                })
            })
            .transpose()?;
        config.file_sync.push(FileSync { source, dest });
    }
    Ok(config)
}

fn resource(what: &'static str, input: &str) -> Result<String, String> {
    banger_model::ResourceName::parse_as(what, input)
        .map(banger_model::ResourceName::into_string)
        .map_err(|err| err.to_string())
}

fn absolute(input: &str) -> Result<String, String> {
    if input.starts_with('/') {
        Ok(input.to_string())
    } else {
        Err(format!("{input:?} is not an absolute path"))
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key a parse error at `offset` is about: the bare key on that line (`key = ...`),
/// dotted with the table it is in, or the table header itself.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    let header = |line: &str| {
        line.strip_prefix('[').map(|rest| {
            rest.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    if let Some(table) = header(line) {
        return table;
    }
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_string();
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find_map(|line| header(line).filter(|_| line.starts_with('[')));
    match (table, key.is_empty()) {
        (_, true) => "(top level)".to_string(),
        (Some(table), false) => format!("{table}.{key}"),
        (None, false) => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<FileConfig, ConfigError> {
        parse(Path::new("/home/u/.config/banger/config.toml"), text)
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
image = "debian-bookworm"
kernel = "debian-6.1-cloud"
vcpus = 2
memory = "2GiB"
disk = 8192
nat = true
guest_path = "/work/repo"
bootstrap = false
git_identity = false
host_ca = true
host_ca_path = "/etc/corp/ca"

[policy]
allow = ["Example.COM:443", "*.pythonhosted.org"]

[[file_sync]]
source = "~/.npmrc"

[[file_sync]]
source = ".config/gh/hosts.yml"
dest = "/root/.config/gh/hosts.yml"
"#;
        let config = parse_text(text).unwrap();
        assert_eq!(
            config,
            FileConfig {
                image: Some("debian-bookworm".into()),
                kernel: Some("debian-6.1-cloud".into()),
                vcpus: Some(2),
                memory_mib: Some(2048),
                disk_mib: Some(8192),
                nat: Some(true),
                guest_path: Some("/work/repo".into()),
                bootstrap: Some(false),
                git_identity: Some(false),
                host_ca: Some(true),
                host_ca_path: Some("/etc/corp/ca".into()),
                policy: Some(FilePolicy {
                    allow: vec!["example.com:443".into(), "*.pythonhosted.org".into()],
                    deny_all: false,
                }),
                file_sync: vec![
                    FileSync {
                        source: "~/.npmrc".into(),
                        dest: None
                    },
                    FileSync {
                        source: ".config/gh/hosts.yml".into(),
                        dest: Some("/root/.config/gh/hosts.yml".into())
                    },
                ],
            }
        );
        assert_eq!(parse_text("").unwrap(), FileConfig::default());
    }

    /// Each bad file gives `FILE:LINE: KEY: ...` with the line and key of the mistake.
    #[test]
    fn errors_name_the_file_line_and_key() {
        let table: &[(&str, usize, &str, &str)] = &[
            ("nat = true\nimgae = \"x\"\n", 2, "imgae", "unknown field"),
            ("vcpus = \"two\"\n", 1, "vcpus", "invalid type"),
            ("\n\nvcpus = 0\n", 3, "vcpus", "at least 1"),
            ("memory = \"lots\"\n", 1, "memory", ""),
            ("memory = \"64MiB\"\n", 1, "memory", "at least"),
            ("disk = true\n", 1, "disk", "size"),
            ("nat = \"yes\"\n", 1, "nat", "invalid type"),
            ("guest_path = \"repo\"\n", 1, "guest_path", ""),
            ("image = \"Web\"\n", 1, "image", "image name"),
            ("host_ca_path = \"certs\"\n", 1, "host_ca_path", "absolute"),
            (
                "nat = true\n[policy]\nallow = [\"ok.com\", \"bad host\"]\n",
                3,
                "policy.allow",
                "",
            ),
            (
                "[policy]\nallowed = []\n",
                2,
                "policy.allowed",
                "unknown field",
            ),
            (
                "[policy]\nallow = [\"a.com\"]\ndeny_all = true\n",
                3,
                "policy.deny_all",
                "contradict",
            ),
            (
                "[[file_sync]]\nsource = \"~/.npmrc\"\ndst = \"/x\"\n",
                3,
                "file_sync.dst",
                "unknown field",
            ),
            (
                "[[file_sync]]\nsource = \"a\"\n\n[[file_sync]]\nsource = \"b\"\ndest = \"rel\"\n",
                6,
                "file_sync.dest",
                "absolute",
            ),
            ("nat = true\nnat = false\n", 2, "nat", "duplicate"),
            (
                "[[file_sync]]\nsource = \"a\"\ndest = \"/\"\n",
                3,
                "file_sync.dest",
                "cannot be /",
            ),
            ("[polcy]\nallow = []\n", 1, "polcy", "unknown field"),
        ];
        for (text, line, key, message) in table {
            let err = parse_text(text).expect_err(text);
            assert_eq!(
                (err.line, err.key.as_str()),
                (*line, *key),
                "{text:?}: {err}"
            );
            assert!(err.message.contains(message), "{text:?}: {err}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!(
                    "/home/u/.config/banger/config.toml:{line}: {key}: "
                )),
                "{shown}"
            );
        }
    }
}
