//! The UDP loop around [`crate::wire::answer_into`]: one task, one receive buffer and one
//! response buffer for its whole life, so a flood costs CPU but never memory. Socket
//! errors are logged (rate-limited, so a flood of them cannot flood the log) and the loop
//! goes on; only the shutdown future ends it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::names::NameTable;
use crate::wire::{MAX_RESPONSE_LEN, answer_into};

/// Received datagrams longer than this are truncated by the kernel and then answered
/// FORMERR or not at all; a real query is far shorter, EDNS or not.
const RECV_BUF_LEN: usize = 4096;

/// At most one log line per kind of socket error per this interval.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Answers queries arriving on `socket` from `names` until `shutdown` completes. The
/// caller binds the socket (the daemon on the bridge address at [`crate::DEFAULT_PORT`],
/// tests on `127.0.0.1:0`).
pub async fn serve(socket: UdpSocket, names: Arc<dyn NameTable>, shutdown: impl Future) {
    let local = socket.local_addr().ok();
    tracing::info!(address = ?local, "dns responder listening");
    let mut shutdown = std::pin::pin!(shutdown);
    let mut recv_buf = vec![0u8; RECV_BUF_LEN];
    let mut response = Vec::with_capacity(MAX_RESPONSE_LEN);
    let lookup = |name: &str| -> Option<Ipv4Addr> { names.lookup(name) };
    let mut recv_errors = ErrorLog::new("receive");
    let mut send_errors = ErrorLog::new("send");
    loop {
        let received = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            received = socket.recv_from(&mut recv_buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                recv_errors.note(&err);
                continue;
            }
        };
        if !answer_into(&recv_buf[..len], &lookup, &mut response) {
            continue;
        }
        if let Err(err) = socket.send_to(&response, peer).await {
            send_errors.note(&err);
        }
    }
    tracing::info!(address = ?local, "dns responder stopped");
}

/// Rate-limits warnings for one kind of socket error, counting what it held back.
#[derive(Debug)]
struct ErrorLog {
    what: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn new(what: &'static str) -> ErrorLog {
        ErrorLog {
            what,
            last_logged: None,
            suppressed: 0,
        }
    }

    fn note(&mut self, err: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %err,
            suppressed = self.suppressed,
            "dns responder: {} failed; continuing",
            self.what
        );
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}
