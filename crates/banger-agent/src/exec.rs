//! exec: running the host's commands. Each exec is registered under its request id before
//! its thread starts, so `stdin` and `signal` frames that arrive right behind the `exec`
//! are never lost; the command runs without a shell in its own process group (a signal
//! reaches everything it started), its stdout and stderr are pumped to the host as
//! `output` frames, and `exit` is sent once both pipes are at end of file.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;

use banger_proto::agent::{ExecRequest, Reply, ReplyBody, RequestId, Signal, Stream};
use nix::errno::Errno;
use nix::sys::signal::{self as nix_signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::log::agent_log;
use crate::sink::FrameSink;

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
}

#[derive(Debug)]
enum StdinChunk {
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
        let mut child = match command_for(request).spawn() {
            Ok(child) => child,
            Err(error) => {
                self.entries().remove(&id);
                let program = request.argv.first().map_or("", String::as_str);
                let message = if request.argv.is_empty() {
                    "the command line is empty".to_owned()
                } else {
                    format!("cannot run {program:?}: {error}")
                };
                send_error(sink, id, message);
                return;
            }
        };
        // std::process::Child::id is the pid, and the child leads its own group.
        let group = Pid::from_raw(child.id() as i32);
        if let Some(entry) = self.entries().get_mut(&id) {
            entry.process_group = Some(group);
            if let Some(signal) = entry.early_signal.take() {
                signal_group(group, signal);
            }
        }
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

/// The command with the agent's base environment, working directory and own process
/// group; stdin is a pipe only when the host streams it.
fn command_for(request: &ExecRequest) -> Command {
    let (program, args) = match request.argv.split_first() {
        Some((program, args)) => (program.as_str(), args),
        // Spawning "" fails with ENOENT; `run` reports the empty command line.
        None => ("", &[][..]),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(environment(&request.env))
        .current_dir(working_directory(request.cwd.as_deref()))
        .process_group(0)
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The agent's base environment overlaid with the host's variables.
pub fn environment(requested: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ]);
    env.extend(
        requested
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env
}

fn working_directory(requested: Option<&str>) -> &Path {
    match requested {
        Some(cwd) => Path::new(cwd),
        None if Path::new("/root").is_dir() => Path::new("/root"),
        None => Path::new("/"),
    }
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

fn signal_group(group: Pid, signal: Signal) {
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

fn wait_for_exit_keeping_zombie(pid: Pid) {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => {}
            // Success, or the child is not waitable (then `Child::wait` reports why).
            _ => return,
        }
    }
}

fn send_error(sink: &FrameSink, id: RequestId, message: String) {
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
            assert_eq!(environment(&requested), want);
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
    fn working_directory_defaults_to_root_home_or_slash() {
        assert_eq!(working_directory(Some("/tmp")), Path::new("/tmp"));
        let default = working_directory(None);
        assert!(default == Path::new("/root") || default == Path::new("/"));
    }
}
