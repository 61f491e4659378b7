//! A stand-in for Firecracker's API server: a hyper HTTP/1.1 server on a Unix socket that
//! answers every request with the verdict of [`ApiSpec::check`] (the documented success
//! code, or 400 with a `{"fault_message": ...}` body as Firecracker sends) and records it,
//! so a test can assert the exact sequence and that nothing undocumented was sent.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::UnixListener;

use super::openapi::{ApiSpec, Verdict};

/// The fixture path, relative to the crate.
pub fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/firecracker/firecracker-api.yaml")
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub body: Option<Json>,
    pub verdict: Verdict,
}

impl Exchange {
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A running contract server; stops when dropped.
#[derive(Debug)]
pub struct ContractServer {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Exchange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ContractServer {
    /// Binds `socket` and serves `spec` until dropped.
    pub fn start(spec: Arc<ApiSpec>, socket: &Path) -> ContractServer {
        let listener = UnixListener::bind(socket).expect("bind the contract socket");
        let log = Arc::new(Mutex::new(Vec::new()));
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let spec = Arc::clone(&spec);
                let log = Arc::clone(&task_log);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        answer(Arc::clone(&spec), Arc::clone(&log), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ContractServer {
            socket: socket.to_path_buf(),
            log,
            task,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }

    /// Panics unless every recorded request was documented and valid; returns their
    /// labels in order.
    pub fn assert_all_valid(&self) -> Vec<String> {
        let exchanges = self.exchanges();
        for exchange in &exchanges {
            match &exchange.verdict {
                Verdict::Valid { .. } => {}
                Verdict::Invalid(message) => panic!(
                    "{} was refused by the contract: {message}\nbody: {:?}",
                    exchange.label(),
                    exchange.body
                ),
                Verdict::Undocumented(message) => {
                    panic!(
                        "{} is not described by firecracker-api.yaml: {message}",
                        exchange.label()
                    )
                }
            }
        }
        exchanges.iter().map(Exchange::label).collect()
    }
}

impl Drop for ContractServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    spec: Arc<ApiSpec>,
    log: Arc<Mutex<Vec<Exchange>>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Ok(fault(
                StatusCode::BAD_REQUEST,
                &format!("unreadable body: {error}"),
            ));
        }
    };
    let verdict = spec.check(&method, &path, &body);
    log.lock().unwrap().push(Exchange {
        method,
        path,
        body: serde_json::from_slice(&body).ok(),
        verdict: verdict.clone(),
    });
    Ok(match verdict {
        Verdict::Valid { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
            let bytes = body
                .map(|body| Bytes::from(body.to_string()))
                .unwrap_or_default();
            let mut response = Response::new(Full::new(bytes));
            *response.status_mut() = status;
            response
        }
        Verdict::Invalid(message) => fault(StatusCode::BAD_REQUEST, &message),
        // Firecracker answers 400 to a path or method it does not serve.
        Verdict::Undocumented(message) => fault(
            StatusCode::BAD_REQUEST,
            &format!("Invalid request method and/or path: {message}"),
        ),
    })
}

fn fault(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "fault_message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
