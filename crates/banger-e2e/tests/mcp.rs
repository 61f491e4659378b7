//! `banger mcp` on a real tiny guest, driven by a scripted MCP client over its
//! stdin/stdout: `vm_run` of a repository with exit 42 (kept), file_write/file_read and `workspace_export` of a guest edit
//! through the agent, a `vm_exec` cancelled mid-command (the guest process is gone
//! afterwards), a second `run`-profile session refusing to delete a VM it did not create,
//! and the first session deleting its own. One guest for the whole test.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banger_e2e::{TestHost, bin_dir, git, require_vm, wait_until};
use serde_json::{Value, json};

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    next_id: i64,
}

impl Mcp {
    fn start(host: &TestHost, args: &[&str]) -> Mcp {
        let mut child = host
            .command(bin_dir().join("banger"))
            .arg("mcp")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(host.env())
            .current_dir(host.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run banger mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line).expect("banger mcp wrote JSON");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut mcp = Mcp {
            child,
            stdin,
            lines,
            next_id: 0,
        };
        let init = mcp.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "e2e", "version": "1"}}),
        );
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a tools/call and returns its id without waiting.
    fn start_call(&mut self, tool: &str, arguments: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": arguments}}));
        id
    }

    /// Waits for the answer to `id`; fails on an answer to `never` (a cancelled call).
    fn wait(&mut self, id: i64, never: Option<i64>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .lines
                .recv_timeout(left)
                .expect("an answer within 120 s");
            if let Some(never) = never {
                assert_ne!(
                    message.get("id"),
                    Some(&json!(never)),
                    "a cancelled call was answered"
                );
            }
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait(id, None)
    }

    /// A successful tool call's structured result.
    fn call_ok(&mut self, tool: &str, arguments: Value) -> Value {
        let id = self.start_call(tool, arguments);
        let answer = self.wait(id, None);
        assert_eq!(answer["result"]["isError"], false, "{tool}: {answer}");
        answer["result"]["structuredContent"].clone()
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "banger mcp exited with {status}");
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn mcp_runs_cancels_and_keeps_to_its_profile_on_a_real_guest() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let repo = host.root().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("hello.txt"), "from the host\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);

    let root = host.root().display().to_string();
    let mut mcp = Mcp::start(&host, &["--profile", "run", "--allow-repo", &root]);

    // A repository in, a command with exit 42; the VM is kept for the next steps.
    let started = Instant::now();
    let run = mcp.call_ok(
        "vm_run",
        json!({"image": "tiny", "repo": repo.display().to_string(), "keep": true,
               "argv": ["sh", "-c", "pwd; cat hello.txt; echo err >&2; exit 42"]}),
    );
    banger_e2e::report_timing("mcp vm_run of a repo (tiny)", started.elapsed());
    assert_eq!(run["exit_code"], 42, "{run}");
    assert_eq!(run["stdout"], "/root/repo\nfrom the host\n");
    assert_eq!(run["stderr"], "err\n");
    assert_eq!(run["stdout_truncated"], false);
    let vm = run["vm"].as_str().expect("the kept VM's name").to_string();

    // Files through the agent.
    let written = mcp.call_ok(
        "file_write",
        json!({"vm": vm, "path": "/tmp/note.txt", "content": "line one\n\u{e9}t\u{e9}\n"}),
    );
    assert_eq!(written["bytes"], 15);
    let read = mcp.call_ok("file_read", json!({"vm": vm, "path": "/tmp/note.txt"}));
    assert_eq!(read["content"], "line one\n\u{e9}t\u{e9}\n");
    assert_eq!(read["encoding"], "utf-8");
    assert_eq!(read["truncated"], false);

    // The guest's edit comes back as a patch, and the guest is left as it was.
    let written = mcp.call_ok(
        "file_write",
        json!({"vm": vm, "path": "/root/repo/hello.txt", "content": "from the guest\n"}),
    );
    assert_eq!(written["bytes"], 15);
    let export = mcp.call_ok("workspace_export", json!({"vm": vm}));
    let patch = export["patch"].as_str().unwrap_or_default();
    assert!(patch.contains("-from the host"), "{export}");
    assert!(patch.contains("+from the guest"), "{export}");
    assert_eq!(export["patch_truncated"], false, "{export}");
    assert_eq!(export["files"][0]["path"], "hello.txt", "{export}");
    assert_eq!(export["files"][0]["status"], "modified", "{export}");

    // Cancellation mid-command: the guest process goes away.
    let long = mcp.start_call(
        "vm_exec",
        json!({"vm": vm, "argv": ["sh", "-c", "echo $$ > /tmp/long.pid; exec sleep 300"]}),
    );
    let pid = wait_until("the long command to start", Duration::from_secs(30), || {
        let id = mcp.start_call("file_read", json!({"vm": vm, "path": "/tmp/long.pid"}));
        let answer = mcp.wait(id, None);
        match answer["result"]["structuredContent"]["content"].as_str() {
            Some(pid) if !pid.trim().is_empty() => Ok(pid.trim().to_string()),
            _ => Err(format!("{answer}")),
        }
    });
    mcp.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": long, "reason": "test"}}),
    );
    wait_until(
        "the cancelled command to be gone",
        Duration::from_secs(30),
        || {
            let id = mcp.start_call(
                "vm_exec",
                json!({"vm": vm, "argv": ["sh", "-c", "kill -0 \"$1\"", "sh", pid.as_str()]}),
            );
            let answer = mcp.wait(id, Some(long));
            match answer["result"]["structuredContent"]["exit_code"].as_i64() {
                Some(0) => Err(format!("process {pid} still runs")),
                Some(_) => Ok(()),
                None => Err(format!("{answer}")),
            }
        },
    );

    // Another run-profile session did not create this VM: it may not delete it.
    let mut other = Mcp::start(&host, &["--profile", "run"]);
    let id = other.start_call("vm_delete", json!({"vm": vm, "force": true}));
    let refused = other.wait(id, None);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    let text = refused["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("not created by this MCP session"), "{text}");
    other.finish();
    assert_eq!(
        host.vm_names().as_slice(),
        std::slice::from_ref(&vm),
        "the refused delete left the VM alone"
    );

    // Its own session deletes it.
    let deleted = mcp.call_ok("vm_delete", json!({"vm": vm, "force": true}));
    assert_eq!(deleted["deleted"], vm.as_str());
    mcp.finish();
    host.assert_no_vm_left("after the MCP session");
}
