//! The async client the CLI uses: one Unix-socket connection, sequential requests, events
//! delivered to a callback, the final frame decoded into the method's output type.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::ApiError;
use crate::frame::{
    Event, Input, InputFrame, MAX_FRAME_BYTES, MAX_INPUT_CHUNK_BYTES, PROTOCOL_VERSION,
    RequestFrame, ResponseBody, ResponseFrame,
};
use crate::methods::Method;

/// Why a call did not produce the method's output.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no daemon, or a stale socket file).
    #[error("cannot reach the banger daemon at {}", path.display())]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to the daemon failed")]
    Io(#[from] std::io::Error),
    /// The daemon answered something this client cannot read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon closed the connection before the final frame.
    #[error("the daemon closed the connection before answering (it may have been stopped)")]
    Closed,
    /// The daemon answered with a typed error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// A connection to `bangerd`.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon socket at `path`.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ClientError::Unreachable {
                    path: path.to_path_buf(),
                    source,
                })?;
        Ok(Client::from_stream(stream))
    }

    /// Wraps an already connected stream (tests use socket pairs).
    pub fn from_stream(stream: UnixStream) -> Client {
        let (read, write) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer: write,
            next_id: 1,
        }
    }

    /// Calls method `M`, handing every event to `on_event`, and returns its output.
    pub async fn call<M: Method>(
        &mut self,
        params: &M::Params,
        mut on_event: impl FnMut(Event),
    ) -> Result<M::Output, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode parameters: {e}")))?;
        let value = self.call_raw(M::NAME, params, &mut on_event).await?;
        serde_json::from_value(value).map_err(|e| {
            ClientError::Protocol(format!("cannot decode the answer to {}: {e}", M::NAME))
        })
    }

    /// Like [`Self::call`], streaming `input` to the request as input frames while its
    /// answer comes back (then an end-of-input frame). The daemon reads input only as
    /// fast as the request consumes it, so a slow guest command slows the sender; input
    /// still unread when the final frame arrives is dropped.
    pub async fn call_with_input<M: Method, R: AsyncRead + Unpin>(
        &mut self,
        params: &M::Params,
        input: R,
        mut on_event: impl FnMut(Event),
    ) -> Result<M::Output, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode parameters: {e}")))?;
        let id = self.send_request(M::NAME, params).await?;
        let finished = tokio::sync::Notify::new();
        let writer = &mut self.writer;
        let pump = pump_input(writer, id, input, None, &finished);
        let answer = async {
            let answer = read_answer(&mut self.reader, id, None, &mut on_event).await;
            finished.notify_one();
            answer
        };
        let (answer, pumped) = tokio::join!(answer, pump);
        // A failed input write means the daemon hung up; the answer (or its absence)
        // says why, so the write error itself is not the one to report.
        drop(pumped);
        let value = answer?;
        serde_json::from_value(value).map_err(|e| {
            ClientError::Protocol(format!("cannot decode the answer to {}: {e}", M::NAME))
        })
    }

    /// Like [`Self::call_with_input`] for a `vm.exec` with a terminal: the sizes that
    /// arrive on `resizes` are sent as resize frames between the input's chunks.
    pub async fn call_with_terminal<M: Method, R: AsyncRead + Unpin>(
        &mut self,
        params: &M::Params,
        input: R,
        mut resizes: tokio::sync::mpsc::UnboundedReceiver<crate::methods::TerminalSize>,
        mut on_event: impl FnMut(Event),
    ) -> Result<M::Output, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode parameters: {e}")))?;
        let id = self.send_request(M::NAME, params).await?;
        let finished = tokio::sync::Notify::new();
        let writer = &mut self.writer;
        let pump = pump_input(writer, id, input, Some(&mut resizes), &finished);
        let answer = async {
            let answer = read_answer(&mut self.reader, id, None, &mut on_event).await;
            finished.notify_one();
            answer
        };
        let (answer, pumped) = tokio::join!(answer, pump);
        drop(pumped);
        let value = answer?;
        serde_json::from_value(value).map_err(|e| {
            ClientError::Protocol(format!("cannot decode the answer to {}: {e}", M::NAME))
        })
    }

    /// Calls a method by name with raw JSON parameters.
    pub async fn call_raw(
        &mut self,
        method: &str,
        params: serde_json::Value,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<serde_json::Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = RequestFrame {
            v: PROTOCOL_VERSION,
            id,
            method: method.to_string(),
            params,
        };
        let mut line = serde_json::to_vec(&frame)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        // A daemon that refuses the peer answers and closes without reading: the write
        // can then fail with a broken pipe while the refusal waits in our buffer, and
        // the refusal is the better error.
        let mut write_error = match self.writer.write_all(&line).await {
            Ok(()) => None,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                Some(error)
            }
            Err(error) => return Err(error.into()),
        };
        read_answer(&mut self.reader, id, write_error.take(), on_event).await
    }

    /// Writes the request line of a call with input; a write error is returned as is
    /// (the daemon's refusal, if any, is read by the caller's answer loop).
    async fn send_request(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = RequestFrame {
            v: PROTOCOL_VERSION,
            id,
            method: method.to_string(),
            params,
        };
        let mut line = serde_json::to_vec(&frame)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        Ok(id)
    }
}

/// Reads frames until the final one of request `id`, handing events to `on_event`.
/// `write_error` is reported instead of a read failure (see `call_raw`).
async fn read_answer(
    reader: &mut BufReader<OwnedReadHalf>,
    id: u64,
    mut write_error: Option<std::io::Error>,
    on_event: &mut dyn FnMut(Event),
) -> Result<serde_json::Value, ClientError> {
    loop {
        let frame = match read_frame(reader).await {
            Ok(frame) => frame,
            Err(error) => match write_error.take() {
                Some(write_error) => return Err(write_error.into()),
                None => return Err(error),
            },
        };
        if frame.id != id && frame.id != 0 {
            return Err(ClientError::Protocol(format!(
                "answer for request {} while waiting for {id}",
                frame.id
            )));
        }
        match frame.body {
            ResponseBody::Event { event } => on_event(event),
            ResponseBody::Result { value } => return Ok(value),
            ResponseBody::Error { error } => return Err(ClientError::Api(error)),
        }
    }
}

/// Sends `input` as input frames for request `id`, then an end-of-input frame. Stops
/// (between frames, never inside one, so the connection stays usable) once `finished`
/// is notified.
async fn pump_input<R: AsyncRead + Unpin>(
    writer: &mut OwnedWriteHalf,
    id: u64,
    mut input: R,
    mut resizes: Option<&mut tokio::sync::mpsc::UnboundedReceiver<crate::methods::TerminalSize>>,
    finished: &tokio::sync::Notify,
) -> std::io::Result<()> {
    let mut chunk = vec![0; MAX_INPUT_CHUNK_BYTES];
    let mut input_done = false;
    loop {
        let read = tokio::select! {
            biased;
            () = finished.notified() => return Ok(()),
            size = next_size(&mut resizes), if resizes.is_some() => match size {
                Some(size) => Err(size),
                None => {
                    resizes = None;
                    continue;
                }
            },
            read = input.read(&mut chunk), if !input_done => Ok(read),
        };
        let input = match read {
            Err(size) => Input::Resize {
                rows: size.rows,
                cols: size.cols,
            },
            Ok(read) => match read {
                Ok(0) => Input::Eof,
                Ok(count) => Input::Data {
                    data: chunk[..count].to_vec(),
                },
                // The request still runs and answers; it sees the end of its input.
                Err(_) => Input::Eof,
            },
        };
        let eof = input == Input::Eof;
        let frame = InputFrame {
            v: PROTOCOL_VERSION,
            id,
            input,
        };
        let mut line = serde_json::to_vec(&frame).map_err(std::io::Error::other)?;
        line.push(b'\n');
        writer.write_all(&line).await?;
        if eof {
            // Sizes still matter after the end of a terminal's input.
            if resizes.is_none() {
                return Ok(());
            }
            input_done = true;
        }
    }
}

/// The next terminal size, or `None` once nobody sends sizes; pending forever without
/// a receiver (that branch is disabled then).
async fn next_size(
    resizes: &mut Option<&mut tokio::sync::mpsc::UnboundedReceiver<crate::methods::TerminalSize>>,
) -> Option<crate::methods::TerminalSize> {
    match resizes {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn read_frame(reader: &mut BufReader<OwnedReadHalf>) -> Result<ResponseFrame, ClientError> {
    let mut buf = Vec::new();
    let limit = (MAX_FRAME_BYTES + 1) as u64;
    let n = reader.take(limit).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(ClientError::Closed);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_FRAME_BYTES {
            return Err(ClientError::Protocol(
                "the daemon sent an oversized frame".into(),
            ));
        }
        return Err(ClientError::Closed);
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ClientError::Protocol(format!("unreadable frame from the daemon: {e}")))
}
