//! session: reading requests off one channel and dispatching them. Quick requests
//! (`hello`, stdin, signals) are answered on the reader thread; anything that can block
//! (exec, files, the /proc scan of `ports`) gets its own thread, so one slow request
//! never holds up the others. A line that is not a valid request is answered with an
//! `error` (under id 0 when its id is unreadable) and the agent carries on.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use banger_proto::agent::{
    FrameError, LineEvent, LineSplitter, MAX_FRAME_BYTES, Reply, ReplyBody, Request, RequestId,
    RequestOp, decode_request,
};

use crate::exec::{ExecRegistry, spawn_thread};
use crate::sink::FrameSink;
use crate::{files, identity, ports, sysinfo, transfer};

const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What every channel of one agent process shares.
#[derive(Debug)]
pub struct Agent {
    execs: Arc<ExecRegistry>,
    proc_root: PathBuf,
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            execs: Arc::new(ExecRegistry::default()),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Serves requests from `reader` until end of file (returns the bytes read, so a caller
/// polling an idle port can tell activity from silence) or a read error. Replies go to
/// `sink`. A partial line at the end is dropped: the peer that sent it has left.
pub fn serve_stream(
    reader: &mut impl Read,
    sink: &Arc<FrameSink>,
    agent: &Arc<Agent>,
) -> io::Result<u64> {
    let mut splitter = LineSplitter::new(MAX_FRAME_BYTES);
    let mut buffer = vec![0; READ_CHUNK_BYTES];
    let mut total = 0;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        total += count as u64;
        splitter.push(&buffer[..count]);
        while let Some(event) = splitter.next_event() {
            handle(event, sink, agent);
        }
    }
}

fn handle(event: LineEvent, sink: &Arc<FrameSink>, agent: &Arc<Agent>) {
    let line = match event {
        // Clients send an empty line first to end any partial line left before them.
        LineEvent::Line(line) if line.trim_ascii().is_empty() => return,
        LineEvent::Line(line) => line,
        LineEvent::Oversized => {
            let message = format!("frame exceeds the limit of {MAX_FRAME_BYTES} bytes");
            return reply(sink, RequestId::UNSOLICITED, ReplyBody::Error { message });
        }
    };
    match decode_request(&line) {
        Ok(request) => dispatch(request, sink, agent),
        Err(FrameError::Malformed { id, source }) => {
            let message = format!("malformed frame: {source}");
            reply(
                sink,
                id.unwrap_or(RequestId::UNSOLICITED),
                ReplyBody::Error { message },
            );
        }
        Err(other) => {
            let message = other.to_string();
            reply(sink, RequestId::UNSOLICITED, ReplyBody::Error { message });
        }
    }
}

fn dispatch(request: Request, sink: &Arc<FrameSink>, agent: &Arc<Agent>) {
    let id = request.id;
    match request.op {
        // The host's protocol number is not checked here: the host compares ours.
        RequestOp::Hello { .. } => reply(sink, id, ReplyBody::HelloOk(sysinfo::hello())),
        RequestOp::Exec(exec) => agent.execs.start(id, exec, Arc::clone(sink)),
        RequestOp::Stdin { target, data } => agent.execs.stdin(target, data),
        RequestOp::StdinEof { target } => agent.execs.stdin_end(target),
        RequestOp::Signal { target, signal } => agent.execs.signal(target, signal),
        RequestOp::Resize { target, size } => agent.execs.resize(target, size),
        RequestOp::Ports => {
            let proc_root = agent.proc_root.clone();
            answer_on_thread("ports", id, sink, move || ReplyBody::PortsOk {
                ports: ports::listening_ports(&proc_root),
            });
        }
        RequestOp::WriteFile { path, mode, data } => {
            answer_on_thread("write-file", id, sink, move || {
                match files::write_file(&path, mode, &data) {
                    Ok(()) => ReplyBody::FileOk { data: None },
                    Err(message) => ReplyBody::Error { message },
                }
            });
        }
        RequestOp::ReceiveTar {
            dir,
            rename,
            create,
        } => agent
            .execs
            .start_receiver(id, Arc::clone(sink), move |stream| {
                transfer::receive_tar(&dir, rename.as_deref(), create, stream)
            }),
        RequestOp::SendTar { path, contents } => {
            let thread_sink = Arc::clone(sink);
            answer_on_thread("send-tar", id, sink, move || {
                transfer::send_tar(id, &path, contents, &thread_sink)
            });
        }
        RequestOp::Stat { path } => {
            answer_on_thread("stat", id, sink, move || transfer::stat(&path))
        }
        RequestOp::Identity(request) => {
            let execs = Arc::clone(&agent.execs);
            answer_on_thread("identity", id, sink, move || {
                identity::apply(&request, &execs, std::path::Path::new("/"))
            });
        }
        RequestOp::ReadFile { path } => {
            answer_on_thread("read-file", id, sink, move || {
                match files::read_file(&path) {
                    Ok(data) => ReplyBody::FileOk { data: Some(data) },
                    Err(message) => ReplyBody::Error { message },
                }
            });
        }
    }
}

fn answer_on_thread(
    what: &str,
    id: RequestId,
    sink: &Arc<FrameSink>,
    answer: impl FnOnce() -> ReplyBody + Send + 'static,
) {
    let thread_sink = Arc::clone(sink);
    let started = spawn_thread(format!("{what}-{id}"), move || {
        reply(&thread_sink, id, answer());
    });
    if let Err(error) = started {
        let message = format!("cannot start a thread: {error}");
        reply(sink, id, ReplyBody::Error { message });
    }
}

fn reply(sink: &FrameSink, id: RequestId, body: ReplyBody) {
    sink.send(&Reply { id, body });
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use banger_proto::agent::decode_reply;

    use super::*;
    use crate::sink::WhileDetached;

    /// Collects what the agent writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Garbage, unknown ops and oversized lines each get an error; the valid request
    /// after them is still answered, and a partial line at the end is ignored.
    #[test]
    fn bad_input_is_answered_with_errors_and_serving_continues() {
        let capture = Capture::default();
        let sink = Arc::new(FrameSink::new(WhileDetached::Drop));
        sink.attach(Box::new(capture.clone()));
        let mut input = b"\nnot json\n{\"id\":7,\"op\":\"reboot\"}\n".to_vec();
        input.extend(vec![b'x'; MAX_FRAME_BYTES + 1]);
        input.extend(b"\n{\"id\":8,\"op\":\"hello\",\"protocol\":1}\n{\"id\":9,\"op\":\"he");
        let agent = Arc::new(Agent::new());
        let read = serve_stream(&mut input.as_slice(), &sink, &agent).unwrap();
        assert_eq!(read, input.len() as u64);

        let output = capture.0.lock().unwrap().clone();
        let replies: Vec<Reply> = output
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| decode_reply(line).unwrap())
            .collect();
        let summary: Vec<(u64, &str)> = replies
            .iter()
            .map(|reply| match &reply.body {
                ReplyBody::Error { message } if message.starts_with("malformed") => {
                    (reply.id.0, "malformed")
                }
                ReplyBody::Error { message } if message.contains("exceeds") => {
                    (reply.id.0, "oversized")
                }
                ReplyBody::HelloOk(_) => (reply.id.0, "hello_ok"),
                _ => (reply.id.0, "other"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "malformed"),
                (7, "malformed"),
                (0, "oversized"),
                (8, "hello_ok")
            ]
        );
    }
}
