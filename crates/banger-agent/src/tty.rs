//! tty: an exec on a pseudo-terminal (`vm exec -t`). The command leads a new session
//! with the pty's slave as its controlling terminal and stdin, stdout and stderr; the
//! agent holds the master. What the command writes comes back as `stdout` output (a
//! terminal has one stream), `stdin` frames are typed into the master (so a Ctrl-C byte
//! reaches the foreground job as SIGINT through the line discipline), `resize` sets the
//! window size (the job gets SIGWINCH), and `exit` follows the command's exit once the
//! output it left is drained.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use banger_proto::agent::{ExecRequest, Reply, ReplyBody, RequestId, Stream, WindowSize};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::{Winsize, openpty};
use nix::unistd::Pid;

use crate::exec::{
    ExecRegistry, Prepared, StdinChunk, command_for, exit_code, report_spawn_failure, send_error,
    spawn_thread, wait_for_exit_keeping_zombie,
};
use crate::log::agent_log;
use crate::sink::FrameSink;

const OUTPUT_CHUNK_BYTES: usize = 32 * 1024;
/// How long output still buffered in the pty may take to arrive after the command
/// exited (a background job that keeps the terminal open does not hold `exit` longer).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// What a host's end of stdin becomes on a terminal: the EOF character (Ctrl-D).
const END_OF_INPUT: &[u8] = b"\x04";

/// Runs `request` on a new pty of `size` and reports its output and exit.
pub(crate) fn run(
    registry: &ExecRegistry,
    id: RequestId,
    request: &ExecRequest,
    prepared: &Prepared,
    size: WindowSize,
    stdin: Option<mpsc::Receiver<StdinChunk>>,
    sink: &Arc<FrameSink>,
) {
    let terminal = match open_terminal(size) {
        Ok(terminal) => terminal,
        Err(error) => {
            registry.finished(id);
            send_error(sink, id, format!("cannot open a terminal: {error}"));
            return;
        }
    };
    let (master, slave) = terminal;
    let mut command = command_for(request, prepared);
    let spawned = (|| {
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        banger_sys::terminal::controlling_terminal_on_exec(&mut command);
        command.spawn()
    })();
    // The command's copies of the slave must close here, or the master never sees the
    // end of the output.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            registry.finished(id);
            report_spawn_failure(sink, id, request, &error, Stream::Stdout);
            return;
        }
    };
    // The child leads its own session, so its pid is its process group.
    let group = Pid::from_raw(child.id() as i32);
    let master = Arc::new(master);
    registry.started(id, group, Some(Arc::clone(&master)));

    let drained = match start_pumps(id, &master, stdin, sink) {
        Ok(drained) => drained,
        Err(error) => {
            agent_log!("exec {id}: {error}; killing it");
            crate::exec::signal_group(group, banger_proto::agent::Signal::Kill);
            None
        }
    };
    wait_for_exit_keeping_zombie(group);
    if let Some(drained) = drained {
        let _ = drained.recv_timeout(DRAIN_AFTER_EXIT);
    }
    registry.finished(id);
    match child.wait() {
        Ok(status) => sink.send(&Reply {
            id,
            body: ReplyBody::Exit {
                code: exit_code(status),
            },
        }),
        Err(error) => send_error(sink, id, format!("waiting for the command failed: {error}")),
    }
}

/// A pty pair of `size`, both ends close-on-exec (the command gets the slave through
/// its standard descriptors only).
fn open_terminal(size: WindowSize) -> io::Result<(OwnedFd, OwnedFd)> {
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&winsize), None).map_err(io::Error::from)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    }
    Ok((pty.master, pty.slave))
}

/// Starts the output pump (and the input pump when the host streams stdin); returns a
/// channel that closes when the output has reached its end.
fn start_pumps(
    id: RequestId,
    master: &Arc<OwnedFd>,
    stdin: Option<mpsc::Receiver<StdinChunk>>,
    sink: &Arc<FrameSink>,
) -> io::Result<Option<mpsc::Receiver<()>>> {
    if let Some(chunks) = stdin {
        let writer = File::from(master.try_clone()?);
        let sink = Arc::clone(sink);
        // Not joined: it ends with the host's end of stdin or the exec's entry.
        spawn_thread(format!("tty-in-{id}"), move || {
            type_input(id, writer, &chunks, &sink);
        })?;
    }
    let reader = File::from(master.try_clone()?);
    let (done, drained) = mpsc::channel::<()>();
    let sink = Arc::clone(sink);
    spawn_thread(format!("tty-out-{id}"), move || {
        pump_output(id, reader, &sink);
        drop(done);
    })?;
    Ok(Some(drained))
}

/// Reads the master until the last slave descriptor closes (EIO on Linux).
fn pump_output(id: RequestId, mut master: File, sink: &FrameSink) {
    let mut buffer = vec![0; OUTPUT_CHUNK_BYTES];
    loop {
        match master.read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => sink.send(&Reply {
                id,
                body: ReplyBody::Output {
                    stream: Stream::Stdout,
                    data: buffer[..count].to_vec(),
                },
            }),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // EIO: every slave descriptor is closed, the normal end of a terminal.
            Err(_) => return,
        }
    }
}

/// Types the host's stdin into the terminal, acknowledging every chunk; the end of it
/// is typed as Ctrl-D.
fn type_input(
    id: RequestId,
    mut master: File,
    chunks: &mpsc::Receiver<StdinChunk>,
    sink: &FrameSink,
) {
    let mut broken = false;
    loop {
        match chunks.recv() {
            Ok(StdinChunk::Data(data)) => {
                if !broken {
                    broken = master.write_all(&data).is_err();
                }
                sink.send(&Reply {
                    id,
                    body: ReplyBody::StdinAck {
                        bytes: data.len() as u64,
                    },
                });
            }
            Ok(StdinChunk::End) => {
                if !broken {
                    let _ = master.write_all(END_OF_INPUT);
                }
                return;
            }
            Err(_) => return,
        }
    }
}
