//! A small HTTP/1.1 client for downloads (registry API, layer blobs, bundles): hyper's
//! connection API over TCP, with rustls (ring, the host's CA store, which honours
//! `SSL_CERT_FILE`) for `https`. One connection per request, redirects followed (a blob
//! may live on another host; credentials are not forwarded there), a connect timeout and
//! a stall timeout on every body read, so a dead peer fails instead of hanging.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connecting (TCP + TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may go without sending anything.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    #[error("cannot connect to {host}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no CA certificates found on this host (install ca-certificates)")]
    NoRoots,
    #[error("HTTP exchange with {host} failed")]
    Protocol {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{host} did not answer within {}s", timeout.as_secs())]
    Timeout { host: String, timeout: Duration },
    #[error("{url} sent more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("too many redirects from {0}")]
    TooManyRedirects(String),
}

/// A parsed `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Host without brackets (`::1`, `example.com`).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, HttpError> {
        let bad = || HttpError::InvalidUrl(text.to_string());
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad())?,
            None if https => 443,
            None => 80,
        };
        Ok(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// `host:port` (bracketed for IPv6) as in a `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves a `Location` header against this URL.
    pub fn join(&self, location: &str) -> Result<Url, HttpError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Url::parse(location);
        }
        let mut next = self.clone();
        if location.starts_with('/') {
            next.path = location.to_string();
        } else {
            let dir = self.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            next.path = format!("{dir}/{location}");
        }
        Ok(next)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// A response whose body has not been read yet.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    /// The URL that answered (after redirects).
    pub url: Url,
    body: Incoming,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| HttpError::Timeout {
                    host: self.url.host.clone(),
                    timeout: STALL_TIMEOUT,
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(HttpError::Protocol {
                        host: self.url.host.clone(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, refusing more than `limit` bytes (documents, tokens).
    pub async fn bytes(mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(HttpError::TooLarge {
                    url: self.url.to_string(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Sends GET requests. Cheap to clone; clones share the TLS configuration.
#[derive(Debug, Default, Clone)]
pub struct HttpClient {
    tls: Arc<OnceLock<Result<Arc<rustls::ClientConfig>, String>>>,
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient::default()
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, HttpError> {
        let config = self.tls.get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            for cert in loaded.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no roots".to_string());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|e| e.to_string())
        });
        config.clone().map_err(|_| HttpError::NoRoots)
    }

    /// GET `url` with `headers`, following redirects. `Authorization` is only sent to
    /// the host it was meant for.
    pub async fn get(&self, url: &Url, headers: &[(&str, String)]) -> Result<Response, HttpError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let same_host = current.host == url.host && current.port == url.port;
            let sent: Vec<(&str, String)> = headers
                .iter()
                .filter(|(name, _)| same_host || !name.eq_ignore_ascii_case("authorization"))
                .cloned()
                .collect();
            let response = self.get_once(&current, &sent).await?;
            if matches!(response.status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = response.header("location")
            {
                current = current.join(location)?;
                continue;
            }
            return Ok(response);
        }
        Err(HttpError::TooManyRedirects(url.to_string()))
    }

    async fn get_once(&self, url: &Url, headers: &[(&str, String)]) -> Result<Response, HttpError> {
        let host = url.host.clone();
        let timeout = |host: &str| HttpError::Timeout {
            host: host.to_string(),
            timeout: CONNECT_TIMEOUT,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| timeout(&host))?
        .map_err(|source| HttpError::Connect {
            host: url.authority(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let request = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(url.path.as_str())
            .header(hyper::header::HOST, url.authority())
            .header(
                hyper::header::USER_AGENT,
                concat!("banger/", env!("CARGO_PKG_VERSION")),
            );
        let request = headers
            .iter()
            .fold(request, |request, (name, value)| {
                request.header(*name, value.as_str())
            })
            .body(Empty::<Bytes>::new())
            .map_err(|_| HttpError::InvalidUrl(url.to_string()))?;
        let protocol = |source| HttpError::Protocol {
            host: host.clone(),
            source,
        };
        let response = if url.https {
            let config = self.tls_config()?;
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|_| HttpError::InvalidUrl(url.to_string()))?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| timeout(&host))?
                .map_err(|source| HttpError::Tls {
                    host: url.authority(),
                    source,
                })?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(protocol)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(protocol)?
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(protocol)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(protocol)?
        };
        let (parts, body) = response.into_parts();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            url: url.clone(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let cases = [
            (
                "http://127.0.0.1:5000/v2/",
                false,
                "127.0.0.1",
                5000,
                "/v2/",
            ),
            (
                "https://registry-1.docker.io/v2/x/manifests/latest",
                true,
                "registry-1.docker.io",
                443,
                "/v2/x/manifests/latest",
            ),
            ("http://[::1]:8080", false, "::1", 8080, "/"),
            (
                "https://auth.docker.io/token?service=a&scope=b",
                true,
                "auth.docker.io",
                443,
                "/token?service=a&scope=b",
            ),
            ("http://h?x=1", false, "h", 80, "/?x=1"),
        ];
        for (text, https, host, port, path) in cases {
            let url = Url::parse(text).unwrap();
            assert_eq!(
                (url.https, url.host.as_str(), url.port, url.path.as_str()),
                (https, host, port, path),
                "{text}"
            );
        }
        for bad in ["ftp://x/", "http://", "http://h:port/", "http://[::1/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        let base = Url::parse("http://[::1]:8080/v2/a/blobs/x").unwrap();
        assert_eq!(base.authority(), "[::1]:8080");
        assert_eq!(
            base.join("/other").unwrap().to_string(),
            "http://[::1]:8080/other"
        );
        assert_eq!(
            base.join("y").unwrap().to_string(),
            "http://[::1]:8080/v2/a/blobs/y"
        );
        assert_eq!(
            base.join("https://cdn.example/b?sig=1")
                .unwrap()
                .to_string(),
            "https://cdn.example/b?sig=1"
        );
        assert_eq!(Url::parse("https://h:443/").unwrap().authority(), "h");
    }
}
