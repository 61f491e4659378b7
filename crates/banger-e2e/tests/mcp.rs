//! `banger mcp` on a real tiny guest, driven by a scripted MCP client over its
//! stdin/stdout: `vm_run` of a repository with exit 42 (kept), file_write/file_read and `workspace_export` of a guest edit
//! through the agent, a `vm_exec` cancelled mid-command (the guest process is gone
//! afterwards), a second `run`-profile session refusing to delete a VM it did not create,
//! and the first session deleting its own. One guest for the whole test.

use std::time::{Duration, Instant};

use banger_e2e::mcp::Mcp;
use banger_e2e::{TestHost, git, require_vm, wait_until};
use serde_json::json;

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
