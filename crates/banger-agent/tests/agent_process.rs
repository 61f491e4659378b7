//! The real agent binary, run on the host with `--unix PATH` against a listener that
//! plays QEMU's chardev socket, driven through the real `AgentClient`. Covers exec
//! (streams, exit codes, argv, stdin, cancel, concurrency), ports, files, and what
//! happens across host disconnects: the agent keeps running, reconnects, and a new client
//! is not confused by frames meant for the previous one.

use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use banger_proto::agent::{
    ExecRequest, Reply, ReplyBody, RequestId, Stream, Transport, decode_reply,
};
use banger_proto::agent_client::{AgentClient, AgentError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};

const WAIT: Duration = Duration::from_secs(20);

/// A running agent process connected (eventually) to our listener; killed on drop.
struct AgentProcess {
    child: Child,
    listener: UnixListener,
    dir: tempfile::TempDir,
}

impl AgentProcess {
    fn start() -> AgentProcess {
        AgentProcess::start_with(false)
    }

    /// With `ignoring_interrupts`, the agent starts with SIGINT and SIGQUIT ignored, as
    /// a guest init's background job does (`banger-agent &` in a shell script).
    fn start_with(ignoring_interrupts: bool) -> AgentProcess {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // BANGER_AGENT_BIN runs these tests against another build, e.g. the static one.
        let binary = std::env::var_os("BANGER_AGENT_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_banger-agent")),
            PathBuf::from,
        );
        let mut command = if ignoring_interrupts {
            let mut shell = std::process::Command::new("sh");
            shell
                .args(["-c", "trap '' INT QUIT; exec \"$0\" \"$@\""])
                .arg(binary);
            shell
        } else {
            std::process::Command::new(binary)
        };
        let child = command
            .arg("--unix")
            .arg(&socket)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        AgentProcess {
            child,
            listener,
            dir,
        }
    }

    /// The agent's next connection (it connects at start and after each disconnect).
    async fn accept(&self) -> UnixStream {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the agent connects")
            .unwrap();
        stream
    }

    async fn client(&self) -> AgentClient {
        AgentClient::from_stream(self.accept().await)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        ..ExecRequest::default()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn run(client: &AgentClient, request: ExecRequest) -> (i32, Output) {
    let output = Arc::new(Mutex::new(Output::default()));
    let sink = Arc::clone(&output);
    let code = tokio::time::timeout(
        WAIT,
        client.exec(request, move |stream, data| {
            let mut output = sink.lock().unwrap();
            match stream {
                Stream::Stdout => output.stdout.extend_from_slice(data),
                Stream::Stderr => output.stderr.extend_from_slice(data),
            }
        }),
    )
    .await
    .expect("exec finishes")
    .unwrap();
    let output = output.lock().unwrap().clone();
    (code, output)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_reports_this_machines_boot() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let hello = client.hello(WAIT).await.unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(hello.boot_id, boot_id.trim());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(hello.hostname, hostname.trim());
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(hello.uptime_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_both_outputs_and_returns_the_exit_code() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let (code, output) = run(
        &client,
        command(&["sh", "-c", "echo out; echo err >&2; exit 42"]),
    )
    .await;
    assert_eq!(code, 42);
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");
}

/// No shell between the host and the command: every byte of every argument survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_arrives_intact() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let tricky = [
        "two words",
        "it's",
        "\"double\"",
        "$HOME and `id`",
        "line1\nline2",
        "*",
        "",
        "ünïcødé",
        "back\\slash",
    ];
    let mut argv = vec!["printf", "%s\\n"];
    argv.extend(tricky);
    let (code, output) = run(&client, command(&argv)).await;
    assert_eq!(code, 0);
    let want: String = tricky.iter().map(|arg| format!("{arg}\n")).collect();
    assert_eq!(text(&output.stdout), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_working_directory_are_applied() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let mut request = command(&["sh", "-c", "echo \"$GREETING|$HOME|$PATH\"; pwd"]);
    request.env.insert("GREETING".into(), "hi there".into());
    request.cwd = Some(agent.dir.path().to_str().unwrap().to_owned());
    let (code, output) = run(&client, request).await;
    assert_eq!(code, 0);
    let want = format!(
        "hi there|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n{}\n",
        agent.dir.path().canonicalize().unwrap().display()
    );
    assert_eq!(text(&output.stdout), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_is_an_error() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    // (A command that is not found is a shell's 127: see below.)
    let error = client.exec(command(&[]), |_, _| {}).await.unwrap_err();
    assert!(
        matches!(&error, AgentError::Remote { message } if message.contains("empty")),
        "{error:?}"
    );
    // The agent is still fine afterwards.
    assert_eq!(run(&client, command(&["true"])).await.0, 0);
}

/// One exec blocks reading a FIFO while hello, ports and another exec (the one that
/// writes the FIFO) go through the same connection; then a batch of execs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_concurrently() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let fifo = agent.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap().to_owned();

    let reader = {
        let client = client.clone();
        let fifo = fifo.clone();
        tokio::spawn(async move {
            run(
                &client,
                command(&["sh", "-c", "read x < \"$0\"; echo got $x", &fifo]),
            )
            .await
        })
    };
    client.hello(WAIT).await.unwrap();
    client.ports().await.unwrap();
    let (code, _) = run(
        &client,
        command(&["sh", "-c", "echo token > \"$0\"", &fifo]),
    )
    .await;
    assert_eq!(code, 0);
    let (code, output) = reader.await.unwrap();
    assert_eq!((code, text(&output.stdout)), (0, "got token\n"));

    let batch: Vec<_> = (0..12)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                run(
                    &client,
                    command(&["sh", "-c", &format!("echo {i}; exit {i}")]),
                )
                .await
            })
        })
        .collect();
    for (i, task) in batch.into_iter().enumerate() {
        let (code, output) = task.await.unwrap();
        assert_eq!(code, i as i32);
        assert_eq!(text(&output.stdout), format!("{i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_piped_to_the_command() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    // Larger than the flow-control window, so acknowledgements have to flow.
    let input: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 253) as u8).collect();
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&output);
    let code = tokio::time::timeout(
        WAIT,
        client.exec_with_stdin(
            command(&["sh", "-c", "cat; echo done >&2"]),
            std::io::Cursor::new(input.clone()),
            move |stream, data| {
                if stream == Stream::Stdout {
                    sink.lock().unwrap().extend_from_slice(data);
                }
            },
            std::future::pending(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code, 0);
    assert!(*output.lock().unwrap() == input, "stdin came back intact");

    let (code, output) = {
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        let code = client
            .exec_with_stdin(
                command(&["wc", "-l"]),
                &b"a\nb\nc\n"[..],
                move |_, data| sink.lock().unwrap().extend_from_slice(data),
                std::future::pending(),
            )
            .await
            .unwrap();
        let output = output.lock().unwrap().clone();
        (code, output)
    };
    assert_eq!((code, text(&output).trim()), (0, "3"));
}

/// Cancel sends SIGTERM to the whole process group: the shell and its background child
/// both die, and the call still returns the exit code (128 + 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_process_group() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let (pid_tx, pid_rx) = oneshot::channel::<u32>();
    let mut pid_tx = Some(pid_tx);
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let mut cancel_tx = Some(cancel_tx);
    let code = tokio::time::timeout(
        WAIT,
        client.exec_with_cancel(
            command(&["sh", "-c", "sleep 1000 & echo $!; wait"]),
            move |_, data| {
                if let Ok(pid) = text(data).trim().parse()
                    && let (Some(pid_tx), Some(cancel_tx)) = (pid_tx.take(), cancel_tx.take())
                {
                    pid_tx.send(pid).unwrap();
                    cancel_tx.send(()).unwrap();
                }
            },
            async move {
                let _ = cancel_rx.await;
            },
        ),
    )
    .await
    .expect("cancel ends the command")
    .unwrap();
    assert_eq!(code, 128 + 15);
    // `exit` comes after the pipes closed, and the background sleep held stdout: it was
    // signalled and is exiting. The kernel closes a dying process's files before it turns
    // zombie, so for a moment it may still show as running; within a second it is gone
    // (or a zombie waiting for its new parent to reap it).
    let sleep_pid = pid_rx.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Ok(stat) = std::fs::read_to_string(format!("/proc/{sleep_pid}/stat")) {
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background sleep still alive: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A cancel that fires before the command has even started still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_cancel_is_not_lost() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    for _ in 0..5 {
        let code = tokio::time::timeout(
            WAIT,
            client.exec_with_cancel(command(&["sleep", "1000"]), |_, _| {}, async {}),
        )
        .await
        .expect("cancel ends the command")
        .unwrap();
        assert_eq!(code, 128 + 15);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_lists_sockets_the_test_opened() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ports = client.ports().await.unwrap();
    let find = |proto: Transport, port: u16| {
        ports
            .iter()
            .find(|p| p.proto == proto && p.port == port && p.bind.to_string() == "127.0.0.1")
            .unwrap_or_else(|| panic!("{proto:?} {port} missing from {ports:?}"))
    };
    let tcp_entry = find(Transport::Tcp, tcp.local_addr().unwrap().port());
    let udp_entry = find(Transport::Udp, udp.local_addr().unwrap().port());
    for entry in [tcp_entry, udp_entry] {
        assert_eq!(entry.pid, Some(std::process::id()), "{entry:?}");
        assert!(
            entry
                .process
                .as_deref()
                .is_some_and(|name| !name.is_empty())
        );
    }
    drop(tcp);
    let port = udp.local_addr().unwrap().port();
    drop(udp);
    let ports = client.ports().await.unwrap();
    assert!(
        !ports
            .iter()
            .any(|p| p.proto == Transport::Udp && p.port == port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let path = agent.path("deep/dir/file.bin");
    let path = path.to_str().unwrap();
    let data: Vec<u8> = (0..=255).cycle().take(300_000).collect();
    client.write_file(path, 0o640, &data).await.unwrap();
    assert_eq!(client.read_file(path).await.unwrap(), data);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o640);
    let error = client
        .read_file(agent.path("missing").to_str().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AgentError::Remote { message } if message.contains("No such file")),
        "{error:?}"
    );
}

/// A stream wrapper that records what the client reads, so the test can see stale
/// frames arrive on the wire.
struct Recorder {
    inner: UnixStream,
    seen: watch::Sender<Vec<u8>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let fresh = buf.filled()[before..].to_vec();
        if !fresh.is_empty() {
            self.seen.send_modify(|seen| seen.extend_from_slice(&fresh));
        }
        result
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn replies(bytes: &[u8]) -> Vec<Reply> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| decode_reply(line).ok())
        .collect()
}

/// The id of the exec that printed `marker`, once its `exit` has also arrived.
fn finished_exec_that_printed(bytes: &[u8], marker: &str) -> Option<RequestId> {
    let replies = replies(bytes);
    let id = replies.iter().find_map(|reply| match &reply.body {
        ReplyBody::Output { data, .. } if text(data).contains(marker) => Some(reply.id),
        _ => None,
    })?;
    replies
        .iter()
        .any(|reply| reply.id == id && matches!(reply.body, ReplyBody::Exit { .. }))
        .then_some(id)
}

/// Client 1 starts an exec and disconnects while it runs. The agent keeps running and
/// reconnects; the exec's later output and exit reach client 2's connection (as QEMU
/// would deliver them), while client 2 runs its own exec. Client 2 gets exactly its own
/// answers and drops the stale frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_is_not_confused_by_a_previous_clients_exec() {
    let mut agent = AgentProcess::start();
    let fifo_in = agent.path("in");
    let fifo_out = agent.path("out");
    for fifo in [&fifo_in, &fifo_out] {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let script = "echo started; cat \"$0\"; echo stale-tail; echo fresh > \"$1\"";
    let argv = [
        "sh",
        "-c",
        script,
        fifo_in.to_str().unwrap(),
        fifo_out.to_str().unwrap(),
    ];

    let client1 = agent.client().await;
    let (started_tx, started_rx) = oneshot::channel();
    let mut started_tx = Some(started_tx);
    let abandoned = {
        let client1 = client1.clone();
        let request = command(&argv);
        tokio::spawn(async move {
            client1
                .exec(request, move |_, _| {
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                })
                .await
        })
    };
    started_rx.await.unwrap();
    abandoned.abort();
    let _ = abandoned.await;
    drop(client1);

    let (seen_tx, mut seen_rx) = watch::channel(Vec::new());
    let client2 = AgentClient::from_stream(Recorder {
        inner: agent.accept().await,
        seen: seen_tx,
    });
    let own_exec = {
        let client2 = client2.clone();
        let fifo_out = fifo_out.to_str().unwrap().to_owned();
        tokio::spawn(async move { run(&client2, command(&["cat", &fifo_out])).await })
    };
    // Let the abandoned exec go on: it prints to the new connection, then writes the FIFO
    // client 2's exec reads.
    let writer = tokio::task::spawn_blocking(move || std::fs::write(fifo_in, "stale-data\n"));
    let (code, output) = own_exec.await.unwrap();
    writer.await.unwrap().unwrap();
    assert_eq!(
        (code, text(&output.stdout), text(&output.stderr)),
        (0, "fresh\n", "")
    );

    let stale = tokio::time::timeout(
        WAIT,
        seen_rx.wait_for(|seen| finished_exec_that_printed(seen, "stale-data").is_some()),
    )
    .await
    .expect("the abandoned exec's frames reach the new connection")
    .unwrap()
    .clone();
    let stale_id = finished_exec_that_printed(&stale, "stale-data").unwrap();
    // Everything read before this answer has been routed (or dropped) by now.
    client2.hello(WAIT).await.unwrap();
    let stale_frames = replies(&seen_rx.borrow())
        .iter()
        .filter(|reply| reply.id == stale_id)
        .count() as u64;
    assert!(stale_frames >= 2, "output and exit of the abandoned exec");
    assert!(
        client2.discarded_frames() >= stale_frames,
        "{} < {stale_frames}",
        client2.discarded_frames()
    );
    assert!(agent.still_running());
}

/// A client that leaves half a request and a garbage line behind: the agent answers the
/// garbage, drops the half line with the connection, and serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_survives_garbage_and_disconnects() {
    let mut agent = AgentProcess::start();
    for _ in 0..3 {
        let mut raw = agent.accept().await;
        raw.write_all(b"garbage\n{\"id\":5,\"op\":\"hel")
            .await
            .unwrap();
        drop(raw);
    }
    let client = agent.client().await;
    client.hello(WAIT).await.unwrap();
    assert_eq!(
        run(&client, command(&["echo", "still here"]))
            .await
            .1
            .stdout,
        b"still here\n"
    );
    assert!(agent.still_running());
}

/// Not a correctness check: the round-trip cost of `exec true` over the Unix socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_exec_true_round_trip() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(run(&client, command(&["true"])).await.0, 0);
        samples.push(started.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "exec `true` round trip over the Unix socket: median {median:?}, min {:?}, max {:?} (n=50)",
        samples[0],
        samples[samples.len() - 1]
    );
    assert!(median < Duration::from_secs(2));
}

/// `exec` with `tty`: the command is on a terminal of the asked size (its session's
/// controlling terminal), a resize reaches it, typed bytes are its input (a Ctrl-C byte
/// interrupts its foreground job), and the exit code comes back. Also: 127/126 and a
/// missing directory, as a shell reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_gets_a_terminal_that_resizes_and_takes_ctrl_c() {
    use banger_proto::agent::{FEATURE_TTY, WindowSize};
    // Started as an init script's background job: the commands must still get Ctrl-C.
    let agent = AgentProcess::start_with(true);
    let client = agent.client().await;
    assert!(client.hello(WAIT).await.unwrap().has_feature(FEATURE_TTY));

    // The script waits for a line, so the resize lands before the second `stty size`;
    // `sleep` is then interrupted by the Ctrl-C byte and the script carries on.
    let script = "stty size; tty >/dev/null && echo on-tty pid-$$.; read line; stty size; \
                  trap 'echo got-int' INT; sleep 1000; echo after; exit 5";
    let request = ExecRequest {
        argv: ["sh", "-c", script].map(str::to_owned).to_vec(),
        tty: Some(WindowSize {
            rows: 30,
            cols: 100,
        }),
        ..ExecRequest::default()
    };
    let (sizes, resizes) = tokio::sync::watch::channel(WindowSize {
        rows: 30,
        cols: 100,
    });
    let (mut keys, stdin) = tokio::io::duplex(64);
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&output);
    let seen = Arc::clone(&output);
    let wait_for = move |needle: &'static str| {
        let seen = Arc::clone(&seen);
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
                if text.contains(needle) {
                    return;
                }
                assert!(Instant::now() < deadline, "no {needle:?} in {text:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let exec = client.exec_interactive(
        request,
        Some(stdin),
        Some(resizes),
        move |stream, data| {
            assert_eq!(stream, Stream::Stdout, "a terminal has one stream");
            sink.lock().unwrap().extend_from_slice(data);
        },
        std::future::pending(),
    );
    let script_pid = {
        let seen = Arc::clone(&output);
        move || {
            let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
            let pid = text.split("pid-").nth(1)?.split('.').next()?.to_owned();
            pid.parse::<u32>().ok()
        }
    };
    let drive = async {
        wait_for("on-tty").await;
        let pid = script_pid().expect("the script printed its pid");
        sizes
            .send(WindowSize {
                rows: 50,
                cols: 132,
            })
            .unwrap();
        // The resize has reached the script's terminal before the line that lets it go on.
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let terminal = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
            .open(format!("/proc/{pid}/fd/0"))
            .unwrap();
        until("the script's terminal is 50x132", || {
            banger_sys::terminal::window_size(terminal.as_fd())
                .is_ok_and(|size| (size.rows, size.cols) == (50, 132))
        })
        .await;
        keys.write_all(b"go\r").await.unwrap();
        wait_for("50 132").await;
        // `sleep` runs (so the INT trap is set) before the Ctrl-C byte is typed.
        until("the script runs sleep", || {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .is_ok_and(|children| !children.trim().is_empty())
        })
        .await;
        keys.write_all(b"\x03").await.unwrap();
    };
    let (code, ()) = tokio::time::timeout(WAIT, async { tokio::join!(exec, drive) })
        .await
        .expect("the tty exec finishes");
    let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    assert_eq!(code.unwrap(), 5, "{text}");
    assert!(text.contains("30 100"), "{text}");
    assert!(text.contains("got-int") && text.contains("after"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_cannot_run_exit_as_in_a_shell() {
    let agent = AgentProcess::start();
    let client = agent.client().await;
    let (code, output) = run(&client, command(&["no-such-command-here"])).await;
    assert_eq!(code, 127);
    assert_eq!(
        text(&output.stderr),
        "banger: no-such-command-here: command not found\n"
    );
    let (code, output) = run(&client, command(&["/"])).await;
    assert_eq!(code, 126);
    assert_eq!(text(&output.stderr), "banger: /: permission denied\n");
    let missing = ExecRequest {
        cwd: Some("/no/such/dir".into()),
        ..command(&["pwd"])
    };
    let error = client.exec(missing, |_, _| {}).await.unwrap_err();
    assert!(
        matches!(&error, AgentError::Remote { message }
            if message == "the working directory /no/such/dir does not exist in the guest"),
        "{error:?}"
    );
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
