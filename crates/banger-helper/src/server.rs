//! server: the helper's socket. [`bind`] (from [`crate::socket`]) creates it (parent
//! directory root-owned 0755, socket 0600 owned by the owner uid, so only the owner and
//! root can even connect);
//! [`serve`] accepts connections, checks the peer's uid against the owner on every one
//! (others get one `unauthorized` reply and are closed without a byte being read), and
//! runs each accepted connection on its own thread: read a request line, dispatch,
//! write one reply line (with the tap descriptor as SCM_RIGHTS for `open_tap`).
//!
//! A request that adds something to the host (a tap, NAT rules, a loop device...) is not
//! acted on when its sender has already hung up: a daemon killed right after sending it
//! cannot record what it asked for, and its restarted successor may already have
//! reconciled the host, so acting then would leave exactly the leftover reconcile removed.

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use banger_proto::helper::{
    HelperError, HelperReply, HelperRequest, MAX_HELPER_LINE_BYTES, decode_helper_request,
    encode_helper_line,
};
use banger_sys::fdpass::send_with_fd;
use banger_sys::peer::peer_credentials;

use crate::dispatch::Helper;
use crate::log;
pub use crate::socket::{bind, check_socket_dir};

/// More simultaneous connections than the daemon ever opens; beyond it new ones are
/// answered `failed` at once, so a runaway client cannot exhaust threads.
const MAX_CONNECTIONS: usize = 64;

/// A connection idle this long is closed; the daemon reconnects per request anyway.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Pause after a transient accept failure (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long writing a reply may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever (until accepting itself fails).
pub fn serve(listener: UnixListener, helper: Arc<Helper>) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let owner_uid = helper.config().owner_uid;
    loop {
        let (stream, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors or memory: refuse this one, keep serving.
            Err(error) if is_transient_accept_error(&error) => {
                log::warn(format_args!("accept failed: {error}"));
                // Give connections time to close instead of spinning on the error.
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(error) => return Err(error),
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let peer = match peer_credentials(&stream) {
            Ok(peer) => peer,
            Err(error) => {
                log::warn(format_args!("cannot read peer credentials: {error}"));
                continue;
            }
        };
        if peer.uid != owner_uid {
            log::warn(format_args!(
                "refused uid {} (pid {}): not the owner uid {owner_uid}",
                peer.uid, peer.pid
            ));
            let _ = write_reply(
                &stream,
                HelperReply::Err(HelperError::Unauthorized { uid: peer.uid }),
                None,
            );
            continue;
        }
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = HelperError::Failed {
                op: "connect".to_owned(),
                message: format!("more than {MAX_CONNECTIONS} connections are open"),
            };
            let _ = write_reply(&stream, HelperReply::Err(busy), None);
            continue;
        }
        let helper = helper.clone();
        let active = active.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{}", peer.pid))
            .spawn(move || {
                if let Err(error) = serve_connection(&stream, &helper, peer.pid) {
                    log::warn(format_args!("connection from pid {}: {error}", peer.pid));
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(error) = spawned {
            log::warn(format_args!("cannot start a connection thread: {error}"));
        }
    }
}

fn is_transient_accept_error(error: &io::Error) -> bool {
    use nix::libc::{ECONNABORTED, EMFILE, ENFILE, ENOBUFS, ENOMEM};
    error
        .raw_os_error()
        .is_some_and(|errno| [EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED].contains(&errno))
}

/// Serves one accepted connection until the peer closes it.
fn serve_connection(stream: &UnixStream, helper: &Helper, pid: i32) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_HELPER_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_HELPER_LINE_BYTES {
            // Cannot find the next frame boundary cheaply: answer and hang up.
            let error = HelperError::BadRequest {
                message: format!("request longer than {MAX_HELPER_LINE_BYTES} bytes"),
            };
            return write_reply(stream, HelperReply::Err(error), None);
        }
        // (A final line without newline before EOF is still served.)
        let started = Instant::now();
        let (reply, fd, op) = match decode_helper_request(&line) {
            Ok(request) => {
                let op = request.op_name();
                let described = describe(&request);
                if adds_to_the_host(&request) && peer_gone(stream, reader.buffer()) {
                    log::info(format_args!(
                        "pid {pid}: {op}{described} -> not done: the client hung up before it \
                         could be answered"
                    ));
                    return Ok(());
                }
                match helper.handle(request) {
                    Ok(answer) => (HelperReply::Ok(answer.outcome), answer.fd, (op, described)),
                    Err(error) => (HelperReply::Err(error), None, (op, described)),
                }
            }
            Err(error) => {
                let mut message = error.to_string();
                if let Some(source) = std::error::Error::source(&error) {
                    message = format!("{message}: {source}");
                }
                (
                    HelperReply::Err(HelperError::BadRequest { message }),
                    None,
                    ("?", String::new()),
                )
            }
        };
        let outcome = match &reply {
            HelperReply::Ok(_) => "ok".to_owned(),
            HelperReply::Err(error) => format!("refused: {error}"),
        };
        log::info(format_args!(
            "pid {pid}: {}{} -> {outcome} ({} ms)",
            op.0,
            op.1,
            started.elapsed().as_millis()
        ));
        write_reply(stream, reply, fd.as_ref().map(AsFd::as_fd))?;
    }
}

/// Requests whose effect someone must record to undo it later.
fn adds_to_the_host(request: &HelperRequest) -> bool {
    matches!(
        request,
        HelperRequest::EnsureBridge
            | HelperRequest::CreateTap { .. }
            | HelperRequest::OpenTap { .. }
            | HelperRequest::AddNat { .. }
            | HelperRequest::SetupDns { .. }
            | HelperRequest::SetPolicy { .. }
    )
}

/// True when the peer has closed the connection: nothing more is buffered and the socket
/// reads end-of-file without blocking. A live client waiting for its answer reads as
/// "would block"; one that pipelined more requests has bytes waiting.
fn peer_gone(stream: &UnixStream, buffered: &[u8]) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    if !buffered.is_empty() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(0)
    )
}

/// The request's arguments for the log line.
fn describe(request: &HelperRequest) -> String {
    match serde_json::to_value(request) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.remove("op");
            if fields.is_empty() {
                String::new()
            } else {
                format!(" {}", serde_json::Value::Object(fields))
            }
        }
        _ => String::new(),
    }
}

fn write_reply(
    stream: &UnixStream,
    reply: HelperReply,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<()> {
    let line = encode_helper_line(&reply).map_err(io::Error::other)?;
    send_with_fd(stream.as_fd(), &line, fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HelperConfig, HostPaths, NatBackend};
    use crate::testing::FakeTools;
    use std::io::Write as _;
    use std::path::Path;

    fn helper(dir: &Path) -> (Helper, Arc<FakeTools>) {
        let config = HelperConfig {
            socket: dir.join("helper.sock"),
            owner_uid: 1000,
            bridge: "banger0".into(),
            subnet: "172.30.0.0/24".parse().unwrap(),
            uplink: Some("eth0".into()),
            nat_backend: NatBackend::Nft,
            host: HostPaths {
                proc_sys: dir.join("proc_sys"),
            },
            fail_ops: Vec::new(),
        };
        let tools = Arc::new(FakeTools::new().reply("ip -j -d link show", "[]"));
        (Helper::new(config, tools.clone()), tools)
    }

    /// A daemon killed right after sending `add_nat` or `create_tap` would leave rules or
    /// a tap nobody knows of (its successor may have reconciled already): not done.
    #[test]
    fn requests_of_a_client_that_hung_up_add_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (helper, tools) = helper(dir.path());
        for request in [
            r#"{"op":"add_nat","guest_ip":"172.30.0.2"}"#,
            r#"{"op":"create_tap","name":"bgt-0123abcd"}"#,
        ] {
            let (mut client, server) = UnixStream::pair().unwrap();
            client.write_all(format!("{request}\n").as_bytes()).unwrap();
            drop(client);
            serve_connection(&server, &helper, 1).unwrap();
        }
        assert!(tools.commands().is_empty(), "{:?}", tools.commands());
    }

    #[test]
    fn a_client_waiting_for_its_answer_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let (helper, tools) = helper(dir.path());
        let (mut client, server) = UnixStream::pair().unwrap();
        client
            .write_all(b"{\"op\":\"create_tap\",\"name\":\"bgt-0123abcd\"}\n")
            .unwrap();
        std::thread::scope(|scope| {
            let served = scope.spawn(|| serve_connection(&server, &helper, 1));
            let mut reply = String::new();
            BufReader::new(&client).read_line(&mut reply).unwrap();
            assert!(reply.starts_with("{\"ok\""), "{reply}");
            client.shutdown(std::net::Shutdown::Both).unwrap();
            served.join().unwrap().unwrap();
        });
        assert!(
            tools
                .commands()
                .iter()
                .any(|c| c.starts_with("ip tuntap add dev bgt-0123abcd")),
            "{:?}",
            tools.commands()
        );
    }
}
