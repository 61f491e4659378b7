//! The one I/O loop: reads JSON-RPC lines (each capped in size; a longer one is answered
//! with an error and skipped), answers `initialize`, `ping` and `tools/list` itself, runs
//! each `tools/call` as a task of its own (so `ping` and cancellations are served while a
//! command runs), and writes every answer and progress notification through one writer.
//! `notifications/cancelled` fires the call's [`Cancel`]; the handler cleans up and the
//! call gets no answer, as MCP asks. At end of input every call still running is
//! cancelled and waited for, so a VM the session created is cleaned up before exit.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::jsonrpc::{self, Id, Incoming, code};
use crate::protocol::{self, ClientInfo, Tool, ToolResult};

/// A `tools/call` that could not start: answered as a JSON-RPC error, not a tool error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    #[error("invalid arguments: {0}")]
    InvalidParams(String),
}

/// What the banger side plugs into the loop.
pub trait Handler: 'static {
    /// The tools `tools/list` shows (already filtered by the session's profile).
    fn tools(&self) -> Vec<Tool>;
    /// The client said who it is.
    fn initialized(&self, client: &ClientInfo);
    /// Runs one tool. Argument errors are [`CallError`]s; everything that goes wrong
    /// while running is a [`ToolResult::Failed`].
    fn call(
        self: Arc<Self>,
        name: String,
        arguments: Value,
        ctx: CallCtx,
    ) -> impl Future<Output = Result<ToolResult, CallError>> + 'static;
}

/// Fixed facts of the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    pub instructions: String,
    /// The largest message (one line) accepted.
    pub max_message_bytes: usize,
    /// How long calls still running at end of input get to clean up.
    pub shutdown_grace: Duration,
}

/// Fired when the client cancels the call (or the input ends).
#[derive(Debug, Clone)]
pub struct Cancel {
    rx: watch::Receiver<bool>,
}

impl Cancel {
    /// A cancel that never fires and its trigger (tests, direct calls).
    pub fn new() -> (watch::Sender<bool>, Cancel) {
        let (tx, rx) = watch::channel(false);
        (tx, Cancel { rx })
    }

    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the call is cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        // An error means the sender is gone: the call can no longer be cancelled.
        if rx.wait_for(|cancelled| *cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sends `notifications/progress` for a call whose request carried a progress token.
#[derive(Debug, Clone)]
pub struct Progress {
    token: Option<Value>,
    out: mpsc::UnboundedSender<Value>,
    count: Arc<AtomicU64>,
}

impl Progress {
    /// A sink that sends nothing.
    pub fn none() -> Progress {
        let (out, _) = mpsc::unbounded_channel();
        Progress {
            token: None,
            out,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// One step with a message; `progress` only grows, as MCP requires.
    pub fn report(&self, message: &str) {
        let Some(token) = &self.token else { return };
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.out.send(jsonrpc::notification(
            "notifications/progress",
            json!({"progressToken": token, "progress": n, "message": message}),
        ));
    }
}

/// What a running call gets.
#[derive(Debug, Clone)]
pub struct CallCtx {
    pub progress: Progress,
    pub cancel: Cancel,
}

type InFlight = Arc<Mutex<HashMap<Id, watch::Sender<bool>>>>;

/// Serves until `reader` ends. I/O errors on the streams end the loop with that error.
/// Calls run as local tasks (banger's daemon client is not `Send`), so this must run
/// inside a [`tokio::task::LocalSet`].
pub async fn serve<R, W, H>(
    mut reader: R,
    writer: W,
    handler: Arc<H>,
    info: ServerInfo,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (out, rx) = mpsc::unbounded_channel::<Value>();
    let writer_task = tokio::spawn(write_loop(writer, rx));
    let in_flight: InFlight = Arc::default();
    let mut calls = JoinSet::new();
    let mut buf = Vec::new();
    let result = loop {
        // Reap finished calls so the set does not grow with the session.
        while calls.try_join_next().is_some() {}
        let line = match read_line(&mut reader, &mut buf, info.max_message_bytes).await {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        };
        let Line::Complete = line else {
            let _ = out.send(jsonrpc::error(
                None,
                code::INVALID_REQUEST,
                &format!(
                    "message larger than {} bytes; it was skipped",
                    info.max_message_bytes
                ),
            ));
            continue;
        };
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match jsonrpc::parse(&buf) {
            Incoming::Request { id, method, params } => {
                handle_request(
                    &handler, &info, &out, &in_flight, &mut calls, id, &method, params,
                );
            }
            Incoming::Notification { method, params } => {
                if method == "notifications/cancelled"
                    && let Some(id) = params.get("requestId").and_then(|v| match v {
                        Value::String(s) => Some(Id::Str(s.clone())),
                        Value::Number(n) => n.as_i64().map(Id::Num),
                        _ => None,
                    })
                    && let Some(cancel) = in_flight.lock().ok().and_then(|m| m.get(&id).cloned())
                {
                    let _ = cancel.send(true);
                }
                // `notifications/initialized` and unknown notifications need nothing.
            }
            Incoming::Response => {}
            Incoming::Invalid { id, code, message } => {
                let _ = out.send(jsonrpc::error(id.as_ref(), code, &message));
            }
        }
    };
    // End of input: cancel what runs, give it time to clean up, then flush.
    if let Ok(map) = in_flight.lock() {
        for cancel in map.values() {
            let _ = cancel.send(true);
        }
    }
    let _ = tokio::time::timeout(info.shutdown_grace, async {
        while calls.join_next().await.is_some() {}
    })
    .await;
    drop(out);
    let _ = writer_task.await;
    result
}

#[allow(clippy::too_many_arguments)]
fn handle_request<H: Handler>(
    handler: &Arc<H>,
    info: &ServerInfo,
    out: &mpsc::UnboundedSender<Value>,
    in_flight: &InFlight,
    calls: &mut JoinSet<()>,
    id: Id,
    method: &str,
    params: Value,
) {
    let answer = match method {
        "initialize" => {
            let client = protocol::read_initialize(&params);
            handler.initialized(&client);
            jsonrpc::result(
                &id,
                protocol::initialize_result(
                    &client.protocol_version,
                    &info.name,
                    &info.version,
                    &info.instructions,
                ),
            )
        }
        "ping" => jsonrpc::result(&id, json!({})),
        "tools/list" => jsonrpc::result(&id, json!({"tools": handler.tools()})),
        "tools/call" => {
            start_call(handler, out, in_flight, calls, id, params);
            return;
        }
        other => jsonrpc::error(
            Some(&id),
            code::METHOD_NOT_FOUND,
            &format!("method not found: {other}"),
        ),
    };
    let _ = out.send(answer);
}

fn start_call<H: Handler>(
    handler: &Arc<H>,
    out: &mpsc::UnboundedSender<Value>,
    in_flight: &InFlight,
    calls: &mut JoinSet<()>,
    id: Id,
    params: Value,
) {
    let reply_error = |code: i64, message: &str| {
        let _ = out.send(jsonrpc::error(Some(&id), code, message));
    };
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return reply_error(code::INVALID_PARAMS, "tools/call needs a string \"name\"");
    };
    if !handler.tools().iter().any(|tool| tool.name == name) {
        return reply_error(code::INVALID_PARAMS, &format!("unknown tool: {name}"));
    }
    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
    if !arguments.is_object() {
        return reply_error(code::INVALID_PARAMS, "\"arguments\" must be an object");
    }
    let (cancel_tx, cancel) = Cancel::new();
    {
        let Ok(mut map) = in_flight.lock() else {
            return;
        };
        if map.contains_key(&id) {
            drop(map);
            return reply_error(
                code::INVALID_REQUEST,
                "a request with this id is still running",
            );
        }
        map.insert(id.clone(), cancel_tx);
    }
    let ctx = CallCtx {
        progress: Progress {
            token: params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .cloned(),
            out: out.clone(),
            count: Arc::new(AtomicU64::new(0)),
        },
        cancel: cancel.clone(),
    };
    let future = Arc::clone(handler).call(name.to_string(), arguments, ctx);
    let out = out.clone();
    let in_flight = Arc::clone(in_flight);
    calls.spawn_local(async move {
        let outcome = future.await;
        if let Ok(mut map) = in_flight.lock() {
            map.remove(&id);
        }
        if cancel.is_cancelled() {
            return;
        }
        let answer = match outcome {
            Ok(result) => jsonrpc::result(&id, result.to_value()),
            Err(err) => jsonrpc::error(Some(&id), code::INVALID_PARAMS, &err.to_string()),
        };
        let _ = out.send(answer);
    });
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::UnboundedReceiver<Value>) {
    while let Some(message) = rx.recv().await {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        if writer.write_all(&line).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
}

enum Line {
    Complete,
    TooLong,
}

/// Reads one line into `buf` (newline excluded). A line longer than `max` is consumed
/// to its end without being kept. `None` at end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => None,
                (true, true) => Some(Line::TooLong),
                (true, false) => Some(Line::Complete),
            });
        }
        any = true;
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], Some(at + 1)),
            None => (chunk, None),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            }));
        }
    }
}

#[cfg(test)]
mod tests;
