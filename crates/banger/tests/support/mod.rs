//! A scripted stand-in for `bangerd` in tests: listens on a Unix socket in a temporary
//! directory, answers each request with the next scripted list of frames (checking the
//! method name), and records what it was asked. Each connection gets its own thread, as
//! the CLI may open a second one (`vm run --rm` deletes on a fresh connection).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use banger_api::{ApiError, Event, ResponseBody, ResponseFrame};

/// One scripted answer: the method expected and the frames sent back.
pub struct Reply {
    pub method: &'static str,
    pub frames: Vec<ResponseBody>,
    /// The `vm` parameter this reply answers; such replies are matched by VM, not by
    /// order, for commands that send their requests at once (`vm stop web db`).
    pub vm: Option<&'static str>,
}

impl Reply {
    /// The answer to `method` for the VM named `vm`, whenever it arrives.
    pub fn for_vm(method: &'static str, vm: &'static str, value: serde_json::Value) -> Reply {
        Reply {
            vm: Some(vm),
            ..Reply::ok(method, value)
        }
    }

    pub fn ok(method: &'static str, value: serde_json::Value) -> Reply {
        Reply {
            method,
            frames: vec![ResponseBody::Result { value }],
            vm: None,
        }
    }

    pub fn error(method: &'static str, error: ApiError) -> Reply {
        Reply {
            method,
            frames: vec![ResponseBody::Error { error }],
            vm: None,
        }
    }

    /// Events, then no final frame: the call never ends (until the client leaves).
    pub fn hang(method: &'static str, events: Vec<Event>) -> Reply {
        Reply {
            method,
            frames: events
                .into_iter()
                .map(|event| ResponseBody::Event { event })
                .collect(),
            vm: None,
        }
    }

    /// Events first, then the result.
    pub fn events_then(
        method: &'static str,
        events: Vec<Event>,
        value: serde_json::Value,
    ) -> Reply {
        let mut frames: Vec<ResponseBody> = events
            .into_iter()
            .map(|event| ResponseBody::Event { event })
            .collect();
        frames.push(ResponseBody::Result { value });
        Reply {
            method,
            frames,
            vm: None,
        }
    }
}

/// A request as the fake daemon received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub params: serde_json::Value,
}

pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    done: Arc<AtomicBool>,
    received: Arc<(Mutex<Vec<Received>>, Condvar)>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    pub fn start(script: Vec<Reply>) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bangerd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let acceptor = {
            let (done, received, script) = (done.clone(), received.clone(), script.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { return };
                    let (received, script) = (received.clone(), script.clone());
                    std::thread::spawn(move || serve(stream, &received, &script));
                }
            })
        };
        FakeDaemon {
            _dir: dir,
            socket,
            done,
            received,
            script,
            acceptor: Some(acceptor),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits until a request for `method` has arrived; false after `timeout`.
    pub fn wait_for(&self, method: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, arrived) = &*self.received;
        let mut received = lock.lock().unwrap();
        loop {
            if received.iter().any(|r| r.method == method) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            received = arrived.wait_timeout(received, deadline - now).unwrap().0;
        }
    }

    /// Stops accepting and returns what was asked. Fails if scripted replies were left
    /// unused: the CLI did not make a call the test expected.
    pub fn finish(mut self) -> Vec<Received> {
        self.done.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees `done`.
        let _ = UnixStream::connect(&self.socket);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        let left: Vec<&str> = self
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.method)
            .collect();
        assert!(left.is_empty(), "the CLI never called: {left:?}");
        self.received.0.lock().unwrap().clone()
    }
}

/// The next scripted reply: in order, except that replies for a named VM are found by
/// method and VM wherever they are in the queue.
fn next_reply(script: &mut VecDeque<Reply>, request: &banger_api::RequestFrame) -> Option<Reply> {
    let vm = request.params.get("vm").and_then(|v| v.as_str());
    if script.front().is_some_and(|r| r.vm.is_some()) {
        let at = script
            .iter()
            .position(|r| r.vm.is_some() && r.method == request.method && r.vm == vm);
        if let Some(at) = at {
            return script.remove(at);
        }
    }
    script.pop_front()
}

fn serve(
    stream: UnixStream,
    received: &(Mutex<Vec<Received>>, Condvar),
    script: &Mutex<VecDeque<Reply>>,
) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let request: banger_api::RequestFrame = serde_json::from_str(&line).unwrap();
        received.0.lock().unwrap().push(Received {
            method: request.method.clone(),
            params: request.params.clone(),
        });
        received.1.notify_all();
        let reply = next_reply(&mut script.lock().unwrap(), &request);
        let frames = match reply {
            Some(reply) if reply.method == request.method => reply.frames,
            Some(reply) => vec![ResponseBody::Error {
                error: ApiError::new(
                    banger_api::ErrorCode::UnknownMethod,
                    format!(
                        "fake daemon expected {}, got {}",
                        reply.method, request.method
                    ),
                ),
            }],
            None => vec![ResponseBody::Error {
                error: ApiError::new(
                    banger_api::ErrorCode::UnknownMethod,
                    format!("fake daemon has no reply for {}", request.method),
                ),
            }],
        };
        for body in frames {
            let frame = ResponseFrame {
                id: request.id,
                body,
            };
            let mut text = serde_json::to_string(&frame).unwrap();
            text.push('\n');
            if writer.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// A `VmInfo` as JSON, for replies.
pub fn vm_json(name: &str, state: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "0f3c2a9e4b7d",
        "name": name,
        "state": state,
        "image": "debian-bookworm",
        "kernel": "debian-6.1-cloud",
        "vcpus": 1,
        "memory_mib": 512,
        "disk_mib": 4096,
        "nat": false,
        "driver": "qemu",
        "address": "10.77.0.2",
        "created_at": "2026-03-01T11:55:00Z"
    })
}
