//! A small QMP client: JSON lines over QEMU's control socket. It negotiates capabilities,
//! runs one command at a time, tags each with an `id`, and skips the asynchronous events
//! (`SHUTDOWN`, `POWERDOWN`, ...) QEMU interleaves with replies. Message parsing is a pure
//! function so the protocol cases are table-tested without a QEMU.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long one command may take to answer. QMP replies are immediate for the commands
/// banger sends; only a wedged QEMU takes longer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A line longer than this is not QMP; refusing it bounds memory.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to {}", .socket.display())]
    Connect {
        socket: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP socket I/O failed")]
    Io(#[source] std::io::Error),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("no QMP reply within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    #[error("QEMU refused it ({class}): {desc}")]
    Command { class: String, desc: String },
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    /// The greeting sent on connect.
    Greeting(Value),
    /// A successful reply.
    Return { id: Option<Value>, value: Value },
    /// A failed command.
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
    /// An asynchronous event such as `SHUTDOWN`.
    Event { name: String, data: Value },
}

/// Parses one line from QEMU.
pub fn parse_message(line: &str) -> Result<QmpMessage, QmpError> {
    let value: Value = serde_json::from_str(line.trim())
        .map_err(|error| QmpError::Protocol(format!("{error}: {}", line.trim())))?;
    let Value::Object(mut object) = value else {
        return Err(QmpError::Protocol(line.trim().to_string()));
    };
    let id = object.remove("id");
    if let Some(greeting) = object.remove("QMP") {
        return Ok(QmpMessage::Greeting(greeting));
    }
    if let Some(value) = object.remove("return") {
        return Ok(QmpMessage::Return { id, value });
    }
    if let Some(error) = object.remove("error") {
        let field = |name: &str| {
            error
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        return Ok(QmpMessage::Error {
            id,
            class: field("class"),
            desc: field("desc"),
        });
    }
    if let Some(Value::String(name)) = object.remove("event") {
        return Ok(QmpMessage::Event {
            name,
            data: object.remove("data").unwrap_or(Value::Null),
        });
    }
    Err(QmpError::Protocol(line.trim().to_string()))
}

/// What `query-status` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct QmpStatus {
    /// `prelaunch`, `running`, `paused`, `shutdown`, ...
    pub status: String,
    pub running: bool,
}

/// A negotiated QMP connection.
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    timeout: Duration,
}

impl QmpClient {
    /// Connects, reads the greeting and leaves capabilities-negotiation mode.
    pub async fn connect(socket: &Path) -> Result<QmpClient, QmpError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| QmpError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        let (read, writer) = stream.into_split();
        let mut client = QmpClient {
            reader: BufReader::new(read),
            writer,
            next_id: 1,
            timeout: COMMAND_TIMEOUT,
        };
        match client.read_message().await? {
            QmpMessage::Greeting(_) => {}
            other => {
                return Err(QmpError::Protocol(format!(
                    "expected greeting, got {other:?}"
                )));
            }
        }
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// Runs `command` and returns its `return` value, skipping events meanwhile.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let (id, line) = self.request_line(command, arguments);
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(QmpError::Io)?;
        self.reply_within_timeout(id).await
    }

    /// Runs `command` with `fd` attached to its line (SCM_RIGHTS), as QMP's `getfd` and
    /// `add-fd` expect. QEMU keeps its own copy; `fd` stays open here.
    pub async fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Value, QmpError> {
        use std::os::fd::AsFd as _;
        let (id, line) = self.request_line(command, Some(arguments));
        let stream: &UnixStream = self.writer.as_ref();
        stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                banger_sys::fdpass::send_with_fd(stream.as_fd(), line.as_bytes(), Some(fd))
            })
            .await
            .map_err(QmpError::Io)?;
        self.reply_within_timeout(id).await
    }

    /// The next request id and the request's line (newline-terminated).
    fn request_line(&mut self, command: &str, arguments: Option<Value>) -> (u64, String) {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        (id, line)
    }

    /// The reply to request `id`, within the client's timeout.
    async fn reply_within_timeout(&mut self, id: u64) -> Result<Value, QmpError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_reply(id))
            .await
            .map_err(|_| QmpError::Timeout(timeout))?
    }

    async fn read_reply(&mut self, id: u64) -> Result<Value, QmpError> {
        let ours = |reply_id: &Option<Value>| reply_id.as_ref().and_then(Value::as_u64) == Some(id);
        loop {
            match self.read_message().await? {
                QmpMessage::Return {
                    id: reply_id,
                    value,
                } if ours(&reply_id) => return Ok(value),
                QmpMessage::Error {
                    id: reply_id,
                    class,
                    desc,
                } if ours(&reply_id) => return Err(QmpError::Command { class, desc }),
                QmpMessage::Event { name, .. } => {
                    tracing::debug!(event = %name, "QMP event while waiting for a reply");
                }
                // A reply to another id (a command whose wait timed out earlier) is
                // stale; keep reading.
                other => tracing::debug!(message = ?other, "QMP message skipped"),
            }
        }
    }

    async fn read_message(&mut self) -> Result<QmpMessage, QmpError> {
        let mut line = String::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES)
            .read_line(&mut line)
            .await
            .map_err(QmpError::Io)?;
        if read == 0 {
            return Err(QmpError::Closed);
        }
        if !line.ends_with('\n') && read as u64 >= MAX_LINE_BYTES {
            return Err(QmpError::Protocol(format!(
                "a line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        parse_message(&line)
    }

    /// `query-status`: the run state of the VM.
    pub async fn query_status(&mut self) -> Result<QmpStatus, QmpError> {
        let value = self.execute("query-status", None).await?;
        serde_json::from_value(value.clone())
            .map_err(|error| QmpError::Protocol(format!("query-status: {error}: {value}")))
    }

    /// ACPI power button: a guest that handles it powers off, and with `-no-reboot`
    /// QEMU then exits. A guest may ignore it (busybox init without acpid does).
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// Makes QEMU exit at once. QEMU may close the socket before its reply is read;
    /// that counts as success.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: Vec<(&str, QmpMessage)> = vec![
            (
                r#"{"QMP": {"version": {"qemu": {"major": 10}}, "capabilities": ["oob"]}}"#,
                QmpMessage::Greeting(
                    json!({"version": {"qemu": {"major": 10}}, "capabilities": ["oob"]}),
                ),
            ),
            (
                r#"{"return": {}}"#,
                QmpMessage::Return {
                    id: None,
                    value: json!({}),
                },
            ),
            (
                r#"{"return": {"status": "prelaunch", "running": false}, "id": 7}"#,
                QmpMessage::Return {
                    id: Some(json!(7)),
                    value: json!({"status": "prelaunch", "running": false}),
                },
            ),
            (
                r#"{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#,
                QmpMessage::Error {
                    id: Some(json!(3)),
                    class: "CommandNotFound".into(),
                    desc: "The command nope has not been found".into(),
                },
            ),
            (
                r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#,
                QmpMessage::Event {
                    name: "SHUTDOWN".into(),
                    data: json!({"guest": false, "reason": "host-qmp-quit"}),
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_message(line).unwrap(), expected, "{line}");
        }
    }

    #[test]
    fn parse_rejects_non_qmp() {
        for line in ["", "not json", "[1,2]", r#"{"something": 1}"#] {
            assert!(
                matches!(parse_message(line), Err(QmpError::Protocol(_))),
                "{line:?} should be refused"
            );
        }
    }

    /// A scripted QMP peer: checks what the client sends and answers with events mixed
    /// in, the way QEMU does around `quit`.
    #[tokio::test]
    async fn client_negotiates_and_skips_events() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                let request: Value = serde_json::from_str(&line).unwrap();
                let id = request["id"].clone();
                let command = request["execute"].as_str().unwrap().to_string();
                seen.push(command.clone());
                let reply = match command.as_str() {
                    "query-status" => format!(
                        "{{\"event\": \"RESUME\", \"data\": {{}}}}\n{{\"return\": {{\"status\": \"paused\", \"running\": false}}, \"id\": {id}}}\n"
                    ),
                    "system_powerdown" => format!(
                        "{{\"return\": {{}}, \"id\": 999}}\n{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"no ACPI\"}}, \"id\": {id}}}\n"
                    ),
                    "quit" => {
                        // QEMU sometimes closes before the reply is flushed.
                        write
                            .write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {}}\n")
                            .await
                            .unwrap();
                        break;
                    }
                    _ => format!("{{\"return\": {{}}, \"id\": {id}}}\n"),
                };
                write.write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });

        let mut client = QmpClient::connect(&socket).await.unwrap();
        let status = client.query_status().await.unwrap();
        assert_eq!(
            status,
            QmpStatus {
                status: "paused".into(),
                running: false
            }
        );
        match client.system_powerdown().await {
            Err(QmpError::Command { class, desc }) => {
                assert_eq!((class.as_str(), desc.as_str()), ("GenericError", "no ACPI"));
            }
            other => panic!("expected the command error, got {other:?}"),
        }
        client.quit().await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            [
                "qmp_capabilities",
                "query-status",
                "system_powerdown",
                "quit"
            ]
        );
    }
}
