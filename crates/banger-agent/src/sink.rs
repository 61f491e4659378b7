//! sink: the one writer of a channel. Every thread that answers (request handlers, exec
//! output pumps) sends whole frames through a `FrameSink`, whose mutex keeps frames from
//! interleaving. The connection behind it can change: a serial port keeps one descriptor
//! (the kernel blocks writes while no host is connected, so frames wait and reach the
//! next host), the Unix-socket channel reconnects and waits the same way, and a vsock
//! connection's sink drops frames once its connection is gone.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use banger_proto::agent::{FrameError, Reply, ReplyBody, encode_frame};

use crate::log::agent_log;

/// What `send` does while no connection is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDetached {
    /// Wait for the next connection (the frames go to the next host client).
    Wait,
    /// Drop the frame: its connection is gone for good.
    Drop,
}

pub struct FrameSink {
    state: Mutex<SinkState>,
    attached: Condvar,
    while_detached: WhileDetached,
}

struct SinkState {
    writer: Option<Box<dyn Write + Send>>,
    /// Counts attachments, so a stale `detach` cannot drop a newer connection.
    generation: u64,
}

/// Identifies one attached connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment(u64);

impl std::fmt::Debug for FrameSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSink")
            .field("while_detached", &self.while_detached)
            .finish_non_exhaustive()
    }
}

impl FrameSink {
    pub fn new(while_detached: WhileDetached) -> FrameSink {
        FrameSink {
            state: Mutex::new(SinkState {
                writer: None,
                generation: 0,
            }),
            attached: Condvar::new(),
            while_detached,
        }
    }

    /// Sends the following frames to `writer`.
    pub fn attach(&self, writer: Box<dyn Write + Send>) -> Attachment {
        let mut state = self.lock();
        state.generation += 1;
        state.writer = Some(writer);
        self.attached.notify_all();
        Attachment(state.generation)
    }

    /// Stops writing to the connection `attach` returned `attachment` for, if it is still
    /// the current one.
    pub fn detach(&self, attachment: Attachment) {
        let mut state = self.lock();
        if state.generation == attachment.0 {
            state.writer = None;
        }
    }

    /// Writes one frame, whole. A frame too large to send becomes an `error` for the same
    /// request. A write error detaches the connection (its reader notices too).
    pub fn send(&self, reply: &Reply) {
        let line = match encode_frame(reply) {
            Ok(line) => line,
            Err(error) => {
                let fallback = Reply {
                    id: reply.id,
                    body: ReplyBody::Error {
                        message: describe(&error),
                    },
                };
                match encode_frame(&fallback) {
                    Ok(line) => line,
                    Err(error) => {
                        agent_log!("cannot encode a reply for request {}: {error}", reply.id);
                        return;
                    }
                }
            }
        };
        let mut state = self.lock();
        loop {
            if state.writer.is_some() {
                break;
            }
            if self.while_detached == WhileDetached::Drop {
                return;
            }
            state = self
                .attached
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(writer) = state.writer.as_mut()
            && let Err(error) = writer.write_all(&line).and_then(|()| writer.flush())
        {
            agent_log!("writing to the host failed: {error}");
            state.writer = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        // Writers cannot leave the state half-updated; a panic elsewhere must not wedge
        // every other request, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn describe(error: &FrameError) -> String {
    match error {
        FrameError::TooLarge { size, max } => {
            format!("the reply ({size} bytes) exceeds the frame limit of {max} bytes")
        }
        other => format!("cannot encode the reply: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};

    use banger_proto::agent::{MAX_FRAME_BYTES, RequestId, decode_reply};

    use super::*;

    /// A writer that hands every write to a channel, or fails.
    struct Probe {
        written: mpsc::Sender<Vec<u8>>,
        fail: bool,
    }

    impl Write for Probe {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.fail {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            self.written.send(bytes.to_vec()).unwrap();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn probe(fail: bool) -> (Box<dyn Write + Send>, mpsc::Receiver<Vec<u8>>) {
        let (written, received) = mpsc::channel();
        (Box::new(Probe { written, fail }), received)
    }

    fn exit(id: u64) -> Reply {
        Reply {
            id: RequestId(id),
            body: ReplyBody::Exit { code: 0 },
        }
    }

    #[test]
    fn a_waiting_sink_delivers_to_the_next_connection() {
        let sink = Arc::new(FrameSink::new(WhileDetached::Wait));
        let sender = {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || sink.send(&exit(1)))
        };
        let (writer, written) = probe(false);
        sink.attach(writer);
        sender.join().unwrap();
        let line = written.recv().unwrap();
        assert_eq!(decode_reply(&line[..line.len() - 1]).unwrap(), exit(1));
    }

    #[test]
    fn a_dropping_sink_discards_while_detached_and_after_a_failed_write() {
        let sink = FrameSink::new(WhileDetached::Drop);
        sink.send(&exit(1));
        let (writer, _) = probe(true);
        sink.attach(writer);
        sink.send(&exit(2)); // fails and detaches
        sink.send(&exit(3)); // dropped, does not block
        let (writer, written) = probe(false);
        sink.attach(writer);
        sink.send(&exit(4));
        let line = written.recv().unwrap();
        assert_eq!(decode_reply(&line[..line.len() - 1]).unwrap(), exit(4));
        assert!(written.try_recv().is_err());
    }

    #[test]
    fn a_stale_detach_keeps_the_newer_connection() {
        let sink = FrameSink::new(WhileDetached::Drop);
        let (old, _) = probe(false);
        let old = sink.attach(old);
        let (new, written) = probe(false);
        sink.attach(new);
        sink.detach(old);
        sink.send(&exit(5));
        assert!(written.try_recv().is_ok());
    }

    #[test]
    fn an_oversized_reply_becomes_an_error_for_the_same_request() {
        let sink = FrameSink::new(WhileDetached::Drop);
        let (writer, written) = probe(false);
        sink.attach(writer);
        sink.send(&Reply {
            id: RequestId(9),
            body: ReplyBody::Error {
                message: "x".repeat(MAX_FRAME_BYTES),
            },
        });
        let line = written.recv().unwrap();
        let reply = decode_reply(&line[..line.len() - 1]).unwrap();
        assert_eq!(reply.id, RequestId(9));
        assert!(
            matches!(&reply.body, ReplyBody::Error { message } if message.contains("exceeds the frame limit")),
            "{reply:?}"
        );
    }
}
