//! exec: running the host's commands. Each exec is registered under its request id before
//! its thread starts, so `stdin` and `signal` frames that arrive right behind the `exec`
//! are never lost; the command runs without a shell in its own process group (a signal
//! reaches everything it started), its stdout and stderr are pumped to the host as
//! `output` frames, and `exit` is sent once both pipes are at end of file. Before the
//! spawn the request is checked as a shell would: a missing working directory or user is
//! an `error` naming it, and a command that cannot be found ends with exit 127, one that
//! cannot be executed with 126 (the reason on stderr). With `tty`, `tty.rs` runs it.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;

use banger_proto::agent::{ExecRequest, Reply, ReplyBody, RequestId, Signal, Stream, WindowSize};
use nix::errno::Errno;
use nix::sys::signal::{self as nix_signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::log::agent_log;
use crate::sink::FrameSink;
use crate::users::{Account, find_account};

/// The command search path when the host sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OUTPUT_CHUNK_BYTES: usize = 32 * 1024;

/// The execs that are running (or about to), by request id.
#[derive(Debug, Default)]
pub struct ExecRegistry {
    entries: Mutex<HashMap<RequestId, ExecEntry>>,
}

#[derive(Debug)]
struct ExecEntry {
    /// The process group, once the command has started.
    process_group: Option<Pid>,
    /// A signal that arrived before the command started; sent as soon as it has.
    early_signal: Option<Signal>,
    stdin: Option<mpsc::Sender<StdinChunk>>,
    /// The pty master of an exec with `tty`, for `resize`.
    terminal: Option<Arc<OwnedFd>>,
}

#[derive(Debug)]
pub(crate) enum StdinChunk {
    Data(Vec<u8>),
    End,
}

impl ExecRegistry {
    /// Registers the exec and starts its thread; errors are reported to the host.
    pub fn start(self: &Arc<Self>, id: RequestId, request: ExecRequest, sink: Arc<FrameSink>) {
        let (stdin_sender, stdin_receiver) = if request.stdin {
            let (sender, receiver) = mpsc::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        {
            let mut entries = self.entries();
            if entries.contains_key(&id) {
                drop(entries);
                send_error(&sink, id, format!("request id {id} is already running"));
                return;
            }
            entries.insert(
                id,
                ExecEntry {
                    process_group: None,
                    early_signal: None,
                    stdin: stdin_sender,
                    terminal: None,
                },
            );
        }
        let registry = Arc::clone(self);
        let thread_sink = Arc::clone(&sink);
        let started = spawn_thread(format!("exec-{id}"), move || {
            registry.run(id, &request, stdin_receiver, &thread_sink);
        });
        if let Err(error) = started {
            self.entries().remove(&id);
            send_error(&sink, id, format!("cannot start a thread: {error}"));
        }
    }

    /// Registers request `id` as a consumer of `stdin` frames without a process (a tar
    /// receive): on its own thread, `work` reads the stream (each chunk acknowledged as
    /// it is consumed, so the host's window moves) and its reply ends the request. After
    /// a successful `work` the rest of the stream is read to its end first, so the
    /// host's last chunks are acknowledged before the reply.
    pub fn start_receiver(
        self: &Arc<Self>,
        id: RequestId,
        sink: Arc<FrameSink>,
        work: impl FnOnce(&mut dyn Read) -> ReplyBody + Send + 'static,
    ) {
        let (sender, receiver) = mpsc::channel();
        {
            let mut entries = self.entries();
            if entries.contains_key(&id) {
                drop(entries);
                send_error(&sink, id, format!("request id {id} is already running"));
                return;
            }
            entries.insert(
                id,
                ExecEntry {
                    process_group: None,
                    early_signal: None,
                    stdin: Some(sender),
                    terminal: None,
                },
            );
        }
        let registry = Arc::clone(self);
        let thread_sink = Arc::clone(&sink);
        let started = spawn_thread(format!("receive-{id}"), move || {
            let mut reader = StdinReader {
                id,
                chunks: receiver,
                current: Vec::new(),
                offset: 0,
                ended: false,
                sink: Arc::clone(&thread_sink),
            };
            let mut body = work(&mut reader);
            if !matches!(body, ReplyBody::Error { .. })
                && let Err(error) = io::copy(&mut reader, &mut io::sink())
            {
                body = ReplyBody::Error {
                    message: format!("reading the rest of the stream failed: {error}"),
                };
            }
            registry.entries().remove(&id);
            thread_sink.send(&Reply { id, body });
        });
        if let Err(error) = started {
            self.entries().remove(&id);
            send_error(&sink, id, format!("cannot start a thread: {error}"));
        }
    }

    /// Queues stdin bytes for the target exec (ignored once it has ended).
    pub fn stdin(&self, target: RequestId, data: Vec<u8>) {
        self.send_stdin(target, StdinChunk::Data(data));
    }

    /// Closes the target exec's stdin once the queued bytes are written.
    pub fn stdin_end(&self, target: RequestId) {
        self.send_stdin(target, StdinChunk::End);
    }

    /// Signals the target exec's process group, now or as soon as it has started.
    pub fn signal(&self, target: RequestId, signal: Signal) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&target) else {
            // It ended already: the host's signal raced the exit, nothing to do.
            return;
        };
        match entry.process_group {
            Some(group) => signal_group(group, signal),
            None => entry.early_signal = Some(signal),
        }
    }

    /// Resizes the target exec's terminal (ignored for an exec without one, or ended).
    pub fn resize(&self, target: RequestId, size: WindowSize) {
        let terminal = self
            .entries()
            .get(&target)
            .and_then(|entry| entry.terminal.clone());
        if let Some(master) = terminal {
            let size = banger_sys::terminal::CellSize {
                rows: size.rows,
                cols: size.cols,
            };
            if let Err(error) = banger_sys::terminal::set_window_size(
                std::os::fd::AsFd::as_fd(master.as_ref()),
                size,
            ) {
                agent_log!("resizing the terminal of exec {target} failed: {error}");
            }
        }
    }

    /// Records the started command's process group (sending a signal that came early)
    /// and, for a tty, its pty master.
    pub(crate) fn started(&self, id: RequestId, group: Pid, terminal: Option<Arc<OwnedFd>>) {
        if let Some(entry) = self.entries().get_mut(&id) {
            entry.process_group = Some(group);
            entry.terminal = terminal;
            if let Some(signal) = entry.early_signal.take() {
                signal_group(group, signal);
            }
        }
    }

    /// Forgets a finished exec.
    pub(crate) fn finished(&self, id: RequestId) {
        self.entries().remove(&id);
    }

    /// Kills every exec that is running; returns how many there were. A guest restored
    /// from a snapshot holds the execs of the guest it was saved from, whose host side
    /// is gone.
    pub fn kill_all(&self) -> usize {
        let entries = self.entries();
        for entry in entries.values() {
            if let Some(group) = entry.process_group {
                signal_group(group, Signal::Kill);
            }
        }
        entries.len()
    }

    fn send_stdin(&self, target: RequestId, chunk: StdinChunk) {
        let entries = self.entries();
        match entries.get(&target).and_then(|entry| entry.stdin.as_ref()) {
            // A send error means the stdin writer already finished.
            Some(sender) => drop(sender.send(chunk)),
            None => agent_log!("stdin for request {target}, which has no open stdin"),
        }
    }

    fn run(
        &self,
        id: RequestId,
        request: &ExecRequest,
        stdin: Option<mpsc::Receiver<StdinChunk>>,
        sink: &Arc<FrameSink>,
    ) {
        let prepared = match prepare(request, Path::new("/etc/passwd")) {
            Ok(prepared) => prepared,
            Err(message) => {
                self.finished(id);
                send_error(sink, id, message);
                return;
            }
        };
        if let Some(size) = request.tty {
            crate::tty::run(self, id, request, &prepared, size, stdin, sink);
            return;
        }
        let mut command = command_for(request, &prepared);
        command.process_group(0).stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                self.finished(id);
                report_spawn_failure(sink, id, request, &error, Stream::Stderr);
                return;
            }
        };
        // std::process::Child::id is the pid, and the child leads its own group.
        let group = Pid::from_raw(child.id() as i32);
        self.started(id, group, None);
        if let Err(error) = self.pump_until_closed(id, &mut child, stdin, sink) {
            agent_log!("exec {id}: {error}; killing it");
            signal_group(group, Signal::Kill);
        }
        // Wait for the exit without reaping: until it is reaped the pid (and so the
        // process group id) cannot be reused, so a `signal` racing this cannot hit a
        // stranger.
        wait_for_exit_keeping_zombie(group);
        self.entries().remove(&id);
        let code = match child.wait() {
            Ok(status) => exit_code(status),
            Err(error) => {
                send_error(sink, id, format!("waiting for the command failed: {error}"));
                return;
            }
        };
        sink.send(&Reply {
            id,
            body: ReplyBody::Exit { code },
        });
    }

    /// Streams stdout (on this thread) and stderr (on another) until both close.
    fn pump_until_closed(
        &self,
        id: RequestId,
        child: &mut Child,
        stdin: Option<mpsc::Receiver<StdinChunk>>,
        sink: &Arc<FrameSink>,
    ) -> io::Result<()> {
        if let (Some(pipe), Some(chunks)) = (child.stdin.take(), stdin) {
            let sink = Arc::clone(sink);
            // Not joined: a grandchild holding the pipe open must not hold up `exit`.
            spawn_thread(format!("stdin-{id}"), move || {
                feed_stdin(id, pipe, &chunks, &sink);
            })?;
        }
        let stderr_pump = match child.stderr.take() {
            Some(pipe) => {
                let sink = Arc::clone(sink);
                Some(spawn_thread(format!("stderr-{id}"), move || {
                    pump(id, pipe, Stream::Stderr, &sink);
                })?)
            }
            None => None,
        };
        if let Some(pipe) = child.stdout.take() {
            pump(id, pipe, Stream::Stdout, sink);
        }
        if let Some(handle) = stderr_pump {
            let _ = handle.join();
        }
        Ok(())
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<RequestId, ExecEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an exec runs with once its request has been checked against the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Set when the request names a user (otherwise the agent's own, root).
    pub account: Option<Account>,
}

/// Checks the request as a shell would before it runs anything: the user exists, the
/// working directory is a directory. The errors name what is missing.
pub(crate) fn prepare(request: &ExecRequest, passwd: &Path) -> Result<Prepared, String> {
    if request.argv.is_empty() {
        return Err("the command line is empty".to_owned());
    }
    let account = match request.user.as_deref() {
        None => None,
        Some(user) => {
            // A guest without the file still runs numeric users.
            let text = match std::fs::read_to_string(passwd) {
                Ok(text) => text,
                Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
                Err(error) => return Err(format!("cannot read {}: {error}", passwd.display())),
            };
            Some(find_account(&text, user)?)
        }
    };
    let home = account.as_ref().map_or("/root", |account| &account.home);
    let cwd = match request.cwd.as_deref() {
        Some(cwd) => {
            let path = Path::new(cwd);
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => path.to_owned(),
                Ok(_) => return Err(format!("the working directory {cwd} is not a directory")),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(format!(
                        "the working directory {cwd} does not exist in the guest"
                    ));
                }
                Err(error) => return Err(format!("the working directory {cwd}: {error}")),
            }
        }
        None if Path::new(home).is_dir() => PathBuf::from(home),
        None => PathBuf::from("/"),
    };
    let mut env = environment(&request.env, account.as_ref());
    if request.tty.is_some() {
        env.entry("TERM".to_owned())
            .or_insert_with(|| "xterm".to_owned());
    }
    Ok(Prepared { env, cwd, account })
}

/// The command with its environment, working directory and user; stdin is a pipe only
/// when the host streams it, stdout a pipe (callers set stderr and the process group).
pub(crate) fn command_for(request: &ExecRequest, prepared: &Prepared) -> Command {
    let (program, args) = match request.argv.split_first() {
        Some((program, args)) => (program.as_str(), args),
        None => ("", &[][..]),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.cwd)
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped());
    if let Some(account) = &prepared.account {
        // std drops the supplementary groups (setgroups(0)) when it changes the uid.
        command.uid(account.uid).gid(account.gid);
    }
    banger_sys::terminal::default_signals_on_exec(&mut command);
    command
}

/// The agent's base environment (for `account`, or root) overlaid with the host's
/// variables.
pub fn environment(
    requested: &BTreeMap<String, String>,
    account: Option<&Account>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ]);
    if let Some(account) = account {
        env.insert("HOME".to_owned(), account.home.clone());
        env.insert("USER".to_owned(), account.name.clone());
        env.insert("LOGNAME".to_owned(), account.name.clone());
    }
    env.extend(
        requested
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env
}

/// The exit code and stderr line of a command that could not be started, as shells
/// report it: 127 when it cannot be found, 126 when it cannot be executed.
pub fn spawn_failure(program: &str, error: &io::Error) -> (i32, String) {
    const ENOEXEC: i32 = 8;
    const EISDIR: i32 = 21;
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::NotFound, _) if program.contains('/') => {
            (127, format!("{program}: no such file or directory"))
        }
        (io::ErrorKind::NotFound, _) => (127, format!("{program}: command not found")),
        (io::ErrorKind::PermissionDenied, _) => (126, format!("{program}: permission denied")),
        (_, Some(ENOEXEC)) => (126, format!("{program}: cannot execute: exec format error")),
        (_, Some(EISDIR)) => (126, format!("{program}: is a directory")),
        _ => (126, format!("{program}: cannot execute: {error}")),
    }
}

/// Ends an exec whose command did not start: its reason on `stream`, then the shell's
/// exit code.
pub(crate) fn report_spawn_failure(
    sink: &FrameSink,
    id: RequestId,
    request: &ExecRequest,
    error: &io::Error,
    stream: Stream,
) {
    let program = request.argv.first().map_or("", String::as_str);
    let (code, message) = spawn_failure(program, error);
    sink.send(&Reply {
        id,
        body: ReplyBody::Output {
            stream,
            data: format!("banger: {message}\n").into_bytes(),
        },
    });
    sink.send(&Reply {
        id,
        body: ReplyBody::Exit { code },
    });
}

/// The exit code, or 128 + the signal that killed the command (the shell convention).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 128,
    }
}

fn pump(id: RequestId, mut pipe: impl Read, stream: Stream, sink: &FrameSink) {
    let mut buffer = vec![0; OUTPUT_CHUNK_BYTES];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => sink.send(&Reply {
                id,
                body: ReplyBody::Output {
                    stream,
                    data: buffer[..count].to_vec(),
                },
            }),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                agent_log!("exec {id}: reading {stream:?} failed: {error}");
                return;
            }
        }
    }
}

/// Writes queued chunks to the command's stdin and acknowledges each (written or not:
/// once the command stops reading, the host must still not stall).
fn feed_stdin(
    id: RequestId,
    mut pipe: ChildStdin,
    chunks: &mpsc::Receiver<StdinChunk>,
    sink: &FrameSink,
) {
    let mut broken = false;
    while let Ok(StdinChunk::Data(data)) = chunks.recv() {
        if !broken {
            broken = pipe.write_all(&data).is_err();
        }
        sink.send(&Reply {
            id,
            body: ReplyBody::StdinAck {
                bytes: data.len() as u64,
            },
        });
    }
    // End of stdin (or the exec ended): dropping the pipe closes it.
}

/// The `stdin` frames of a receiver as a `Read`: a chunk is acknowledged once it has
/// been read through, and `stdin_eof` is the end of file.
struct StdinReader {
    id: RequestId,
    chunks: mpsc::Receiver<StdinChunk>,
    current: Vec<u8>,
    offset: usize,
    ended: bool,
    sink: Arc<FrameSink>,
}

impl Read for StdinReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset >= self.current.len() {
            if !self.current.is_empty() {
                self.sink.send(&Reply {
                    id: self.id,
                    body: ReplyBody::StdinAck {
                        bytes: self.current.len() as u64,
                    },
                });
                self.current.clear();
                self.offset = 0;
            }
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(StdinChunk::Data(data)) => self.current = data,
                Ok(StdinChunk::End) | Err(_) => self.ended = true,
            }
        }
        let count = buf.len().min(self.current.len() - self.offset);
        buf[..count].copy_from_slice(&self.current[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

pub(crate) fn signal_group(group: Pid, signal: Signal) {
    let signal = match signal {
        Signal::Hup => nix_signal::Signal::SIGHUP,
        Signal::Int => nix_signal::Signal::SIGINT,
        Signal::Quit => nix_signal::Signal::SIGQUIT,
        Signal::Kill => nix_signal::Signal::SIGKILL,
        Signal::Term => nix_signal::Signal::SIGTERM,
    };
    match killpg(group, signal) {
        // The group is already gone (every member exited).
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => agent_log!("signalling process group {group} failed: {error}"),
    }
}

pub(crate) fn wait_for_exit_keeping_zombie(pid: Pid) {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => {}
            // Success, or the child is not waitable (then `Child::wait` reports why).
            _ => return,
        }
    }
}

pub(crate) fn send_error(sink: &FrameSink, id: RequestId, message: String) {
    sink.send(&Reply {
        id,
        body: ReplyBody::Error { message },
    });
}

/// A named thread, so a thread-limit failure is an error instead of a panic.
pub fn spawn_thread(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_variables_override_the_base_environment() {
        type Variables = Vec<(&'static str, &'static str)>;
        let table: Vec<(Variables, Variables)> = vec![
            (vec![], vec![("HOME", "/root"), ("PATH", DEFAULT_PATH)]),
            (
                vec![("PATH", "/opt/bin"), ("LANG", "C.UTF-8")],
                vec![("HOME", "/root"), ("LANG", "C.UTF-8"), ("PATH", "/opt/bin")],
            ),
        ];
        for (requested, want) in table {
            let requested = requested
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let want: BTreeMap<String, String> = want
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(environment(&requested, None), want);
        }
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        // Raw wait statuses: exit code in the high byte, terminating signal in the low.
        let table = [(0, 0), (42 << 8, 42), (15, 143), (9, 137), (2, 130)];
        for (raw, want) in table {
            assert_eq!(
                exit_code(ExitStatus::from_raw(raw)),
                want,
                "raw status {raw:#x}"
            );
        }
    }

    #[test]
    fn spawn_failures_map_to_the_shell_exit_codes() {
        let table: &[(&str, io::Error, i32, &str)] = &[
            (
                "nope",
                io::Error::from_raw_os_error(2),
                127,
                "nope: command not found",
            ),
            (
                "/bin/nope",
                io::Error::from_raw_os_error(2),
                127,
                "/bin/nope: no such file or directory",
            ),
            (
                "./x",
                io::Error::from_raw_os_error(13),
                126,
                "./x: permission denied",
            ),
            (
                "./x",
                io::Error::from_raw_os_error(8),
                126,
                "./x: cannot execute: exec format error",
            ),
            (
                "/tmp",
                io::Error::from_raw_os_error(21),
                126,
                "/tmp: is a directory",
            ),
        ];
        for (program, error, code, message) in table {
            assert_eq!(
                spawn_failure(program, error),
                (*code, (*message).to_owned())
            );
        }
    }

    #[test]
    fn prepare_names_a_missing_directory_or_user() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "alice:x:1000:100::/nonexistent-home:/bin/sh\n").unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let request = |cwd: Option<&str>, user: Option<&str>| ExecRequest {
            argv: vec!["pwd".into()],
            cwd: cwd.map(str::to_owned),
            user: user.map(str::to_owned),
            ..ExecRequest::default()
        };
        let missing = request(Some("/nonexistent"), None);
        assert_eq!(
            prepare(&missing, &passwd).unwrap_err(),
            "the working directory /nonexistent does not exist in the guest"
        );
        let not_dir = request(file.to_str(), None);
        assert!(
            prepare(&not_dir, &passwd)
                .unwrap_err()
                .ends_with("is not a directory")
        );
        assert_eq!(
            prepare(&request(None, Some("bob")), &passwd).unwrap_err(),
            "no user \"bob\" in the guest's /etc/passwd"
        );
        assert_eq!(
            prepare(&ExecRequest::default(), &passwd).unwrap_err(),
            "the command line is empty"
        );
        // A user whose home is missing runs in /, with its name and home in the env.
        let alice = prepare(&request(None, Some("alice")), &passwd).unwrap();
        assert_eq!(alice.cwd, Path::new("/"));
        assert_eq!(alice.env["USER"], "alice");
        assert_eq!(alice.env["HOME"], "/nonexistent-home");
        assert_eq!(alice.account.map(|a| (a.uid, a.gid)), Some((1000, 100)));
        let in_tmp = prepare(&request(dir.path().to_str(), None), &passwd).unwrap();
        assert_eq!(in_tmp.cwd, dir.path());
        assert!(!in_tmp.env.contains_key("TERM"));
    }
}
