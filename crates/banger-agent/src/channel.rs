//! channel: finding and keeping the connection to the host. Three kinds, each served
//! forever by its own thread:
//! - the virtio-serial port (QEMU): one descriptor kept open; `read` returns end of file
//!   while no host client is connected, so an idle port is polled with a short backoff
//!   (poll(2) cannot wait for a host: it reports POLLHUP at once), and writes block in
//!   the kernel until a host is back;
//! - a Unix socket the agent connects to (host-side tests), reconnecting whenever the
//!   connection ends, with the same "wait for the next host" behaviour;
//! - an AF_VSOCK listener (Firecracker): each connection is its own session, and replies
//!   for a connection that has gone are dropped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use banger_sys::vsock::{vsock_accept, vsock_listen};

use crate::args::ChannelSpec;
use crate::exec::spawn_thread;
use crate::log::agent_log;
use crate::session::{Agent, serve_stream};
use crate::sink::{FrameSink, WhileDetached};

/// Serves one channel; returns only if the channel cannot exist (never, today).
pub fn serve(spec: &ChannelSpec, agent: &Arc<Agent>) {
    match spec {
        ChannelSpec::SerialNamed(name) => serve_serial(
            || find_named_port(Path::new("/dev"), Path::new("/sys"), name),
            agent,
        ),
        ChannelSpec::SerialPath(path) => serve_serial(|| Some(path.clone()), agent),
        ChannelSpec::Unix(path) => serve_unix(path, agent),
        ChannelSpec::Vsock {
            port,
            when_device_exists,
        } => serve_vsock(*port, *when_device_exists, agent),
    }
}

/// The device of the virtio-serial port called `name`: udev's `virtio-ports/<name>` link
/// when there is one, else the `vportNpM` whose sysfs `name` matches (guests without
/// udev).
pub fn find_named_port(dev_root: &Path, sysfs_root: &Path, name: &str) -> Option<PathBuf> {
    let udev_link = dev_root.join("virtio-ports").join(name);
    if udev_link.exists() {
        return Some(udev_link);
    }
    let ports = fs::read_dir(sysfs_root.join("class/virtio-ports")).ok()?;
    ports.flatten().find_map(|port| {
        let port_name = fs::read_to_string(port.path().join("name")).ok()?;
        (port_name.trim_end() == name).then(|| dev_root.join(port.file_name()))
    })
}

fn serve_serial(locate: impl Fn() -> Option<PathBuf>, agent: &Arc<Agent>) {
    let sink = Arc::new(FrameSink::new(WhileDetached::Wait));
    // How often an idle port (no host connected) is read again; the host's first request
    // waits at most this long.
    let mut idle = Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
    let mut unavailable = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut last_problem = String::new();
    loop {
        let opened = locate()
            .ok_or_else(|| "the agent's virtio-serial port does not exist (yet)".to_owned())
            .and_then(|path| {
                let port = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
                let writer = port
                    .try_clone()
                    .map_err(|error| format!("cannot duplicate {}: {error}", path.display()))?;
                Ok((path, port, writer))
            });
        let (path, port, writer) = match opened {
            Ok(opened) => opened,
            Err(problem) => {
                if problem != last_problem {
                    agent_log!("{problem}");
                    last_problem = problem;
                }
                thread::sleep(unavailable.next());
                continue;
            }
        };
        last_problem.clear();
        unavailable.reset();
        agent_log!("serving {}", path.display());
        let attachment = sink.attach(Box::new(writer));
        loop {
            match serve_stream(&mut &port, &sink, agent) {
                // No host connected, or it just left: look again shortly.
                Ok(0) => thread::sleep(idle.next()),
                Ok(_) => idle.reset(),
                Err(error) => {
                    agent_log!("reading {} failed: {error}; reopening", path.display());
                    sink.detach(attachment);
                    thread::sleep(unavailable.next());
                    break;
                }
            }
        }
    }
}

fn serve_unix(path: &Path, agent: &Arc<Agent>) {
    let sink = Arc::new(FrameSink::new(WhileDetached::Wait));
    let mut retry = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
    loop {
        let connected = UnixStream::connect(path).and_then(|stream| {
            let writer = stream.try_clone()?;
            Ok((stream, writer))
        });
        let (stream, writer) = match connected {
            Ok(connected) => connected,
            Err(_) => {
                thread::sleep(retry.next());
                continue;
            }
        };
        retry.reset();
        let attachment = sink.attach(Box::new(writer));
        if let Err(error) = serve_stream(&mut &stream, &sink, agent) {
            agent_log!("reading {} failed: {error}", path.display());
        }
        sink.detach(attachment);
    }
}

fn serve_vsock(port: u32, when_device_exists: bool, agent: &Arc<Agent>) {
    let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut last_problem = String::new();
    loop {
        if when_device_exists && !Path::new("/dev/vsock").exists() {
            thread::sleep(retry.next());
            continue;
        }
        let listener = match vsock_listen(port) {
            Ok(listener) => listener,
            Err(error) => {
                let problem = format!("cannot listen on vsock port {port}: {error}");
                if problem != last_problem {
                    agent_log!("{problem}");
                    last_problem = problem;
                }
                thread::sleep(retry.next());
                continue;
            }
        };
        retry.reset();
        agent_log!("listening on vsock port {port}");
        let mut failures = 0;
        while failures < 10 {
            match vsock_accept(listener.as_fd()) {
                Ok((connection, peer)) => {
                    failures = 0;
                    let agent = Arc::clone(agent);
                    let session = spawn_thread(format!("vsock-{}", peer.port), move || {
                        if let Err(error) = serve_connection(File::from(connection), &agent) {
                            agent_log!("vsock connection from port {}: {error}", peer.port);
                        }
                    });
                    if let Err(error) = session {
                        agent_log!("cannot start a vsock session: {error}");
                    }
                }
                Err(error) => {
                    failures += 1;
                    agent_log!("accepting on vsock port {port} failed: {error}");
                    thread::sleep(retry.next());
                }
            }
        }
        // Accept keeps failing: start over with a fresh listener.
    }
}

/// One vsock connection: its own sink, dropped with it.
fn serve_connection(connection: File, agent: &Arc<Agent>) -> io::Result<()> {
    let sink = Arc::new(FrameSink::new(WhileDetached::Drop));
    let attachment = sink.attach(Box::new(connection.try_clone()?));
    let served = serve_stream(&mut &connection, &sink, agent);
    sink.detach(attachment);
    served.map(drop)
}

/// Doubling delays between `min` and `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_port_through_udev_or_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        let sys = root.path().join("sys");
        for (port, name) in [
            ("vport0p1", "org.qemu.guest_agent.0"),
            ("vport1p1", "banger.agent"),
        ] {
            fs::create_dir_all(sys.join("class/virtio-ports").join(port)).unwrap();
            fs::write(
                sys.join("class/virtio-ports").join(port).join("name"),
                format!("{name}\n"),
            )
            .unwrap();
        }
        assert_eq!(
            find_named_port(&dev, &sys, "banger.agent"),
            Some(dev.join("vport1p1"))
        );
        assert_eq!(find_named_port(&dev, &sys, "other"), None);
        assert_eq!(
            find_named_port(&dev, &root.path().join("nosys"), "banger.agent"),
            None
        );

        fs::create_dir_all(dev.join("virtio-ports")).unwrap();
        fs::write(dev.join("virtio-ports/banger.agent"), "").unwrap();
        assert_eq!(
            find_named_port(&dev, &sys, "banger.agent"),
            Some(dev.join("virtio-ports/banger.agent"))
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(5), ms(30));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next()).collect();
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(30), ms(30)]);
        backoff.reset();
        assert_eq!(backoff.next(), ms(5));
    }
}
