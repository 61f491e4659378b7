//! The async client the CLI uses: one Unix-socket connection, sequential requests, events
//! delivered to a callback, the final frame decoded into the method's output type.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::ApiError;
use crate::frame::{
    Event, MAX_FRAME_BYTES, PROTOCOL_VERSION, RequestFrame, ResponseBody, ResponseFrame,
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
        loop {
            let frame = match self.read_frame().await {
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

    async fn read_frame(&mut self) -> Result<ResponseFrame, ClientError> {
        let mut buf = Vec::new();
        let limit = (MAX_FRAME_BYTES + 1) as u64;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .await?;
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
}
