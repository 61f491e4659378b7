//! connect: opening an agent connection. Under QEMU the agent's virtio-serial port is a
//! Unix socket served by QEMU's chardev; under Firecracker the guest's vsock is a Unix
//! socket where the host writes `CONNECT <port>\n` and reads `OK <host port>\n` before
//! the stream reaches the guest.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{AgentClient, AgentError};

/// Longest `OK <port>` line Firecracker answers with, with room to spare.
const MAX_HANDSHAKE_REPLY: usize = 64;

impl AgentClient {
    /// Connects to the QEMU chardev socket of the agent's virtio-serial port. QEMU accepts
    /// one client at a time; a second one waits until the first disconnects.
    pub async fn connect_unix(path: &Path) -> Result<AgentClient, AgentError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| AgentError::Connect {
                path: path.to_owned(),
                source,
            })?;
        Ok(AgentClient::from_stream(stream))
    }

    /// Connects to guest vsock `port` through Firecracker's vsock Unix socket `uds`.
    pub async fn connect_vsock_uds(uds: &Path, port: u32) -> Result<AgentClient, AgentError> {
        let mut stream = UnixStream::connect(uds)
            .await
            .map_err(|source| AgentError::Connect {
                path: uds.to_owned(),
                source,
            })?;
        let handshake_failed = |detail: String| AgentError::VsockHandshake {
            path: uds.to_owned(),
            detail,
        };
        stream
            .write_all(format!("CONNECT {port}\n").as_bytes())
            .await
            .map_err(|error| handshake_failed(format!("sending CONNECT: {error}")))?;
        let reply = read_reply_line(&mut stream)
            .await
            .map_err(handshake_failed)?;
        parse_connect_reply(&reply).map_err(handshake_failed)?;
        Ok(AgentClient::from_stream(stream))
    }
}

/// Reads up to and including the newline, one byte at a time: the bytes after it belong
/// to the agent and must stay in the stream.
async fn read_reply_line(stream: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(format!(
                    "connection closed after {:?} (is the guest agent listening?)",
                    String::from_utf8_lossy(&line)
                ));
            }
            Err(error) => return Err(format!("reading the reply: {error}")),
        };
        if byte == b'\n' {
            return Ok(line);
        }
        line.push(byte);
        if line.len() > MAX_HANDSHAKE_REPLY {
            return Err(format!(
                "reply too long: {:?}",
                String::from_utf8_lossy(&line)
            ));
        }
    }
}

/// Checks Firecracker's `OK <host port>` answer and returns the host-side port.
fn parse_connect_reply(line: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(line).map_err(|_| format!("reply is not text: {line:?}"))?;
    text.strip_prefix("OK ")
        .and_then(|port| port.trim_end_matches('\r').parse().ok())
        .ok_or_else(|| format!("unexpected reply {text:?}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    use super::*;
    use crate::agent::{
        Hello, PROTOCOL_VERSION, Reply, ReplyBody, RequestId, decode_request, encode_frame,
    };

    #[test]
    fn connect_replies_are_parsed_strictly() {
        let table: &[(&[u8], Result<u32, ()>)] = &[
            (b"OK 1073741824", Ok(1_073_741_824)),
            (b"OK 5\r", Ok(5)),
            (b"OK", Err(())),
            (b"OK x", Err(())),
            (b"ERR no listener", Err(())),
            (b"ok 5", Err(())),
            (b"\xffOK 5", Err(())),
        ];
        for (line, want) in table {
            assert_eq!(
                parse_connect_reply(line).map_err(|_| ()),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// A fake Firecracker: checks the CONNECT line, answers OK and, in the same write, a
    /// frame from the agent's side (a stale one), then answers one hello. Reading the
    /// handshake must leave that frame in the stream for the client to see and drop.
    #[tokio::test]
    async fn handshake_then_the_stream_belongs_to_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let listener = UnixListener::bind(&uds).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            assert_eq!(lines.next_line().await.unwrap().unwrap(), "CONNECT 52");
            let stale = encode_frame(&Reply {
                id: RequestId(7),
                body: ReplyBody::Exit { code: 0 },
            })
            .unwrap();
            write
                .write_all(&[b"OK 1073741824\n".as_slice(), &stale].concat())
                .await
                .unwrap();
            // The client starts with an empty line; its hello follows.
            let mut request = String::new();
            while request.is_empty() {
                request = lines.next_line().await.unwrap().unwrap();
            }
            let request = decode_request(request.as_bytes()).unwrap();
            let reply = encode_frame(&Reply {
                id: request.id,
                body: ReplyBody::HelloOk(Hello {
                    boot_id: "fc-boot".into(),
                    hostname: "fc".into(),
                    agent_version: "test".into(),
                    protocol: PROTOCOL_VERSION,
                    uptime_ms: 1,
                    features: Vec::new(),
                }),
            })
            .unwrap();
            write.write_all(&reply).await.unwrap();
            // Keep the connection open until the client is done.
            let _ = lines.next_line().await;
        });
        let client = AgentClient::connect_vsock_uds(&uds, 52).await.unwrap();
        let hello = client.hello(Duration::from_secs(5)).await.unwrap();
        assert_eq!(hello.boot_id, "fc-boot");
        // The stale frame came before the hello reply, so it has been seen by now.
        assert_eq!(client.discarded_frames(), 1);
        drop(client);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_port_is_a_handshake_error() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let listener = UnixListener::bind(&uds).unwrap();
        let server = tokio::spawn(async move {
            // Firecracker closes the connection when nothing listens on the guest port.
            let (stream, _) = listener.accept().await.unwrap();
            let mut lines = BufReader::new(stream).lines();
            assert_eq!(lines.next_line().await.unwrap().unwrap(), "CONNECT 1234");
        });
        let error = AgentClient::connect_vsock_uds(&uds, 1234)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AgentError::VsockHandshake { detail, .. } if detail.contains("connection closed")),
            "{error:?}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.sock");
        for result in [
            AgentClient::connect_unix(&missing).await,
            AgentClient::connect_vsock_uds(&missing, 52).await,
        ] {
            assert!(matches!(result, Err(AgentError::Connect { path, .. }) if path == missing));
        }
    }
}
