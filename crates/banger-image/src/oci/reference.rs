//! Image references as users type them (`python:3.12`, `localhost:5000/app@sha256:…`,
//! `ghcr.io/org/tool:v1`), parsed the way docker does: a first component with a `.` or
//! `:` or equal to `localhost` is a registry, otherwise the image is on Docker Hub, where
//! a one-component name lives under `library/`. Pure.

use std::fmt;

/// Docker Hub's registry host for the API (the name users write is `docker.io`).
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DOCKER_HUB: &str = "docker.io";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path, e.g. `library/python`.
    pub repository: String,
    /// Tag, when no digest pins the manifest (defaults to `latest`).
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a manifest.
    pub digest: Option<String>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("an image reference cannot be empty")]
    Empty,
    #[error("invalid repository name {0:?} (lower-case letters, digits, `.`, `_`, `-`, `/`)")]
    Repository(String),
    #[error("invalid tag {0:?}")]
    Tag(String),
    #[error("invalid digest {0:?} (expected sha256:<64 hex digits>)")]
    Digest(String),
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                if !is_sha256_digest(digest) {
                    return Err(ReferenceError::Digest(digest.to_string()));
                }
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last `:` that comes after the last `/` (a port is before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::Tag(tag.clone()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository(repository));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the API is reached at (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The digest when pinned, else the tag: what `GET /v2/<repo>/manifests/<x>` takes.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// True for a registry on this machine, which is spoken to over plain HTTP when it
    /// does not answer TLS (as docker treats `localhost`).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// A default image name for `image import` without `--name`: the last repository
    /// component, then the tag unless it is `latest` (`python:3.12` → `python-3.12`),
    /// with anything but `[a-z0-9._-]` turned into `-` (image names are file names).
    pub fn suggested_name(&self) -> String {
        let base = self.repository.rsplit('/').next().unwrap_or("image");
        let raw = match self.tag.as_deref() {
            Some("latest") | None => base.to_string(),
            Some(tag) => format!("{base}-{tag}"),
        };
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        while name.contains("--") {
            name = name.replace("--", "-");
        }
        let edge = |c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit());
        let name = name.trim_matches(edge);
        let name = if name.is_empty() { "image" } else { name };
        name.chars()
            .take(48)
            .collect::<String>()
            .trim_end_matches(edge)
            .to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !tag.starts_with(['.', '-'])
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_like_docker() {
        type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "python".into(),
                "docker.io",
                "library/python",
                Some("latest"),
                None,
            ),
            (
                "python:3.12".into(),
                "docker.io",
                "library/python",
                Some("3.12"),
                None,
            ),
            (
                "docker.io/library/python:3.12".into(),
                "docker.io",
                "library/python",
                Some("3.12"),
                None,
            ),
            (
                "user/app".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                None,
            ),
            (
                "localhost:5000/app:v1".into(),
                "localhost:5000",
                "app",
                Some("v1"),
                None,
            ),
            (
                "localhost/app".into(),
                "localhost",
                "app",
                Some("latest"),
                None,
            ),
            (
                "127.0.0.1:41234/tiny/layers".into(),
                "127.0.0.1:41234",
                "tiny/layers",
                Some("latest"),
                None,
            ),
            (
                "ghcr.io/org/tool:v1.2".into(),
                "ghcr.io",
                "org/tool",
                Some("v1.2"),
                None,
            ),
            (
                format!("ghcr.io/org/tool@{D}"),
                "ghcr.io",
                "org/tool",
                None,
                Some(D),
            ),
            (
                format!("app:v1@{D}"),
                "docker.io",
                "library/app",
                Some("v1"),
                Some(D),
            ),
        ];
        for (input, registry, repository, tag, digest) in cases {
            let got = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    got.registry.as_str(),
                    got.repository.as_str(),
                    got.tag.as_deref(),
                    got.digest.as_deref()
                ),
                (registry, repository, tag, digest),
                "{input}"
            );
        }
        let bad = [
            ("", ReferenceError::Empty),
            (
                "Python",
                ReferenceError::Repository("library/Python".into()),
            ),
            ("app:", ReferenceError::Tag("".into())),
            (
                "app@sha256:abc",
                ReferenceError::Digest("sha256:abc".into()),
            ),
            ("a//b", ReferenceError::Repository("a//b".into())),
        ];
        for (input, error) in bad {
            assert_eq!(Reference::parse(input), Err(error), "{input}");
        }
    }

    #[test]
    fn hosts_names_and_display() {
        let hub = Reference::parse("python:3.12").unwrap();
        assert_eq!(hub.api_host(), DOCKER_HUB_API);
        assert_eq!(hub.manifest_ref(), "3.12");
        assert_eq!(hub.to_string(), "docker.io/library/python:3.12");
        assert!(!hub.is_loopback());
        for local in [
            "localhost:5000/a",
            "127.0.0.1:5000/a",
            "[::1]:5000/a",
            "127.0.0.1/a",
        ] {
            assert!(Reference::parse(local).unwrap().is_loopback(), "{local}");
        }
        let pinned = Reference::parse(&format!("ghcr.io/o/t@{D}")).unwrap();
        assert_eq!(pinned.manifest_ref(), D);
        let names = [
            ("python:3.12", "python-3.12"),
            ("localhost:5000/tiny/layers", "layers"),
            ("org/My_App:V1.0", "my_app-v1.0"),
            ("busybox:1", "busybox-1"),
            ("0xfeed/2048:latest", "2048"),
        ];
        for (input, name) in names {
            let parsed = Reference::parse(&input.to_ascii_lowercase()).unwrap();
            assert_eq!(parsed.suggested_name(), name, "{input}");
        }
    }
}
