//! agent_client: the daemon's async client for the guest agent. One [`AgentClient`] owns
//! one connection; a reader task splits the incoming stream into frames and hands each
//! to the request that owns its id, and a writer task serialises outgoing frames, so
//! any number of requests (an exec streaming output while `hello` and `ports` run) share
//! the connection. Frames whose id no live request owns are dropped: the channel may
//! deliver replies meant for a previous connection, and ids start at a random base so
//! those never match ours.

mod connect;
mod ready;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::agent::{
    ExecRequest, FEATURE_TTY, FEATURE_USER, FrameError, Hello, IdentityRequest, LineEvent,
    LineSplitter, ListeningPort, MAX_FRAME_BYTES, PROTOCOL_VERSION, PathKind, Reply, ReplyBody,
    Request, RequestId, RequestOp, Signal, Stream, WindowSize, decode_reply, encode_frame,
};

pub use ready::{HELLO_ATTEMPT_TIMEOUT, RECONNECT_INTERVAL, wait_ready};

/// Stdin is sent in chunks of this size.
const STDIN_CHUNK_BYTES: usize = 64 * 1024;
/// Stdin bytes sent but not yet acknowledged by the agent: bounds what the guest buffers
/// for a command that reads slowly.
const STDIN_WINDOW_BYTES: u64 = 1024 * 1024;
/// Read buffer of the reader task.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot connect to the agent socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("vsock handshake on {path} failed: {detail}")]
    VsockHandshake { path: PathBuf, detail: String },
    #[error("agent connection I/O failed")]
    Io(#[source] io::Error),
    #[error("cannot send the request")]
    Frame(#[from] FrameError),
    #[error("the agent connection closed")]
    Disconnected,
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the agent reported: {message}")]
    Remote { message: String },
    #[error("the agent speaks protocol {agent}, this host speaks {host}")]
    ProtocolMismatch { agent: u32, host: u32 },
    #[error(
        "the VM's guest agent predates `{feature}` (a guest restored from an older snapshot); \
         recreate the VM to use it"
    )]
    MissingFeature { feature: &'static str },
    #[error("unexpected `{reply}` reply to `{request}`")]
    UnexpectedReply {
        request: &'static str,
        reply: &'static str,
    },
    #[error("the guest agent was not ready within {waited:?}")]
    NotReady {
        waited: Duration,
        #[source]
        last: Option<Box<AgentError>>,
    },
}

/// A connection to one guest agent. Cloning shares the connection; it closes when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct AgentClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    next_id: AtomicU64,
    tasks: [AbortHandle; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// State the reader and writer tasks share with the requests.
#[derive(Debug, Default)]
struct Shared {
    routes: Mutex<Routes>,
    discarded: AtomicU64,
}

#[derive(Debug, Default)]
struct Routes {
    closed: bool,
    by_id: HashMap<RequestId, mpsc::UnboundedSender<ReplyBody>>,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // The critical sections cannot panic half-way; a poisoned map is still consistent.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, reply: Reply) {
        let routes = self.routes();
        match routes.by_id.get(&reply.id) {
            Some(sender) => {
                // The request may have been dropped a moment ago; then nobody wants it.
                let _ = sender.send(reply.body);
            }
            None => {
                self.discarded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(id = %reply.id, op = reply_name(&reply.body), "dropping agent frame with an id no request owns");
            }
        }
    }

    /// Ends every request in flight with `Disconnected` and refuses new ones.
    fn close(&self) {
        let mut routes = self.routes();
        routes.closed = true;
        routes.by_id.clear();
    }
}

/// A request's claim on its id; dropping it (even by cancelling the future that holds
/// it) frees the id so late replies are discarded.
struct Pending {
    id: RequestId,
    replies: mpsc::UnboundedReceiver<ReplyBody>,
    shared: Arc<Shared>,
}

impl Pending {
    async fn next(&mut self) -> Result<ReplyBody, AgentError> {
        self.replies.recv().await.ok_or(AgentError::Disconnected)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.shared.routes().by_id.remove(&self.id);
    }
}

impl AgentClient {
    /// Wraps an established byte stream to an agent and starts the reader and writer
    /// tasks (on the current tokio runtime).
    pub fn from_stream<S>(stream: S) -> AgentClient
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let shared = Arc::new(Shared::default());
        let (outgoing, queue) = mpsc::unbounded_channel();
        let read_task = tokio::spawn(read_frames(reader, Arc::clone(&shared)));
        let write_task = tokio::spawn(write_frames(writer, queue, Arc::clone(&shared)));
        AgentClient {
            inner: Arc::new(Inner {
                shared,
                outgoing,
                next_id: AtomicU64::new(random_id_base()),
                tasks: [read_task.abort_handle(), write_task.abort_handle()],
            }),
        }
    }

    /// Asks the agent who it is. Used as the readiness probe: see [`wait_ready`].
    pub async fn hello(&self, timeout: Duration) -> Result<Hello, AgentError> {
        let mut pending = self.start(RequestOp::Hello {
            protocol: PROTOCOL_VERSION,
        })?;
        let body = tokio::time::timeout(timeout, pending.next())
            .await
            .map_err(|_| AgentError::Timeout(timeout))??;
        match body {
            ReplyBody::HelloOk(hello) if hello.protocol == PROTOCOL_VERSION => Ok(hello),
            ReplyBody::HelloOk(hello) => Err(AgentError::ProtocolMismatch {
                agent: hello.protocol,
                host: PROTOCOL_VERSION,
            }),
            other => Err(unexpected("hello", other)),
        }
    }

    /// Runs a command with stdin closed, streaming its output to `on_output`; returns its
    /// exit code (128 + signal when a signal killed it). Dropping the future does not stop
    /// the command in the guest: use [`Self::exec_with_cancel`] for that.
    pub async fn exec(
        &self,
        request: ExecRequest,
        on_output: impl FnMut(Stream, &[u8]) + Send,
    ) -> Result<i32, AgentError> {
        self.run_exec(
            request,
            None::<tokio::io::Empty>,
            on_output,
            std::future::pending(),
        )
        .await
    }

    /// Like [`Self::exec`]; when `cancel` completes, the command's process group gets
    /// SIGTERM and the call still waits for (and returns) its exit code.
    pub async fn exec_with_cancel(
        &self,
        request: ExecRequest,
        on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, AgentError> {
        self.run_exec(request, None::<tokio::io::Empty>, on_output, cancel)
            .await
    }

    /// Like [`Self::exec_with_cancel`], feeding `stdin` to the command until it ends
    /// (then the command sees end of file). At most about 1 MiB is in flight unread.
    pub async fn exec_with_stdin<R>(
        &self,
        request: ExecRequest,
        stdin: R,
        on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.run_exec(request, Some(stdin), on_output, cancel).await
    }

    /// Like [`Self::exec_with_stdin`] for the requests that need a newer agent: a
    /// `tty` (resized from `resizes`) or a `user`. The agent's `hello` is asked first
    /// and an agent without the feature is refused before anything runs. With a tty,
    /// `cancel` hangs the terminal up (SIGHUP) instead of sending SIGTERM, which an
    /// interactive shell ignores.
    pub async fn exec_interactive<R>(
        &self,
        request: ExecRequest,
        stdin: Option<R>,
        resizes: Option<tokio::sync::watch::Receiver<WindowSize>>,
        on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let needed = [
            (request.tty.is_some(), FEATURE_TTY),
            (request.user.is_some(), FEATURE_USER),
        ];
        if needed.iter().any(|(wanted, _)| *wanted) {
            let hello = self.hello(Duration::from_secs(10)).await?;
            if let Some((_, feature)) = needed
                .iter()
                .find(|(wanted, feature)| *wanted && !hello.has_feature(feature))
            {
                return Err(AgentError::MissingFeature { feature });
            }
        }
        let cancel_signal = if request.tty.is_some() {
            Signal::Hup
        } else {
            Signal::Term
        };
        let mut request = request;
        request.stdin = stdin.is_some();
        self.run_streaming_with(
            RequestOp::Exec(request),
            stdin,
            resizes,
            cancel_signal,
            on_output,
            cancel,
            |body| match body {
                ReplyBody::Exit { code } => Ok(code),
                other => Err(unexpected("exec", other)),
            },
        )
        .await
    }

    /// Listening TCP and bound UDP sockets in the guest.
    pub async fn ports(&self) -> Result<Vec<ListeningPort>, AgentError> {
        let mut pending = self.start(RequestOp::Ports)?;
        match pending.next().await? {
            ReplyBody::PortsOk { ports } => Ok(ports),
            other => Err(unexpected("ports", other)),
        }
    }

    /// Creates or replaces `path` (parents included) with `data` and permission `mode`.
    /// `data` must fit in one frame: [`crate::agent::MAX_FILE_BYTES`].
    pub async fn write_file(&self, path: &str, mode: u32, data: &[u8]) -> Result<(), AgentError> {
        let mut pending = self.start(RequestOp::WriteFile {
            path: path.to_owned(),
            mode,
            data: data.to_vec(),
        })?;
        match pending.next().await? {
            ReplyBody::FileOk { .. } => Ok(()),
            other => Err(unexpected("write_file", other)),
        }
    }

    /// The contents of a guest file of at most [`crate::agent::MAX_FILE_BYTES`].
    /// Runs the identity fix-ups of a restored guest; returns what was done and the
    /// warnings.
    pub async fn identity(
        &self,
        request: IdentityRequest,
    ) -> Result<(Vec<String>, Vec<String>), AgentError> {
        let mut pending = self.start(RequestOp::Identity(request))?;
        match pending.next().await? {
            ReplyBody::IdentityOk { done, warnings } => Ok((done, warnings)),
            other => Err(unexpected("identity", other)),
        }
    }

    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, AgentError> {
        let mut pending = self.start(RequestOp::ReadFile {
            path: path.to_owned(),
        })?;
        match pending.next().await? {
            ReplyBody::FileOk { data: Some(data) } => Ok(data),
            other => Err(unexpected("read_file", other)),
        }
    }

    /// Whether the connection has ended (the reader or writer stopped); then every call
    /// fails with `Disconnected` and the caller should connect again.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.routes().closed
    }

    /// How many incoming frames were dropped because no request owned their id or they
    /// did not parse (stale bytes from an earlier connection, mostly).
    pub fn discarded_frames(&self) -> u64 {
        self.inner.shared.discarded.load(Ordering::Relaxed)
    }

    async fn run_exec<R>(
        &self,
        mut request: ExecRequest,
        stdin: Option<R>,
        on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        request.stdin = stdin.is_some();
        self.run_streaming(
            RequestOp::Exec(request),
            stdin,
            on_output,
            cancel,
            |body| match body {
                ReplyBody::Exit { code } => Ok(code),
                other => Err(unexpected("exec", other)),
            },
        )
        .await
    }

    /// Unpacks the tar stream `tar` into the guest directory `dir` (made first with
    /// `create`); `rename` replaces the first component of every name. The agent refuses
    /// names that would land outside `dir`. At most about 1 MiB is in flight unread.
    pub async fn receive_tar<R>(
        &self,
        dir: &str,
        rename: Option<&str>,
        create: bool,
        tar: R,
    ) -> Result<TarCount, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let op = RequestOp::ReceiveTar {
            dir: dir.to_owned(),
            rename: rename.map(str::to_owned),
            create,
        };
        self.run_streaming(
            op,
            Some(tar),
            |_, _| {},
            std::future::pending(),
            tar_count("receive_tar"),
        )
        .await
    }

    /// Packs the guest's `path` (or, with `contents`, the directory's children) as a tar
    /// stream handed to `on_data` chunk by chunk.
    pub async fn send_tar(
        &self,
        path: &str,
        contents: bool,
        mut on_data: impl FnMut(&[u8]) + Send,
    ) -> Result<TarCount, AgentError> {
        let op = RequestOp::SendTar {
            path: path.to_owned(),
            contents,
        };
        self.run_streaming(
            op,
            None::<tokio::io::Empty>,
            |_, data| on_data(data),
            std::future::pending(),
            tar_count("send_tar"),
        )
        .await
    }

    /// What is at the guest's `path` (symlinks followed); `None` when nothing is.
    pub async fn stat(&self, path: &str) -> Result<Option<PathKind>, AgentError> {
        let mut pending = self.start(RequestOp::Stat {
            path: path.to_owned(),
        })?;
        match pending.next().await? {
            ReplyBody::StatOk { kind } => Ok(kind),
            other => Err(unexpected("stat", other)),
        }
    }

    /// Runs a request that may stream stdin (with flow control) and output, until its
    /// final reply, which `finish` turns into the answer.
    async fn run_streaming<R, T>(
        &self,
        op: RequestOp,
        stdin: Option<R>,
        on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
        finish: impl FnOnce(ReplyBody) -> Result<T, AgentError>,
    ) -> Result<T, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.run_streaming_with(op, stdin, None, Signal::Term, on_output, cancel, finish)
            .await
    }

    /// [`Self::run_streaming`] with window sizes to forward as `resize` and the signal
    /// a cancel sends.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private loop behind the public calls"
    )]
    async fn run_streaming_with<R, T>(
        &self,
        op: RequestOp,
        stdin: Option<R>,
        mut resizes: Option<tokio::sync::watch::Receiver<WindowSize>>,
        cancel_signal: Signal,
        mut on_output: impl FnMut(Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
        finish: impl FnOnce(ReplyBody) -> Result<T, AgentError>,
    ) -> Result<T, AgentError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let mut pending = self.start(op)?;
        let target = pending.id;
        let mut stdin = stdin.map(|reader| StdinPump {
            reader,
            in_flight: 0,
            finished: false,
        });
        let mut chunk = vec![0; STDIN_CHUNK_BYTES];
        let mut cancelled = false;
        tokio::pin!(cancel);
        loop {
            let stdin_wanted = stdin.as_ref().is_some_and(StdinPump::wants_more);
            tokio::select! {
                body = pending.next() => match body? {
                    ReplyBody::Output { stream, data } => on_output(stream, &data),
                    ReplyBody::StdinAck { bytes } => {
                        if let Some(pump) = stdin.as_mut() {
                            pump.in_flight = pump.in_flight.saturating_sub(bytes);
                        }
                    }
                    other => return finish(other),
                },
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    self.send(self.fresh_id(), RequestOp::Signal { target, signal: cancel_signal })?;
                }
                changed = changed_size(&mut resizes), if resizes.is_some() => match changed {
                    Some(size) => self.send(self.fresh_id(), RequestOp::Resize { target, size })?,
                    // The sender is gone: no more sizes will come.
                    None => resizes = None,
                },
                read = read_stdin(&mut stdin, &mut chunk), if stdin_wanted => {
                    self.forward_stdin(target, &mut stdin, &chunk, read)?;
                }
            }
        }
    }

    fn forward_stdin<R>(
        &self,
        target: RequestId,
        stdin: &mut Option<StdinPump<R>>,
        chunk: &[u8],
        read: io::Result<usize>,
    ) -> Result<(), AgentError> {
        let Some(pump) = stdin.as_mut() else {
            return Ok(());
        };
        let op = match read {
            Ok(0) => {
                pump.finished = true;
                RequestOp::StdinEof { target }
            }
            Ok(count) => {
                pump.in_flight += count as u64;
                RequestOp::Stdin {
                    target,
                    data: chunk[..count].to_vec(),
                }
            }
            Err(error) => {
                // The command still runs and reports its exit; it just sees end of input.
                tracing::warn!(%error, "reading exec stdin failed; closing the command's stdin");
                pump.finished = true;
                RequestOp::StdinEof { target }
            }
        };
        self.send(self.fresh_id(), op)
    }

    /// Claims a fresh id, registers it, then sends the request (in that order, so a quick
    /// reply cannot arrive before its route exists).
    fn start(&self, op: RequestOp) -> Result<Pending, AgentError> {
        let id = self.fresh_id();
        let (sender, replies) = mpsc::unbounded_channel();
        {
            let mut routes = self.inner.shared.routes();
            if routes.closed {
                return Err(AgentError::Disconnected);
            }
            routes.by_id.insert(id, sender);
        }
        let pending = Pending {
            id,
            replies,
            shared: Arc::clone(&self.inner.shared),
        };
        self.send(id, op)?;
        Ok(pending)
    }

    fn send(&self, id: RequestId, op: RequestOp) -> Result<(), AgentError> {
        let line = encode_frame(&Request { id, op })?;
        self.inner
            .outgoing
            .send(line)
            .map_err(|_| AgentError::Disconnected)
    }

    fn fresh_id(&self) -> RequestId {
        RequestId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a tar transfer moved, as the agent counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarCount {
    pub entries: u64,
    pub bytes: u64,
}

fn tar_count(request: &'static str) -> impl FnOnce(ReplyBody) -> Result<TarCount, AgentError> {
    move |body| match body {
        ReplyBody::TarOk { entries, bytes } => Ok(TarCount { entries, bytes }),
        other => Err(unexpected(request, other)),
    }
}

/// The next window size, or `None` once its sender is gone.
async fn changed_size(
    resizes: &mut Option<tokio::sync::watch::Receiver<WindowSize>>,
) -> Option<WindowSize> {
    let receiver = resizes.as_mut()?;
    receiver.changed().await.ok()?;
    Some(*receiver.borrow_and_update())
}

struct StdinPump<R> {
    reader: R,
    in_flight: u64,
    finished: bool,
}

impl<R> StdinPump<R> {
    fn wants_more(&self) -> bool {
        !self.finished && self.in_flight < STDIN_WINDOW_BYTES
    }
}

async fn read_stdin<R: AsyncRead + Unpin>(
    stdin: &mut Option<StdinPump<R>>,
    chunk: &mut [u8],
) -> io::Result<usize> {
    match stdin.as_mut() {
        Some(pump) => pump.reader.read(chunk).await,
        None => std::future::pending().await,
    }
}

/// Ids start at a random point in [2^40, 2^52) (still exact as a JSON double), so a new
/// connection never owns the ids of replies left over from an earlier one.
fn random_id_base() -> u64 {
    let noise = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    (noise >> 12) | (1 << 40)
}

fn unexpected(request: &'static str, body: ReplyBody) -> AgentError {
    match body {
        ReplyBody::Error { message } => AgentError::Remote { message },
        other => AgentError::UnexpectedReply {
            request,
            reply: reply_name(&other),
        },
    }
}

fn reply_name(body: &ReplyBody) -> &'static str {
    match body {
        ReplyBody::HelloOk(_) => "hello_ok",
        ReplyBody::IdentityOk { .. } => "identity_ok",
        ReplyBody::Output { .. } => "output",
        ReplyBody::StdinAck { .. } => "stdin_ack",
        ReplyBody::Exit { .. } => "exit",
        ReplyBody::PortsOk { .. } => "ports_ok",
        ReplyBody::FileOk { .. } => "file_ok",
        ReplyBody::TarOk { .. } => "tar_ok",
        ReplyBody::StatOk { .. } => "stat_ok",
        ReplyBody::Error { .. } => "error",
    }
}

async fn read_frames<R: AsyncRead>(reader: R, shared: Arc<Shared>) {
    tokio::pin!(reader);
    let mut splitter = LineSplitter::new(MAX_FRAME_BYTES);
    let mut buffer = vec![0; READ_CHUNK_BYTES];
    loop {
        let count = match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) => {
                tracing::debug!(%error, "agent connection read failed");
                break;
            }
        };
        splitter.push(&buffer[..count]);
        while let Some(event) = splitter.next_event() {
            match event {
                LineEvent::Line(line) if line.trim_ascii().is_empty() => {}
                LineEvent::Line(line) => match decode_reply(&line) {
                    Ok(reply) => shared.route(reply),
                    Err(error) => {
                        // A partial line left by an earlier connection, typically.
                        shared.discarded.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, "dropping unreadable agent frame");
                    }
                },
                LineEvent::Oversized => {
                    shared.discarded.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        max = MAX_FRAME_BYTES,
                        "dropping agent frame over the size limit"
                    );
                }
            }
        }
    }
    shared.close();
}

async fn write_frames<W: AsyncWrite>(
    writer: W,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    tokio::pin!(writer);
    // An empty line first ends any half-written request an earlier client left in the
    // channel, so the agent does not glue it to our first frame.
    let mut batch = b"\n".to_vec();
    loop {
        if let Err(error) = write_batch(&mut writer, &batch).await {
            tracing::debug!(%error, "agent connection write failed");
            break;
        }
        batch.clear();
        let Some(line) = queue.recv().await else {
            break;
        };
        batch.extend_from_slice(&line);
        // Coalesce whatever else is queued into one write.
        while let Ok(line) = queue.try_recv() {
            batch.extend_from_slice(&line);
        }
    }
    shared.close();
}

async fn write_batch<W: AsyncWrite + Unpin>(writer: &mut W, batch: &[u8]) -> io::Result<()> {
    writer.write_all(batch).await?;
    writer.flush().await
}
