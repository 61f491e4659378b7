//! The `bangerd` binary itself: its help, a full start/serve/SIGTERM cycle with the
//! directories taken from `BANGER_*` variables, and one daemon per state directory (a
//! second one refuses, naming the first; one started while the first drains waits, then
//! serves on a socket the first does not take with it).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use banger_api::Client;
use banger_api::methods::{self as m, Empty};
use banger_exec::Cmd;
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn help_describes_the_daemon() {
    let out = banger_exec::run(&Cmd::new(env!("CARGO_BIN_EXE_bangerd")).arg("--help"))
        .await
        .unwrap();
    let text = out.stdout_text();
    for needle in [
        "--socket",
        "--log-format",
        "--log-level",
        "SIGTERM",
        "Examples",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn bad_log_level_is_a_usage_error() {
    let err = banger_exec::run(
        &Cmd::new(env!("CARGO_BIN_EXE_bangerd")).args(["--log-level", "bangerd=[nope"]),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--log-level"), "{err}");
}

/// Starts the real binary, waits for its "listening" log line, pings it, sends SIGTERM and
/// checks that it exits 0 and removes its socket.
#[tokio::test]
async fn serves_until_sigterm_then_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let var = |name: &str| root.path().join(name);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bangerd"))
        .args(["--log-format", "json"])
        .env_clear()
        .env("BANGER_STATE_DIR", var("state"))
        .env("BANGER_CACHE_DIR", var("cache"))
        .env("BANGER_CONFIG_DIR", var("config"))
        .env("BANGER_RUNTIME_DIR", var("run"))
        // Not a helper the user may have running at the default socket.
        .env("BANGER_HELPER_SOCKET", var("no-helper.sock"))
        .env("PATH", banger_exec::CLEAN_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("bangerd listening") {
                let record: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON log line: {line}: {e}"));
                assert_eq!(record["level"], "INFO", "{line}");
                return;
            }
        }
        panic!("bangerd exited before listening");
    })
    .await
    .expect("bangerd starts listening");
    let socket = var("run").join("bangerd.sock");
    for dir in ["state", "cache", "config", "run"] {
        assert_private(&var(dir));
    }
    let mut client = Client::connect(&socket).await.unwrap();
    client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("bangerd exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed on shutdown");
}

fn assert_private(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(dir).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
}

/// A `bangerd` child on the directories under `root`, its stderr read line by line.
struct Daemon {
    child: tokio::process::Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
}

impl Daemon {
    fn spawn(root: &Path) -> Daemon {
        let var = |name: &str| root.join(name);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bangerd"))
            .env_clear()
            .env("BANGER_STATE_DIR", var("state"))
            .env("BANGER_CACHE_DIR", var("cache"))
            .env("BANGER_CONFIG_DIR", var("config"))
            .env("BANGER_RUNTIME_DIR", var("run"))
            .env("BANGER_HELPER_SOCKET", var("no-helper.sock"))
            .env("NO_COLOR", "1")
            .env("PATH", banger_exec::CLEAN_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Daemon { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Reads log lines until one contains `needle`; returns it.
    async fn wait_for_line(&mut self, needle: &str) -> String {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("bangerd exited before logging {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("bangerd did not log {needle:?} within {WAIT:?}"))
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("bangerd exits")
            .unwrap()
    }
}

/// Two daemons on one state directory: the second exits at once, naming the first's pid,
/// and the first keeps serving.
#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_refuses_naming_the_first() {
    let root = tempfile::tempdir().unwrap();
    let mut first = Daemon::spawn(root.path());
    first.wait_for_line("bangerd listening").await;
    // Another socket path, so only the state directory is shared.
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_bangerd"))
        .arg("--socket")
        .arg(root.path().join("other.sock"))
        .env_clear()
        .env("BANGER_STATE_DIR", root.path().join("state"))
        .env("BANGER_CACHE_DIR", root.path().join("cache"))
        .env("BANGER_CONFIG_DIR", root.path().join("config"))
        .env("BANGER_RUNTIME_DIR", root.path().join("run"))
        .env("BANGER_HELPER_SOCKET", root.path().join("no-helper.sock"))
        .env("NO_COLOR", "1")
        .env("PATH", banger_exec::CLEAN_PATH)
        .stdin(Stdio::null())
        .output();
    let second = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "another bangerd (pid {}) is already using",
            first.pid()
        )),
        "{stderr}"
    );
    assert!(!root.path().join("other.sock").exists());
    let mut client = Client::connect(&root.path().join("run/bangerd.sock"))
        .await
        .unwrap();
    client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(first.wait().await.success());
}

/// The restart the issue reproduced (`kill PID; sleep 2; bangerd &`): the old daemon
/// drains a request in flight for its grace period while the new one starts. The new
/// one waits for it, then serves; the old one's exit does not take the new socket away.
#[tokio::test]
async fn a_daemon_restarted_while_the_old_one_drains_keeps_its_socket_and_answers() {
    let root = tempfile::tempdir().unwrap();
    // A download that never finishes keeps an `image pull` in flight: a catalog image
    // whose bundle URL is a local port that accepts and never answers.
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/never.ext4", stall.local_addr().unwrap());
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    let catalog = serde_json::json!({"images": [{
        "name": "stalled",
        "description": "a download that never ends",
        "recipe": {"kind": "bundle", "url": url, "sha256": "0".repeat(64), "init": "busybox"},
        "kernel": "debian-6.1-cloud",
    }]});
    std::fs::write(root.path().join("config/catalog.json"), catalog.to_string()).unwrap();
    let socket = root.path().join("run/bangerd.sock");

    let mut old = Daemon::spawn(root.path());
    old.wait_for_line("bangerd listening").await;
    let pull_socket = socket.clone();
    // On a thread of its own: the client's futures are not `Send`.
    let pull = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut client = Client::connect(&pull_socket).await.unwrap();
            client
                .call::<m::ImagePull>(
                    &m::ImagePullParams {
                        name: "stalled".into(),
                        force: false,
                    },
                    |_| {},
                )
                .await
                .map(drop)
        })
    });
    // The download has started once curl connects.
    let (_held, _) = tokio::task::spawn_blocking(move || stall.accept())
        .await
        .unwrap()
        .unwrap();

    old.signal(nix::sys::signal::Signal::SIGTERM);
    old.wait_for_line("no longer accepting connections").await;
    let mut new = Daemon::spawn(root.path());
    let waiting = new.wait_for_line("waiting for the previous bangerd").await;
    assert!(waiting.contains(&old.pid().to_string()), "{waiting}");

    assert!(old.wait().await.success(), "the old daemon exits cleanly");
    new.wait_for_line("bangerd listening").await;
    assert!(socket.exists(), "the new daemon's socket is there");
    let mut client = Client::connect(&socket).await.unwrap();
    client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    let lock = std::fs::read_to_string(root.path().join("state/bangerd.lock")).unwrap();
    assert_eq!(lock, format!("{} serving\n", new.pid()));
    // The request the old daemon was draining was cut off, not answered by the new one.
    assert!(pull.join().unwrap().is_err());
    new.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(new.wait().await.success());
    assert!(!socket.exists(), "the new daemon removes its own socket");
}
