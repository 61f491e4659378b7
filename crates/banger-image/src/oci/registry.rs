//! The registry HTTP API v2 client: `GET /v2/<repo>/manifests/<ref>` and
//! `GET /v2/<repo>/blobs/<digest>`, with the auth dance registries expect (a 401 names a
//! token endpoint; banger asks it for a pull token, anonymously or with the user's
//! docker credentials, and retries). A registry on loopback that does not speak TLS is
//! spoken to over plain HTTP, as docker does for `localhost`; every other registry is
//! HTTPS only.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::http::{HttpClient, HttpError, Response, Url};
use crate::oci::auth::{self, Challenge, Credentials};
use crate::oci::manifest::{self, Document, ManifestError};
use crate::oci::reference::Reference;

/// The largest manifest, index or config document accepted.
const MAX_DOCUMENT: usize = 8 << 20;

/// Why talking to the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("{url} answered {status}{}", excerpt(body))]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{registry} refused access to {repository} ({detail})")]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("{what} was not found on {registry}")]
    NotFound { registry: String, what: String },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {}", trimmed.chars().take(200).collect::<String>())
    }
}

/// How requests are authorised once the registry has said how.
#[derive(Debug, Clone)]
enum Authorization {
    None,
    Bearer(String),
    Basic(String),
}

/// A connection to one repository of one registry.
#[derive(Debug)]
pub struct Registry {
    http: HttpClient,
    reference: Reference,
    base: Url,
    credentials: Option<Credentials>,
    authorization: Mutex<Authorization>,
}

impl Registry {
    /// Picks the scheme (HTTPS; plain HTTP for a loopback registry without TLS) by
    /// probing `GET /v2/`, whose answer (200 or 401) also starts the auth dance.
    pub async fn connect(
        http: &HttpClient,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<Registry, RegistryError> {
        let https = Url::parse(&format!("https://{}/v2/", reference.api_host()))?;
        let mut registry = Registry {
            http: http.clone(),
            reference: reference.clone(),
            base: https.clone(),
            credentials,
            authorization: Mutex::new(Authorization::None),
        };
        match http.get(&https, &[]).await {
            Ok(response) => {
                registry.note_challenge(&response).await?;
                Ok(registry)
            }
            Err(HttpError::Tls { .. } | HttpError::Connect { .. }) if reference.is_loopback() => {
                let plain = Url::parse(&format!("http://{}/v2/", reference.api_host()))?;
                let response = http.get(&plain, &[]).await?;
                registry.base = plain;
                registry.note_challenge(&response).await?;
                Ok(registry)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The repository's URL for `suffix` (`manifests/latest`, `blobs/sha256:…`).
    fn url(&self, suffix: &str) -> Result<Url, RegistryError> {
        Ok(self
            .base
            .join(&format!("/v2/{}/{suffix}", self.reference.repository))?)
    }

    fn auth_header(&self) -> Option<String> {
        match &*self.authorization.lock().unwrap_or_else(|p| p.into_inner()) {
            Authorization::None => None,
            Authorization::Bearer(token) => Some(format!("Bearer {token}")),
            Authorization::Basic(header) => Some(header.clone()),
        }
    }

    /// Reads a 401's challenge and gets what it asks for (a token, or basic credentials).
    async fn note_challenge(&self, response: &Response) -> Result<(), RegistryError> {
        if response.status != 401 {
            return Ok(());
        }
        let header = response.header("www-authenticate").unwrap_or_default();
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            registry: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            detail,
        };
        let authorization = match auth::parse_challenge(header) {
            Some(Challenge::Basic) => match &self.credentials {
                Some(credentials) => Authorization::Basic(credentials.basic_header()),
                None => {
                    return Err(unauthorized(
                        "it wants a user name and password; add them with `docker login`".into(),
                    ));
                }
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| auth::pull_scope(&self.reference.repository));
                // A /v2/ probe's challenge names no repository; ask for ours.
                let scope = if scope.contains(&self.reference.repository) {
                    scope
                } else {
                    auth::pull_scope(&self.reference.repository)
                };
                let mut query = vec![("scope", scope)];
                if let Some(service) = service {
                    query.push(("service", service));
                }
                let separator = if realm.contains('?') { '&' } else { '?' };
                let query: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                    .collect();
                let token_url = Url::parse(&format!("{realm}{separator}{}", query.join("&")))?;
                let headers: Vec<(&str, String)> = self
                    .credentials
                    .iter()
                    .map(|c| ("authorization", c.basic_header()))
                    .collect();
                let answer = self.http.get(&token_url, &headers).await?;
                if answer.status != 200 {
                    let status = answer.status;
                    let body = String::from_utf8_lossy(&answer.bytes(64 << 10).await?).into_owned();
                    return Err(unauthorized(format!(
                        "its token service answered {status}{}",
                        excerpt(&body)
                    )));
                }
                let body = answer.bytes(MAX_DOCUMENT).await?;
                let token = auth::parse_token(&body)
                    .ok_or_else(|| unauthorized("its token service sent no token".into()))?;
                Authorization::Bearer(token)
            }
            None => return Err(unauthorized(format!("unsupported challenge {header:?}"))),
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = authorization;
        Ok(())
    }

    /// GET with the current authorization; one 401 leads to a new token and a retry.
    pub async fn get(
        &self,
        url: &Url,
        extra: &[(&str, String)],
    ) -> Result<Response, RegistryError> {
        for attempt in 0..2 {
            let mut headers: Vec<(&str, String)> = extra.to_vec();
            if let Some(value) = self.auth_header() {
                headers.push(("authorization", value));
            }
            let response = self.http.get(url, &headers).await?;
            if response.status == 401 && attempt == 0 {
                self.note_challenge(&response).await?;
                continue;
            }
            if response.status == 401 || response.status == 403 {
                return Err(RegistryError::Unauthorized {
                    registry: self.reference.registry.clone(),
                    repository: self.reference.repository.clone(),
                    detail: format!("HTTP {}", response.status),
                });
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The manifest for `reference` (a tag or digest), with its digest. A manifest
    /// fetched by digest must hash to it.
    pub async fn document(&self, reference: &str) -> Result<(Document, String), RegistryError> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let response = self
            .get(&url, &[("accept", manifest::ACCEPT.to_string())])
            .await?;
        let what = format!("manifest {}:{reference}", self.reference.repository);
        let response = self.expect_ok(response, &what).await?;
        let content_type = response
            .header("content-type")
            .unwrap_or_default()
            .to_string();
        let body = response.bytes(MAX_DOCUMENT).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok((manifest::parse(&content_type, &body)?, digest))
    }

    /// A small blob (the config) in memory, checked against its digest.
    pub async fn small_blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let response = self.blob(digest, 0).await?;
        let what = format!("blob {digest}");
        let response = self.expect_ok(response, &what).await?;
        let body = response.bytes(MAX_DOCUMENT).await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    /// `GET` a blob from byte `offset` on (a `Range` request when not 0). The caller
    /// reads the status: 200 (whole blob), 206 (from `offset`), 416, errors.
    pub async fn blob(&self, digest: &str, offset: u64) -> Result<Response, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("range", format!("bytes={offset}-")));
        }
        self.get(&url, &headers).await
    }

    async fn expect_ok(&self, response: Response, what: &str) -> Result<Response, RegistryError> {
        match response.status {
            200 => Ok(response),
            404 => Err(RegistryError::NotFound {
                registry: self.reference.registry.clone(),
                what: what.to_string(),
            }),
            status => {
                let url = response.url.to_string();
                let body = String::from_utf8_lossy(&response.bytes(64 << 10).await?).into_owned();
                Err(RegistryError::Status { url, status, body })
            }
        }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            percent_encode("repository:library/python:pull"),
            "repository%3Alibrary%2Fpython%3Apull"
        );
        assert_eq!(percent_encode("registry.docker.io"), "registry.docker.io");
    }
}
