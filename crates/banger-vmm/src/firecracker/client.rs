//! [`FirecrackerApi`]: HTTP/1.1 over Firecracker's API socket (hyper's low-level
//! `client::conn::http1` on a tokio `UnixStream`; hyper-util has no Unix connector). One
//! connection per request keeps it simple and robust; the API is only used at boot and
//! stop. Error bodies (`{"fault_message": ...}`) become [`ApiError::Fault`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::error::VmmError;
use crate::firecracker::api::{self, ApiRequest, BootPlan, Method};
use crate::warm::RootDiskSwap;

/// How long one request may take. Pre-boot requests are immediate; `InstanceStart` loads
/// the kernel, which takes well under a second.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to {}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange failed")]
    Http(#[source] hyper::Error),
    #[error("cannot build the HTTP request: {0}")]
    Request(String),
    #[error("Firecracker answered {status}: {fault_message}")]
    Fault { status: u16, fault_message: String },
    #[error("Firecracker answered {status} without a fault message: {body}")]
    UnexpectedStatus { status: u16, body: String },
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    /// The JSON body, `Null` for the usual empty 204.
    pub body: Value,
}

/// Turns a status and body into a result: 2xx is success; otherwise Firecracker's
/// `{"fault_message": ...}` is the reason.
pub fn interpret_response(status: u16, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let parsed: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    if (200..300).contains(&status) {
        return Ok(ApiResponse {
            status,
            body: parsed.unwrap_or(Value::Null),
        });
    }
    match parsed
        .as_ref()
        .and_then(|value| value.get("fault_message"))
        .and_then(Value::as_str)
    {
        Some(fault_message) => Err(ApiError::Fault {
            status,
            fault_message: fault_message.to_string(),
        }),
        None => Err(ApiError::UnexpectedStatus {
            status,
            body: String::from_utf8_lossy(body).trim().to_string(),
        }),
    }
}

/// A client for one Firecracker API socket. Usable without a Firecracker process, which
/// is how the contract test drives it.
#[derive(Debug, Clone)]
pub struct FirecrackerApi {
    socket: PathBuf,
    timeout: Duration,
}

impl FirecrackerApi {
    pub fn new(socket: impl Into<PathBuf>) -> FirecrackerApi {
        FirecrackerApi {
            socket: socket.into(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> FirecrackerApi {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; a non-2xx answer is an error.
    pub async fn send(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| ApiError::Timeout(self.timeout))?
    }

    async fn exchange(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ApiError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ApiError::Http)?;
        // The connection future drives the socket; it ends when `sender` is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Firecracker API connection ended with an error");
            }
        });
        let method = match request.method {
            Method::Get => hyper::Method::GET,
            Method::Put => hyper::Method::PUT,
            Method::Patch => hyper::Method::PATCH,
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(request.path.as_str())
            .header(HOST, "localhost")
            .header(ACCEPT, "application/json");
        let body = match &request.body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let http_request = builder
            .body(Full::new(body))
            .map_err(|error| ApiError::Request(error.to_string()))?;
        let response = sender
            .send_request(http_request)
            .await
            .map_err(ApiError::Http)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ApiError::Http)?
            .to_bytes();
        interpret_response(status, &body)
    }

    /// Sends `request`, naming it in the error.
    pub async fn call(&self, request: &ApiRequest) -> Result<ApiResponse, VmmError> {
        tracing::debug!(request = %request.label(), "Firecracker API");
        self.send(request).await.map_err(|source| VmmError::Api {
            request: request.label(),
            source,
        })
    }

    /// `GET /`; answers once Firecracker's API thread runs.
    pub async fn describe_instance(&self) -> Result<ApiResponse, ApiError> {
        self.send(&api::describe_instance()).await
    }

    /// The whole pre-boot configuration, then `InstanceStart`. Stops at the first refusal.
    pub async fn configure_and_start(&self, plan: &BootPlan) -> Result<(), VmmError> {
        for request in api::preboot_requests(plan) {
            self.call(&request).await?;
        }
        self.call(&api::instance_start()).await.map(drop)
    }

    /// Stops the guest's vCPUs.
    pub async fn pause(&self) -> Result<(), VmmError> {
        self.call(&api::pause()).await.map(drop)
    }

    /// Pauses the guest and writes a full snapshot (device state and memory). The guest
    /// stays paused. With `root_disk`, the saved state names the disk copy: the root
    /// drive points at it for the save and at the live disk again after (also when the
    /// save fails).
    pub async fn pause_and_snapshot(
        &self,
        snapshot_path: &Path,
        mem_file_path: &Path,
        root_disk: Option<&RootDiskSwap>,
    ) -> Result<(), VmmError> {
        self.call(&api::pause()).await?;
        if let Some(swap) = root_disk {
            self.call(&api::patch_root_drive(&swap.saved_as)?).await?;
        }
        let saved = match api::snapshot_create(snapshot_path, mem_file_path) {
            Ok(request) => self.call(&request).await.map(drop),
            Err(error) => Err(error),
        };
        if let Some(swap) = root_disk {
            let back = self
                .call(&api::patch_root_drive(&swap.live)?)
                .await
                .map(drop);
            saved.and(back)
        } else {
            saved
        }
    }

    /// Lets a paused guest run again.
    pub async fn resume(&self) -> Result<(), VmmError> {
        self.call(&api::resume()).await.map(drop)
    }

    /// Loads a snapshot into a fresh Firecracker, points its root drive at `root_disk`
    /// (the clone's own copy) while it is still paused, and resumes it (see
    /// [`api::snapshot_load`]).
    pub async fn load_snapshot(
        &self,
        snapshot_path: &Path,
        mem_file: &Path,
        tap: Option<&str>,
        vsock_uds: &Path,
        root_disk: &Path,
    ) -> Result<(), VmmError> {
        self.call(&api::snapshot_load(
            snapshot_path,
            mem_file,
            tap,
            vsock_uds,
            false,
        )?)
        .await?;
        self.call(&api::patch_root_drive(root_disk)?).await?;
        self.resume().await
    }

    /// Asks the guest to reboot, which Firecracker turns into its exit.
    pub async fn send_ctrl_alt_del(&self) -> Result<(), VmmError> {
        self.call(&api::send_ctrl_alt_del()).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interpret_table() {
        let ok = |status: u16, body: &str| interpret_response(status, body.as_bytes()).unwrap();
        assert_eq!(
            ok(204, ""),
            ApiResponse {
                status: 204,
                body: Value::Null
            }
        );
        assert_eq!(
            ok(200, r#"{"state": "Running"}"#),
            ApiResponse {
                status: 200,
                body: json!({"state": "Running"})
            }
        );

        let cases = [
            (
                400,
                r#"{"fault_message": "The kernel file cannot be opened: No such file or directory (os error 2)"}"#,
                "Firecracker answered 400: The kernel file cannot be opened: No such file or directory (os error 2)",
            ),
            (
                500,
                "",
                "Firecracker answered 500 without a fault message: ",
            ),
            (
                404,
                "not json",
                "Firecracker answered 404 without a fault message: not json",
            ),
        ];
        for (status, body, expected) in cases {
            let error = interpret_response(status, body.as_bytes()).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
    }
}
