//! `banger mcp` end to end over its stdin/stdout, as an MCP client drives it: the
//! handshake, the tool list (schema snapshot), protocol errors after which the server
//! keeps serving, tool errors (daemon down), the run profile's ownership rule and a
//! `vm_run` against a scripted daemon (output capped, VM deleted).

#[allow(dead_code)]
mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use banger_api::{Event, OutputStream, StageState};
use serde_json::{Value, json};
use support::{FakeDaemon, Reply, vm_json};

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    next_id: i64,
    _home: tempfile::TempDir,
}

impl Mcp {
    fn start(socket: Option<&Path>, args: &[&str]) -> Mcp {
        let home = tempfile::tempdir().unwrap();
        let socket = socket
            .map(Path::to_path_buf)
            .unwrap_or_else(|| home.path().join("nothing-here.sock"));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("banger"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("BANGER_STATE_DIR", home.path().join("state"))
            .env("BANGER_CACHE_DIR", home.path().join("cache"))
            .env("BANGER_CONFIG_DIR", home.path().join("config"))
            .env("BANGER_RUNTIME_DIR", home.path().join("run"))
            .env("BANGER_SOCKET", &socket)
            .current_dir(home.path())
            .arg("mcp")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Mcp {
            child,
            stdin,
            lines,
            next_id: 100,
            _home: home,
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("an answer from banger mcp within 30 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends a request and returns its answer (notifications before it are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        loop {
            let message = self.recv();
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
    }

    fn handshake(&mut self) -> Value {
        let init = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "scripted-test", "version": "1"}}),
        );
        self.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        init
    }

    /// Closes stdin and waits for a clean exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "banger mcp exited with {status}");
    }
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn handshake_and_tool_list() {
    let mut mcp = Mcp::start(None, &[]);
    let init = mcp.handshake();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "banger");
    let list = mcp.request("tools/list", json!({}));
    insta::assert_json_snapshot!("tools_list_run_profile", list["result"]);
    mcp.finish();

    let mut mcp = Mcp::start(None, &["--profile", "read-only"]);
    mcp.handshake();
    let list = mcp.request("tools/list", json!({}));
    assert_eq!(
        tool_names(&list),
        ["vm_list", "workspace_export", "file_read"]
    );
    // A tool the profile does not offer is unknown to it.
    let refused = mcp.call("vm_run", json!({"argv": ["true"]}));
    assert_eq!(refused["error"]["code"], -32602);
    mcp.finish();
}

#[test]
fn protocol_errors_are_answered_and_the_server_keeps_serving() {
    let mut mcp = Mcp::start(None, &[]);
    mcp.handshake();
    let expect = |mcp: &mut Mcp, line: &str, code: i64| {
        mcp.send_line(line);
        let answer = mcp.recv();
        assert_eq!(answer["error"]["code"], code, "{line}: {answer}");
        let pong = mcp.request("ping", json!({}));
        assert_eq!(pong["result"], json!({}), "ping after {line}");
    };
    expect(&mut mcp, "{this is not json", -32700);
    expect(
        &mut mcp,
        r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#,
        -32601,
    );
    expect(
        &mut mcp,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"no_such_tool"}}"#,
        -32602,
    );
    expect(
        &mut mcp,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"vm_exec","arguments":{"vm":"x","argv":"not-a-list"}}}"#,
        -32602,
    );
    expect(
        &mut mcp,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"vm_run","arguments":{"argv":["true"],"surprise":1}}}"#,
        -32602,
    );
    // Oversized arguments: a file_write over its limit, and a message over the line cap.
    let content = "a".repeat(70 * 1024);
    let big = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "file_write", "arguments": {"vm": "x", "path": "/tmp/f", "content": content}}});
    expect(&mut mcp, &big.to_string(), -32602);
    let huge = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {
        "name": "vm_run", "arguments": {"argv": ["echo", "b".repeat(2 << 20)]}}});
    expect(&mut mcp, &huge.to_string(), -32600);
    mcp.finish();
}

#[test]
fn a_daemon_that_is_down_is_a_tool_error_with_a_hint() {
    let mut mcp = Mcp::start(None, &[]);
    mcp.handshake();
    let answer = mcp.call("vm_list", json!({}));
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("error: cannot reach the banger daemon"),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
    // Still serving.
    assert_eq!(mcp.request("ping", json!({}))["result"], json!({}));
    mcp.finish();
}

#[test]
fn run_profile_refuses_to_touch_a_vm_it_did_not_create() {
    let daemon = FakeDaemon::start(vec![
        Reply::ok("vm.show", vm_json("someone-elses", "running")),
        Reply::ok("vm.show", vm_json("someone-elses", "running")),
    ]);
    let mut mcp = Mcp::start(Some(daemon.socket()), &["--profile", "run"]);
    mcp.handshake();
    let answer = mcp.call("vm_delete", json!({"vm": "some", "force": true}));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not created by this MCP session"), "{text}");
    let answer = mcp.call("vm_exec", json!({"vm": "some", "argv": ["rm", "-rf", "/"]}));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    mcp.finish();
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        ["vm.show", "vm.show"],
        "nothing but lookups reached the daemon"
    );
}

#[test]
fn vm_run_creates_runs_caps_output_and_deletes() {
    let daemon = FakeDaemon::start(vec![
        Reply::events_then(
            "vm.create",
            vec![Event::Stage {
                op: "op-1".into(),
                stage: "reserve name".into(),
                state: StageState::Done,
                elapsed_ms: 1,
                detail: Some("gentle-otter".into()),
            }],
            vm_json("gentle-otter", "running"),
        ),
        Reply::events_then(
            "vm.exec",
            vec![
                Event::Output {
                    stream: OutputStream::Stdout,
                    data: b"hello world".to_vec(),
                },
                Event::Output {
                    stream: OutputStream::Stderr,
                    data: b"oops".to_vec(),
                },
            ],
            json!({"exit_code": 42}),
        ),
        Reply::ok("vm.delete", vm_json("gentle-otter", "stopped")),
    ]);
    let mut mcp = Mcp::start(Some(daemon.socket()), &["--max-output", "5"]);
    mcp.handshake();
    let answer = mcp.call(
        "vm_run",
        json!({"argv": ["sh", "-c", "exit 42"], "env": {"A": "1"}}),
    );
    let result = &answer["result"]["structuredContent"];
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(result["exit_code"], 42);
    assert_eq!(result["stdout"], "hello");
    assert_eq!(result["stdout_truncated"], true);
    assert_eq!(result["stdout_bytes"], 11);
    assert_eq!(result["stderr"], "oops");
    assert_eq!(result["stderr_truncated"], false);
    assert_eq!(result["max_output_bytes"], 5);
    assert_eq!(result["vm"], Value::Null);
    mcp.finish();
    let received = daemon.finish();
    let methods: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["vm.create", "vm.exec", "vm.delete"]);
    assert_eq!(received[1].params["env"], json!([["A", "1"]]));
    assert_eq!(received[2].params["vm"], "gentle-otter");
}

#[test]
fn print_config_names_this_binary() {
    let home = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("banger"))
        .env("HOME", home.path())
        .args(["mcp", "--print-config", "codex", "--profile", "full"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[mcp_servers.banger]"), "{text}");
    assert!(text.contains(r#""mcp", "--profile", "full""#), "{text}");
    assert!(text.contains("banger\""), "{text}");
}

#[test]
fn a_cancelled_vm_run_drops_the_exec_and_deletes_its_vm() {
    let daemon = FakeDaemon::start(vec![
        Reply::events_then(
            "vm.create",
            vec![Event::Stage {
                op: "op-1".into(),
                stage: "reserve name".into(),
                state: StageState::Done,
                elapsed_ms: 1,
                detail: Some("gentle-otter".into()),
            }],
            vm_json("gentle-otter", "running"),
        ),
        // The command never ends on its own.
        Reply::hang("vm.exec", vec![]),
        Reply::ok("vm.delete", vm_json("gentle-otter", "stopped")),
    ]);
    let mut mcp = Mcp::start(Some(daemon.socket()), &[]);
    mcp.handshake();
    mcp.send_line(
        r#"{"jsonrpc":"2.0","id":"run","method":"tools/call","params":{"name":"vm_run","arguments":{"argv":["sleep","1000"]}}}"#,
    );
    assert!(daemon.wait_for("vm.exec", Duration::from_secs(30)));
    mcp.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"run","reason":"test"}}"#,
    );
    assert!(
        daemon.wait_for("vm.delete", Duration::from_secs(30)),
        "the cancelled vm_run deleted its VM"
    );
    // The cancelled call is never answered; the next answer is the ping's.
    let pong = mcp.request("ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    mcp.finish();
    let received = daemon.finish();
    assert_eq!(received[2].params["vm"], "gentle-otter");
    assert_eq!(received[2].params["force"], true);
}

fn snapshot_json(name: &str, source_vm: &str) -> Value {
    json!({
        "id": "5a1b2c3d4e5f", "name": name, "state": "ready", "source_vm": source_vm,
        "image": "tiny", "kernel": "debian-6.1-cloud", "vcpus": 1, "memory_mib": 256,
        "disk_mib": 1024, "driver": "qemu", "size_bytes": 4096, "dir": "/s/snapshots/x",
        "running_forks": [], "created_at": "2026-03-01T11:55:00Z"
    })
}

fn reserved(name: &str) -> Event {
    Event::Stage {
        op: "op-1".into(),
        stage: "reserve name".into(),
        state: StageState::Done,
        elapsed_ms: 1,
        detail: Some(name.into()),
    }
}

#[test]
fn run_profile_forks_only_its_own_vms_and_snapshots() {
    let not_found = || {
        Reply::error(
            "snapshot.show",
            banger_api::ApiError::not_found("no snapshot named \"x\""),
        )
    };
    let daemon = FakeDaemon::start(vec![
        // Someone else's VM.
        not_found(),
        Reply::ok("vm.show", vm_json("someone-elses", "running")),
        // Someone else's snapshot.
        Reply::ok("snapshot.show", snapshot_json("theirs", "someone-elses")),
    ]);
    let mut mcp = Mcp::start(Some(daemon.socket()), &["--profile", "run"]);
    mcp.handshake();
    for source in ["someone-elses", "theirs"] {
        let answer = mcp.call("vm_fork", json!({"source": source}));
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        let text = answer["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("by this MCP session"), "{source}: {text}");
    }
    // Arguments out of range are protocol errors, before the daemon is asked.
    let answer = mcp.call("vm_fork", json!({"source": "a", "count": 65}));
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let answer = mcp.call("vm_run", json!({"argv": ["true"], "allow": "pypi.org"}));
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    mcp.finish();
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        ["snapshot.show", "vm.show", "snapshot.show"],
        "nothing but lookups reached the daemon"
    );
}

#[test]
fn vm_fork_of_its_own_vm_owns_the_forks_and_the_snapshot() {
    let mut forked = vm_json("w-1", "running");
    forked["forked_from"] =
        json!({"snapshot": "box-5a1b2c", "source_vm": "box", "shares_boot_id": true});
    forked["policy"] = json!(["pypi.org:443"]);
    let mut second = forked.clone();
    second["name"] = json!("w-2");
    let not_found = Reply::error(
        "snapshot.show",
        banger_api::ApiError::not_found("no snapshot named \"box\""),
    );
    let daemon = FakeDaemon::start(vec![
        Reply::events_then(
            "vm.create",
            vec![reserved("box")],
            vm_json("box", "running"),
        ),
        not_found,
        Reply::ok("vm.show", vm_json("box", "running")),
        Reply::events_then(
            "vm.fork",
            vec![reserved("box-5a1b2c"), reserved("w-1"), reserved("w-2")],
            json!([forked, second]),
        ),
        // The snapshot the fork made is the session's: it may be forked again.
        Reply::ok("snapshot.show", snapshot_json("box-5a1b2c", "box")),
        Reply::events_then("vm.fork", vec![reserved("w-3")], json!([forked])),
        Reply::ok("vm.show", vm_json("w-2", "running")),
        Reply::ok("vm.delete", vm_json("w-2", "stopped")),
    ]);
    let mut mcp = Mcp::start(
        Some(daemon.socket()),
        &["--profile", "run", "--max-vms", "8"],
    );
    mcp.handshake();
    let answer = mcp.call(
        "vm_create",
        json!({"name": "box", "allow": ["pypi.org:443"]}),
    );
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let answer = mcp.call("vm_fork", json!({"source": "box", "name": "w", "count": 2}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let result = &answer["result"]["structuredContent"];
    assert_eq!(result["snapshot"], "box-5a1b2c");
    assert_eq!(result["vms"][0]["name"], "w-1");
    assert_eq!(result["vms"][1]["created_by_this_session"], true);
    assert_eq!(result["vms"][0]["policy"], json!(["pypi.org:443"]));
    let answer = mcp.call("vm_fork", json!({"source": "box-5a1b2c"}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    // A fork is the session's own VM.
    let answer = mcp.call("vm_delete", json!({"vm": "w-2", "force": true}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    mcp.finish();
    let received = daemon.finish();
    let methods: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "vm.create",
            "snapshot.show",
            "vm.show",
            "vm.fork",
            "snapshot.show",
            "vm.fork",
            "vm.show",
            "vm.delete"
        ]
    );
    assert_eq!(received[0].params["allow"], json!(["pypi.org:443"]));
    assert_eq!(received[3].params["source"], "box");
    assert_eq!(received[3].params["count"], 2);
    assert_eq!(received[5].params["source"], "box-5a1b2c");
}
