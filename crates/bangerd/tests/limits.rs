//! The daemon under abuse by a client of its own user, over a real socket with small
//! limits: connections past the cap are refused with an error while the others keep
//! serving, a line left unfinished is timed out (an idle connection that sent nothing is
//! not), the byte budget across connections refuses the line that would pass it and
//! gives its bytes back, and a huge unknown method name is not echoed whole.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use banger_api::{ErrorCode, PROTOCOL_VERSION, ResponseBody, ResponseFrame};
use banger_model::dirs::Dirs;
use bangerd::DaemonContext;
use bangerd::limits::Limits;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

fn dirs(root: &Path) -> Dirs {
    Dirs {
        state: root.join("state"),
        cache: root.join("cache"),
        runtime: root.join("run"),
        config: root.join("config"),
        socket: root.join("run/bangerd.sock"),
    }
}

struct Daemon {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    ctx: Arc<DaemonContext>,
    _stop: oneshot::Sender<()>,
}

async fn start(limits: Limits) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let dirs = dirs(dir.path());
    let socket = dirs.socket.clone();
    let uid = nix::unistd::geteuid().as_raw();
    let listener = bangerd::socket::bind(&socket, uid).await.unwrap();
    let ctx = Arc::new(DaemonContext::new(uid, dirs).with_limits(limits));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bangerd::run(
        listener,
        async {
            let _ = stopped.await;
        },
        Arc::clone(&ctx),
    ));
    Daemon {
        _dir: dir,
        socket,
        ctx,
        _stop: stop,
    }
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Daemon {
    async fn conn(&self) -> Conn {
        let (read, writer) = UnixStream::connect(&self.socket)
            .await
            .unwrap()
            .into_split();
        Conn {
            reader: BufReader::new(read),
            writer,
        }
    }
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next frame, or None when the daemon closed the connection.
    async fn frame(&mut self) -> Option<ResponseFrame> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("the daemon answers or closes")
            .unwrap_or(0);
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    async fn error(&mut self) -> (ErrorCode, String) {
        match self.frame().await.expect("an error frame").body {
            ResponseBody::Error { error } => (error.code, error.message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn ping_ok(&mut self) {
        let line = format!("{{\"v\":{PROTOCOL_VERSION},\"id\":1,\"method\":\"ping\"}}\n");
        self.send(line.as_bytes()).await;
        let frame = self.frame().await.expect("a ping answer");
        assert!(
            matches!(frame.body, ResponseBody::Result { .. }),
            "{frame:?}"
        );
    }

    async fn closed(&mut self) -> bool {
        self.frame().await.is_none()
    }
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_slot_then_are_refused() {
    let daemon = start(Limits {
        max_connections: 3,
        slot_wait: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = daemon.conn().await;
        conn.ping_ok().await;
        held.push(conn);
    }
    let mut fourth = daemon.conn().await;
    let (code, message) = fourth.error().await;
    assert_eq!(code, ErrorCode::OperationFailed);
    assert!(
        message.contains("serving 3 connections, its limit"),
        "{message}"
    );
    assert!(fourth.closed().await);
    // The three still serve; closing one lets a new client in.
    held[0].ping_ok().await;
    drop(held.remove(0));
    let mut retried = None;
    for _ in 0..200 {
        let mut conn = daemon.conn().await;
        let line = format!("{{\"v\":{PROTOCOL_VERSION},\"id\":1,\"method\":\"ping\"}}\n");
        conn.send(line.as_bytes()).await;
        if let Some(ResponseFrame {
            body: ResponseBody::Result { .. },
            ..
        }) = conn.frame().await
        {
            retried = Some(conn);
            break;
        }
        // The freed slot is given back when the server notices the close.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        retried.is_some(),
        "a slot freed by a closed connection is reused"
    );
}

#[tokio::test]
async fn an_unfinished_line_times_out_but_a_silent_connection_stays() {
    let daemon = start(Limits {
        partial_frame_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut silent = daemon.conn().await;
    let mut partial = daemon.conn().await;
    partial.send(br#"{"v":1,"id":7,"meth"#).await;
    let started = std::time::Instant::now();
    let (code, message) = partial.error().await;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("not finished within 0.3s"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(partial.closed().await);
    // A connection that sent nothing holds no bytes and is not timed out.
    silent.ping_ok().await;
}

#[tokio::test]
async fn the_byte_budget_across_connections_refuses_the_line_that_would_pass_it() {
    let daemon = start(Limits {
        max_buffered_bytes: 100 << 10,
        free_bytes_per_line: 4 << 10,
        ..Limits::default()
    })
    .await;
    let chunk = vec![b'x'; 60 << 10];
    let mut first = daemon.conn().await;
    first.send(&chunk).await;
    // Wait until the daemon has read (and charged) the first line's bytes.
    let deadline = std::time::Instant::now() + WAIT;
    while daemon.ctx.budget.used() < (56 << 10) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first line is charged"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut second = daemon.conn().await;
    second.send(&chunk).await;
    let (code, message) = second.error().await;
    assert_eq!(code, ErrorCode::OperationFailed);
    assert!(
        message.contains("102400 bytes of unfinished requests"),
        "{message}"
    );
    assert!(second.closed().await);
    // Small requests are within every line's free allowance: still served.
    daemon.conn().await.ping_ok().await;
    // The first line, finished, is answered (it is not JSON) and its bytes given back.
    first.send(b"\n").await;
    let (code, _) = first.error().await;
    assert_eq!(code, ErrorCode::BadRequest);
    first.ping_ok().await;
    assert_eq!(daemon.ctx.budget.used(), 0);
    // Now there is room again.
    let mut third = daemon.conn().await;
    third.send(&chunk).await;
    third.send(b"\n").await;
    assert_eq!(third.error().await.0, ErrorCode::BadRequest);
}

#[tokio::test]
async fn a_huge_unknown_method_name_is_not_echoed_whole() {
    let daemon = start(Limits::default()).await;
    let mut conn = daemon.conn().await;
    let name = "m".repeat(900_000);
    let line = format!("{{\"v\":{PROTOCOL_VERSION},\"id\":2,\"method\":\"{name}\"}}\n");
    conn.send(line.as_bytes()).await;
    let (code, message) = conn.error().await;
    assert_eq!(code, ErrorCode::UnknownMethod);
    assert!(message.len() < 200, "{} bytes", message.len());
    assert!(message.contains("… (900000 bytes)"), "{message}");
    conn.ping_ok().await;
}

#[tokio::test]
async fn a_huge_bad_parameter_is_not_echoed_whole() {
    let daemon = start(Limits::default()).await;
    let mut conn = daemon.conn().await;
    let value = "v".repeat(900_000);
    // serde quotes an unknown enum variant back in its error, whole.
    let line = format!(
        "{{\"v\":{PROTOCOL_VERSION},\"id\":3,\"method\":\"complete.names\",\"params\":{{\"kind\":\"{value}\"}}}}\n"
    );
    conn.send(line.as_bytes()).await;
    let (code, message) = conn.error().await;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(
        message.len() <= bangerd::connection::MAX_ERROR_MESSAGE_BYTES + 64,
        "{} bytes",
        message.len()
    );
    assert!(message.contains("unknown variant"), "{}", &message[..200]);
    assert!(message.ends_with("bytes)"), "cut, saying how long it was");
    conn.ping_ok().await;
}
