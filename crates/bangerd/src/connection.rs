//! Serving one client connection: check the peer's uid, then read request lines and
//! answer each in order with its events and one final frame. Malformed or oversized
//! requests get a typed error and the connection keeps serving; a line left unfinished
//! past the partial-frame timeout, or one that would pass the daemon's buffer budget
//! (`limits`), gets an error and the connection is closed. Method names and error
//! messages are cut before they are echoed or logged.

use std::sync::Arc;
use std::time::Instant;

use banger_api::{ApiError, ErrorCode, Event, Input, InputFrame, ResponseBody, ResponseFrame};
use tokio::io::AsyncWrite;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::DaemonContext;
use crate::dispatch::{dispatch, shown_method};
use crate::events::EventSink;
use crate::input::{InputChunk, RequestInput};
use crate::wire::{FrameReader, Incoming, parse_request, write_frame};

/// Serves `stream` until the client leaves or `stop` fires between two requests.
pub async fn serve(
    stream: UnixStream,
    ctx: Arc<DaemonContext>,
    stop: CancellationToken,
    conn: u64,
) {
    let span = tracing::info_span!("conn", conn);
    serve_inner(stream, ctx, stop).instrument(span).await;
}

async fn serve_inner(stream: UnixStream, ctx: Arc<DaemonContext>, stop: CancellationToken) {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == ctx.owner_uid => {
            tracing::debug!(uid = cred.uid(), pid = cred.pid(), "client connected");
        }
        Ok(cred) => {
            tracing::warn!(
                uid = cred.uid(),
                pid = cred.pid(),
                owner = ctx.owner_uid,
                "refusing a client of another user"
            );
            let error = ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "this bangerd belongs to uid {}; uid {} may not use it",
                    ctx.owner_uid,
                    cred.uid()
                ),
            )
            .with_hint("start your own daemon, or set BANGER_SOCKET to your own socket");
            let (_, mut writer) = stream.into_split();
            let _ = write_frame(&mut writer, &error_frame(0, error)).await;
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the client's credentials; closing");
            return;
        }
    }
    let (reader, mut writer) = stream.into_split();
    let mut reader = FrameReader::limited(reader, &ctx.limits, &ctx.budget);
    // Lines a pipelining client sent while an earlier request was still running.
    let mut pending = std::collections::VecDeque::new();
    loop {
        let incoming = match pending.pop_front() {
            Some(incoming) => Ok(incoming),
            None => tokio::select! {
                biased;
                () = stop.cancelled() => break,
                incoming = reader.next() => incoming,
            },
        };
        let written = match incoming {
            Err(error) => {
                tracing::debug!(%error, "read failed; closing");
                break;
            }
            Ok(Incoming::Eof) => break,
            Ok(Incoming::PartialTimeout) => {
                let secs = ctx.limits.partial_frame_timeout.as_secs_f64();
                tracing::warn!(secs, "closing a connection whose request stopped mid-line");
                let error = ApiError::bad_request(format!(
                    "the request line was not finished within {secs}s; closing the connection"
                ))
                .with_hint("send each request as one line ending in a newline");
                let _ = write_frame(&mut writer, &error_frame(0, error)).await;
                break;
            }
            Ok(Incoming::OverBudget) => {
                tracing::warn!(
                    budget = ctx.budget.cap(),
                    "closing a connection whose request would pass the daemon's buffer budget"
                );
                let error = ApiError::operation_failed(format!(
                    "bangerd is holding {} bytes of unfinished requests (its limit); closing the connection",
                    ctx.budget.cap()
                ))
                .with_hint("retry once other clients' large requests are done");
                let _ = write_frame(&mut writer, &error_frame(0, error)).await;
                break;
            }
            Ok(Incoming::Oversized) => {
                tracing::warn!("discarded an oversized request");
                let error = ApiError::bad_request(format!(
                    "request larger than {} bytes; it was discarded",
                    banger_api::MAX_FRAME_BYTES
                ));
                write_frame(&mut writer, &error_frame(0, error)).await
            }
            Ok(Incoming::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
            // Input for a request that has already been answered: nobody reads it.
            Ok(Incoming::Line(line)) if InputFrame::parse(&line).is_some() => continue,
            Ok(Incoming::Line(line)) => {
                handle_line(&ctx, &line, &mut reader, &mut pending, &mut writer).await
            }
        };
        if let Err(error) = written {
            tracing::debug!(%error, "write failed; the client has gone");
            break;
        }
    }
    tracing::debug!("client disconnected");
}

/// Answers a connection past the daemon's connection limit with an error, then closes it.
pub async fn refuse_busy(stream: UnixStream, max_connections: usize) {
    let error = ApiError::operation_failed(format!(
        "bangerd is serving {max_connections} connections, its limit, and none finished in time; this one is closed"
    ))
    .with_hint("a client may be opening connections without closing them; retry shortly");
    let (_, mut writer) = stream.into_split();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        write_frame(&mut writer, &error_frame(0, error)),
    )
    .await;
}

/// Answers one request line: events as the handler emits them, then the final frame.
async fn handle_line<R, W>(
    ctx: &Arc<DaemonContext>,
    line: &[u8],
    reader: &mut FrameReader<R>,
    pending: &mut std::collections::VecDeque<Incoming>,
    writer: &mut W,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(rejected) => {
            tracing::info!(id = rejected.id, code = %rejected.error.code, message = %shown_message(&rejected.error.message), "rejected request");
            return write_frame(writer, &error_frame(rejected.id, rejected.error)).await;
        }
    };
    let id = request.id;
    let started = Instant::now();
    let (events, mut event_rx) = EventSink::channel();
    let (input_tx, input) = RequestInput::channel();
    events.set_input(input);
    let result = {
        let work = dispatch(ctx, &request.method, request.params, &events);
        tokio::pin!(work);
        // Events are written while the handler runs. The socket is watched too: when the
        // client leaves (EOF, or a failed write), the sink says so and streaming handlers
        // stop (an exec signals its guest process); long operations run in their own task
        // (see `ops`) and carry on. Input frames for this request go to its input
        // stream; the socket is read only while the stream has room (or is closed), so
        // a handler that reads slowly holds the client back.
        let mut gone = false;
        let mut input_tx = Some(input_tx);
        let mut permit: Option<tokio::sync::mpsc::OwnedPermit<InputChunk>> = None;
        let result = loop {
            let need_permit = permit.is_none() && input_tx.is_some();
            tokio::select! {
                result = &mut work => break result,
                Some(event) = event_rx.recv() => {
                    if !gone && write_frame(writer, &event_frame(id, event)).await.is_err() {
                        gone = true;
                        events.client_gone();
                    }
                }
                reserved = reserve(&input_tx), if need_permit && !gone => match reserved {
                    Ok(reserved) => permit = Some(reserved),
                    // The handler dropped its input: later input is discarded.
                    Err(()) => input_tx = None,
                },
                incoming = reader.next(), if !gone && !need_permit && pending.len() < ctx.limits.max_pending_lines => match incoming {
                    Ok(Incoming::Eof) | Err(_) => {
                        gone = true;
                        events.client_gone();
                        input_tx = None;
                        permit = None;
                    }
                    Ok(Incoming::Line(line)) => match InputFrame::parse(&line) {
                        Some(Ok(frame)) if frame.id == id => {
                            let chunk = match frame.input {
                                Input::Data { data } => InputChunk::Data(data),
                                Input::Eof => InputChunk::Eof,
                                Input::Resize { rows, cols } => {
                                    InputChunk::Resize(banger_api::methods::TerminalSize { rows, cols })
                                }
                            };
                            let eof = matches!(chunk, InputChunk::Eof);
                            if let Some(reserved) = permit.take() {
                                reserved.send(chunk);
                            }
                            if eof {
                                input_tx = None;
                            }
                        }
                        Some(_) => tracing::debug!("dropping input that belongs to no running request"),
                        None => pending.push_back(Incoming::Line(line)),
                    },
                    Ok(other) => pending.push_back(other),
                },
            }
        };
        if gone {
            return Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted));
        }
        result
    };
    // Events sent just before the handler returned are still queued.
    while let Ok(event) = event_rx.try_recv() {
        write_frame(writer, &event_frame(id, event)).await?;
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let frame = match result {
        Ok(value) => {
            tracing::info!(id, method = %shown_method(&request.method), elapsed_ms, "ok");
            ResponseFrame {
                id,
                body: ResponseBody::Result { value },
            }
        }
        Err(error) => {
            tracing::info!(id, method = %shown_method(&request.method), elapsed_ms, code = %error.code, message = %shown_message(&error.message), "error");
            error_frame(id, error)
        }
    };
    write_frame(writer, &frame).await
}

/// A slot in the request's input queue, or `Err` when nobody reads it any more.
async fn reserve(
    input: &Option<tokio::sync::mpsc::Sender<InputChunk>>,
) -> Result<tokio::sync::mpsc::OwnedPermit<InputChunk>, ()> {
    match input {
        Some(sender) => sender.clone().reserve_owned().await.map_err(drop),
        None => Err(()),
    }
}

/// The longest error message a frame or a log line carries; longer ones (a parameter
/// decoder quoting a client's huge string) are cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 16 << 10;

fn shown_message(message: &str) -> &str {
    let mut cut = message.len().min(MAX_ERROR_MESSAGE_BYTES);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    &message[..cut]
}

fn error_frame(id: u64, mut error: ApiError) -> ResponseFrame {
    if error.message.len() > MAX_ERROR_MESSAGE_BYTES {
        let total = error.message.len();
        error.message = format!("{}… ({total} bytes)", shown_message(&error.message));
    }
    ResponseFrame {
        id,
        body: ResponseBody::Error { error },
    }
}

fn event_frame(id: u64, event: Event) -> ResponseFrame {
    ResponseFrame {
        id,
        body: ResponseBody::Event { event },
    }
}
