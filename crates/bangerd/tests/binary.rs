//! The `bangerd` binary itself: its help, and a full start/serve/SIGTERM cycle with the
//! directories taken from `BANGER_*` variables.

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
