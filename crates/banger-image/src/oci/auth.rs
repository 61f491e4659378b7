//! Registry authentication, the pure parts: the `WWW-Authenticate` challenge a registry
//! answers 401 with (`Bearer realm=...,service=...,scope=...` or `Basic realm=...`), the
//! token endpoint's answer, and credentials from the user's docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths.<registry>.auth`).
//! Credential helpers (`credsStore`, `credHelpers`) are not run: banger never executes
//! programs named by a config file.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key=value` pairs; quoted values may contain commas.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.insert(key, value);
    }
    params
}

/// The scope to ask for when the challenge names none: pulling `repository`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The token endpoint's JSON answer (`token` or, OAuth-style, `access_token`).
pub fn parse_token(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenAnswer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// `Basic <base64(user:password)>`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Credentials for `registry` (as written in the reference, e.g. `docker.io`,
/// `localhost:5000`) from the text of a docker `config.json`. Docker Hub's entry is
/// keyed by its legacy index URL; keys may carry a scheme and a path.
pub fn credentials_for(config_json: &str, registry: &str) -> Option<Credentials> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, AuthEntry>,
    }
    #[derive(Deserialize)]
    struct AuthEntry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let config: Config = serde_json::from_str(config_json).ok()?;
    let wanted = normalize_key(registry);
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| normalize_key(key) == wanted)
        .map(|(_, entry)| entry)?;
    if let Some(auth) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Some(Credentials {
        username: entry.username.clone()?,
        password: entry.password.clone()?,
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`.
fn normalize_key(key: &str) -> String {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/python:pull".into()),
                }),
            ),
            (
                r#"bearer realm="http://127.0.0.1:9/t", scope="repository:a:pull,push""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:9/t".into(),
                    service: None,
                    scope: Some("repository:a:pull,push".into()),
                }),
            ),
            (
                "Bearer realm=http://h/t,service=reg",
                Some(Challenge::Bearer {
                    realm: "http://h/t".into(),
                    service: Some("reg".into()),
                    scope: None,
                }),
            ),
            (r#"Basic realm="basic-realm""#, Some(Challenge::Basic)),
            ("Bearer service=x", None),
            ("Negotiate abc", None),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_challenge(header), expected, "{header}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_token(br#"{"token":"abc"}"#), Some("abc".into()));
        assert_eq!(
            parse_token(br#"{"access_token":"xyz","expires_in":300}"#),
            Some("xyz".into())
        );
        assert_eq!(parse_token(br#"{"token":""}"#), None);
        assert_eq!(parse_token(b"not json"), None);
    }

    #[test]
    fn docker_config_credentials() {
        let config = r#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndpdGg6Y29sb25z"},
                "localhost:5000": {"username": "u", "password": "p"},
                "ghcr.io": {}
            },
            "credsStore": "desktop"
        }"#;
        let hub = credentials_for(config, "docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass:with:colons")
        );
        assert_eq!(hub.basic_header(), "Basic dXNlcjpwYXNzOndpdGg6Y29sb25z");
        assert_eq!(
            credentials_for(config, "localhost:5000").map(|c| c.username),
            Some("u".into())
        );
        assert_eq!(credentials_for(config, "ghcr.io"), None);
        assert_eq!(credentials_for(config, "quay.io"), None);
        assert_eq!(credentials_for("{", "docker.io"), None);
        assert!(!format!("{hub:?}").contains("with:colons"));
    }
}
