//! Tests of the client's demultiplexing against a scripted fake agent on an in-memory
//! stream: stale and garbage input, concurrency, cancel, stdin flow control, hang-ups.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::agent::{MAX_FILE_BYTES, Transport, decode_request};

const WAIT: Duration = Duration::from_secs(10);

/// Output chunks in arrival order.
type Chunks = Arc<Mutex<Vec<(Stream, Vec<u8>)>>>;

/// Plays the agent on one end of an in-memory stream: writes `preamble` first, then for
/// each request writes whatever byte chunks `respond` returns.
pub(super) struct FakeAgent;

impl FakeAgent {
    pub(super) fn spawn(
        respond: impl FnMut(Request) -> Vec<Vec<u8>> + Send + 'static,
    ) -> AgentClient {
        FakeAgent::pair(respond).0
    }

    pub(super) fn pair(
        respond: impl FnMut(Request) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (AgentClient, JoinHandle<()>) {
        FakeAgent::with_preamble(Vec::new(), respond)
    }

    pub(super) fn with_preamble(
        preamble: Vec<u8>,
        respond: impl FnMut(Request) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (AgentClient, JoinHandle<()>) {
        let (client_end, agent_end) = tokio::io::duplex(256 * 1024);
        let agent = tokio::spawn(serve(agent_end, preamble, respond));
        (AgentClient::from_stream(client_end), agent)
    }
}

async fn serve(
    stream: DuplexStream,
    preamble: Vec<u8>,
    mut respond: impl FnMut(Request) -> Vec<Vec<u8>>,
) {
    let (read, mut write) = tokio::io::split(stream);
    if write.write_all(&preamble).await.is_err() {
        return;
    }
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.is_empty() {
            continue;
        }
        let request = decode_request(line.as_bytes()).expect("the client sends valid frames");
        for chunk in respond(request) {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    }
}

pub(super) fn frame(id: RequestId, body: ReplyBody) -> Vec<u8> {
    encode_frame(&Reply { id, body }).unwrap()
}

pub(super) fn hello_ok(id: RequestId, protocol: u32) -> Vec<u8> {
    frame(
        id,
        ReplyBody::HelloOk(Hello {
            boot_id: "boot-1".into(),
            hostname: "guest".into(),
            agent_version: "test".into(),
            protocol,
            uptime_ms: 10,
            features: Vec::new(),
        }),
    )
}

fn output(id: RequestId, stream: Stream, data: &[u8]) -> Vec<u8> {
    frame(
        id,
        ReplyBody::Output {
            stream,
            data: data.to_vec(),
        },
    )
}

fn exit(id: RequestId, code: i32) -> Vec<u8> {
    frame(id, ReplyBody::Exit { code })
}

fn collect_into(sink: &Chunks) -> impl FnMut(Stream, &[u8]) + Send + use<> {
    let sink = Arc::clone(sink);
    move |stream, data| sink.lock().unwrap().push((stream, data.to_vec()))
}

/// What a new connection may find first: the tail of a frame cut in half, whole frames
/// for a previous connection's requests, the agent's complaint about a previous client's
/// garbage, and a line over the size limit. None of it may be taken as an answer.
#[tokio::test]
async fn stale_and_garbage_input_before_the_answer_is_dropped() {
    let old = RequestId(12345);
    let mut preamble = b"t\",\"data\":\"AAAA\"}\n".to_vec();
    preamble.extend(output(old, Stream::Stdout, b"old output"));
    preamble.extend(exit(old, 0));
    preamble.extend(frame(
        RequestId::UNSOLICITED,
        ReplyBody::Error {
            message: "malformed frame".into(),
        },
    ));
    preamble.extend(vec![b'x'; MAX_FRAME_BYTES + 1]);
    preamble.extend(b"\n\n");
    let (client, _agent) = FakeAgent::with_preamble(preamble, |request| {
        vec![hello_ok(request.id, PROTOCOL_VERSION)]
    });
    let hello = client.hello(WAIT).await.unwrap();
    assert_eq!(hello.boot_id, "boot-1");
    assert_eq!(client.discarded_frames(), 5);
}

/// An exec stays open (it has printed one line) while hello and ports are answered on
/// the same connection; ports also finishes the exec, so the exec's end depends on the
/// other requests having gone through.
#[tokio::test]
async fn requests_run_concurrently_on_one_connection() {
    let mut running_exec = None;
    let client = FakeAgent::spawn(move |request| match request.op {
        RequestOp::Exec(_) => {
            running_exec = Some(request.id);
            vec![output(request.id, Stream::Stdout, b"started\n")]
        }
        RequestOp::Hello { .. } => vec![hello_ok(request.id, PROTOCOL_VERSION)],
        RequestOp::Ports => {
            let exec = running_exec.expect("exec first");
            vec![
                frame(
                    request.id,
                    ReplyBody::PortsOk {
                        ports: vec![ListeningPort {
                            proto: Transport::Tcp,
                            bind: "0.0.0.0".parse().unwrap(),
                            port: 8080,
                            process: None,
                            pid: None,
                        }],
                    },
                ),
                output(exec, Stream::Stderr, b"done\n"),
                exit(exec, 3),
            ]
        }
        _ => vec![],
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut started_tx = Some(started_tx);
    let record = collect_into(&seen);
    let exec = {
        let client = client.clone();
        let mut record = record;
        tokio::spawn(async move {
            let request = ExecRequest {
                argv: vec!["server".into()],
                ..ExecRequest::default()
            };
            client
                .exec(request, move |stream, data| {
                    record(stream, data);
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                })
                .await
        })
    };
    started_rx.await.unwrap();
    assert_eq!(client.hello(WAIT).await.unwrap().hostname, "guest");
    assert_eq!(client.ports().await.unwrap()[0].port, 8080);
    assert_eq!(exec.await.unwrap().unwrap(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (Stream::Stdout, b"started\n".to_vec()),
            (Stream::Stderr, b"done\n".to_vec())
        ]
    );
}

#[tokio::test]
async fn cancel_signals_the_exec_and_still_returns_its_exit_code() {
    let client = FakeAgent::spawn(|request| match request.op {
        RequestOp::Exec(_) => vec![output(request.id, Stream::Stdout, b"ready\n")],
        RequestOp::Signal {
            target,
            signal: Signal::Term,
        } => {
            assert_ne!(target, request.id, "the signal has an id of its own");
            vec![exit(target, 128 + 15)]
        }
        _ => vec![],
    });
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let mut ready_tx = Some(ready_tx);
    let code = client
        .exec_with_cancel(
            ExecRequest {
                argv: vec!["sleep".into(), "1000".into()],
                ..ExecRequest::default()
            },
            move |_, _| drop(ready_tx.take()),
            async move {
                let _ = ready_rx.await;
            },
        )
        .await
        .unwrap();
    assert_eq!(code, 143);
}

/// The fake agent acknowledges stdin only once a full window is outstanding, and checks
/// the client never has more than a window plus one chunk in flight.
#[tokio::test]
async fn stdin_is_streamed_within_the_flow_control_window() {
    let input: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let mut unacked = 0u64;
    let mut exec_id = None;
    let client = FakeAgent::spawn(move |request| match request.op {
        RequestOp::Exec(exec) => {
            assert!(exec.stdin);
            exec_id = Some(request.id);
            vec![]
        }
        RequestOp::Stdin { target, data } => {
            assert_eq!(Some(target), exec_id);
            unacked += data.len() as u64;
            assert!(unacked <= STDIN_WINDOW_BYTES + STDIN_CHUNK_BYTES as u64);
            let mut replies = vec![output(target, Stream::Stdout, &data)];
            if unacked >= STDIN_WINDOW_BYTES {
                replies.push(frame(target, ReplyBody::StdinAck { bytes: unacked }));
                unacked = 0;
            }
            replies
        }
        RequestOp::StdinEof { target } => vec![exit(target, 0)],
        _ => vec![],
    });
    let echoed = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&echoed);
    let code = client
        .exec_with_stdin(
            ExecRequest {
                argv: vec!["cat".into()],
                ..ExecRequest::default()
            },
            std::io::Cursor::new(input.clone()),
            move |_, data| sink.lock().unwrap().extend_from_slice(data),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(*echoed.lock().unwrap() == input, "stdin came back intact");
}

#[tokio::test]
async fn a_hang_up_fails_the_requests_in_flight_and_later_ones() {
    let (client_end, agent_end) = tokio::io::duplex(4096);
    let client = AgentClient::from_stream(client_end);
    let agent = tokio::spawn(async move {
        let mut lines = BufReader::new(agent_end).lines();
        // The leading empty line, then the exec; then hang up without answering.
        while lines.next_line().await.unwrap().unwrap().is_empty() {}
    });
    let result = client
        .exec(
            ExecRequest {
                argv: vec!["true".into()],
                ..ExecRequest::default()
            },
            |_, _| {},
        )
        .await;
    assert!(
        matches!(result, Err(AgentError::Disconnected)),
        "{result:?}"
    );
    agent.await.unwrap();
    assert!(client.is_closed());
    assert!(matches!(
        client.hello(WAIT).await,
        Err(AgentError::Disconnected)
    ));
}

#[tokio::test]
async fn remote_errors_and_oversized_requests_are_reported() {
    let client = FakeAgent::spawn(|request| match request.op {
        RequestOp::ReadFile { path } => vec![frame(
            request.id,
            ReplyBody::Error {
                message: format!("{path}: not found"),
            },
        )],
        RequestOp::WriteFile { .. } => vec![frame(request.id, ReplyBody::FileOk { data: None })],
        _ => vec![],
    });
    let error = client.read_file("/nope").await.unwrap_err();
    assert!(matches!(&error, AgentError::Remote { message } if message == "/nope: not found"));
    client
        .write_file("/ok", 0o644, &vec![7; MAX_FILE_BYTES])
        .await
        .unwrap();
    let error = client
        .write_file("/big", 0o644, &vec![7; MAX_FRAME_BYTES])
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::Frame(FrameError::TooLarge { .. })),
        "{error:?}"
    );
}

/// A reply of the wrong kind is an error, not a panic or a hang.
#[tokio::test]
async fn a_mismatched_reply_is_an_unexpected_reply_error() {
    let client = FakeAgent::spawn(|request| vec![exit(request.id, 0)]);
    let error = client.ports().await.unwrap_err();
    assert!(matches!(
        error,
        AgentError::UnexpectedReply {
            request: "ports",
            reply: "exit"
        }
    ));
}

#[test]
fn id_bases_are_random_and_stay_exact_in_json() {
    let bases: Vec<u64> = (0..8).map(|_| random_id_base()).collect();
    for base in &bases {
        assert!((1 << 40..1 << 52).contains(base), "{base}");
    }
    let mut unique = bases.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), bases.len());
}
