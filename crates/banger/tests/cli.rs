//! The `banger` binary end to end, against no daemon or a scripted fake one: exit codes,
//! where output goes, error texts, progress lines, argv passing, completion, ssh-config
//! on a temporary HOME.

mod support;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use banger_api::{ApiError, ErrorCode, Event, OutputStream, StageState};
use predicates::prelude::*;
use support::{FakeDaemon, Reply, vm_json};

/// `banger` with an isolated environment: its own HOME and directories, the given socket,
/// no inherited colour settings.
fn banger(home: &Path, socket: &Path) -> Command {
    let mut cmd = Command::from_std(banger_std(home, socket));
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// The same, as a plain `std::process::Command` (for tests that signal the process).
fn banger_std(home: &Path, socket: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("banger"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("BANGER_STATE_DIR", home.join("state"))
        .env("BANGER_CACHE_DIR", home.join("cache"))
        .env("BANGER_CONFIG_DIR", home.join("config"))
        .env("BANGER_RUNTIME_DIR", home.join("run"))
        .env("BANGER_SOCKET", socket)
        .env("BANGER_SYSTEM_ROOT", home);
    cmd
}

fn no_daemon() -> (tempfile::TempDir, Command) {
    let home = tempfile::tempdir().unwrap();
    let cmd = banger(home.path(), &home.path().join("nothing-here.sock"));
    (home, cmd)
}

fn with_daemon(daemon: &FakeDaemon) -> (tempfile::TempDir, Command) {
    let home = tempfile::tempdir().unwrap();
    let cmd = banger(home.path(), daemon.socket());
    (home, cmd)
}

fn stage(stage: &str, state: StageState, elapsed_ms: u64) -> Event {
    Event::Stage {
        op: "op-1".into(),
        stage: stage.into(),
        state,
        elapsed_ms,
        detail: None,
    }
}

#[test]
fn unreachable_daemon_says_how_to_start_it() {
    let (_home, mut cmd) = no_daemon();
    cmd.args(["vm", "list"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(
            "error: cannot reach the banger daemon at",
        ))
        .stderr(predicate::str::contains("nothing-here.sock"))
        .stderr(predicate::str::contains("hint: start the daemon with `"))
        .stderr(predicate::str::contains("bangerd &`"));
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["vm", "create", "--name", "Bad_Name"],
            "only lowercase letters, digits and '-' are allowed",
        ),
        (&["vm", "create", "--memory", "0"], "is zero"),
        (
            &["vm", "run", "-d", "--rm"],
            "'--detach' cannot be used with '--rm'",
        ),
        (
            &["vm", "run", "-d", "--", "true"],
            "'--detach' cannot be used with",
        ),
        (&["vm", "prune"], "pass -f"),
    ];
    for (args, expected) in cases {
        // No daemon: exit 2 (not 1) proves the command was refused before connecting.
        let (_home, mut cmd) = no_daemon();
        cmd.args(*args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*expected));
    }
}

#[test]
fn no_color_means_no_escape_codes() {
    // CLICOLOR_FORCE alone colours even into a pipe, so this test can fail.
    let (_home, mut forced) = no_daemon();
    let output = forced
        .env("CLICOLOR_FORCE", "1")
        .args(["vm", "list"])
        .output()
        .unwrap();
    assert!(
        output.stderr.contains(&0x1b),
        "CLICOLOR_FORCE should colour"
    );

    for args in [&["vm", "list"][..], &["vm", "create", "--name", "Bad_Name"]] {
        let (_home, mut cmd) = no_daemon();
        let output = cmd
            .env("CLICOLOR_FORCE", "1")
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(!output.stderr.is_empty());
        assert!(
            !output.stderr.contains(&0x1b),
            "{args:?}: {:?}",
            output.stderr
        );
        assert!(!output.stdout.contains(&0x1b));
    }
}

#[test]
fn exec_streams_output_and_exits_with_the_guest_code() {
    let daemon = FakeDaemon::start(vec![
        Reply::ok("vm.show", vm_json("web", "running")),
        Reply::events_then(
            "vm.exec",
            vec![
                Event::Output {
                    stream: OutputStream::Stdout,
                    data: b"hello from the guest\n".to_vec(),
                },
                Event::Output {
                    stream: OutputStream::Stderr,
                    data: b"a warning\n".to_vec(),
                },
            ],
            serde_json::json!({"exit_code": 42}),
        ),
    ]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "exec", "web", "--", "sh", "-c", "echo hi; exit 42"])
        .assert()
        .code(42)
        .stdout("hello from the guest\n")
        .stderr("a warning\n");
    let received = daemon.finish();
    // vm.show first: a VM without a workspace runs where the agent starts.
    assert_eq!(received[0].method, "vm.show");
    assert_eq!(received[1].params["vm"], "web");
    assert_eq!(
        received[1].params["argv"],
        serde_json::json!(["sh", "-c", "echo hi; exit 42"])
    );
    assert!(received[1].params.get("cwd").is_none());
}

#[test]
fn operation_failed_shows_the_cause_not_the_code() {
    let daemon = FakeDaemon::start(vec![Reply::error(
        "vm.list",
        ApiError::operation_failed("cannot open the state database: disk full").with_op("op-77"),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: cannot open the state database: disk full",
        ))
        .stderr(predicate::str::contains("op: op-77"))
        .stderr(predicate::str::contains("operation_failed").not());
    daemon.finish();
}

#[test]
fn not_yet_available_is_rendered_cleanly() {
    let daemon = FakeDaemon::start(vec![Reply::error(
        "vm.ports",
        ApiError::not_yet_available("vm.ports"),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "ports", "web"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("error: vm.ports is not yet available in this version of banger\n");
    daemon.finish();
}

#[test]
fn stages_are_plain_lines_on_stderr_without_a_terminal() {
    let daemon = FakeDaemon::start(vec![Reply::events_then(
        "vm.create",
        vec![
            Event::OpStarted { op: "op-1".into() },
            stage("resolve image", StageState::Started, 0),
            stage("resolve image", StageState::Done, 120),
            stage("boot", StageState::Started, 130),
            stage("boot", StageState::Done, 1234),
        ],
        vm_json("web", "running"),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "create", "--name", "web", "--memory", "2GiB"])
        .assert()
        .success()
        .stdout("web: running (10.77.0.2)\n")
        .stderr(
            predicates::str::is_match(
                "^\\[  0\\.0s\\] resolve image \\.\\.\\.\n\
             \\[  0\\.1s\\] resolve image \\.\\.\\. done\n\
             \\[  0\\.1s\\] boot \\.\\.\\.\n\
             \\[  1\\.2s\\] boot \\.\\.\\. done\n\
             web ready in [0-9]+\\.[0-9]s\n$",
            )
            .unwrap(),
        );
    let received = daemon.finish();
    assert_eq!(received[0].params["name"], "web");
    assert_eq!(received[0].params["memory_mib"], 2048);
}

#[test]
fn run_rm_creates_execs_deletes_and_keeps_the_exit_code() {
    let daemon = FakeDaemon::start(vec![
        Reply::events_then(
            "vm.create",
            vec![stage("boot", StageState::Done, 900)],
            vm_json("gentle-otter", "running"),
        ),
        Reply::ok("vm.exec", serde_json::json!({"exit_code": 42})),
        Reply::ok("vm.delete", vm_json("gentle-otter", "stopped")),
    ]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "run", "--rm", "--", "sh", "-c", "exit 42"])
        .assert()
        .code(42);
    let received = daemon.finish();
    let methods: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["vm.create", "vm.exec", "vm.delete"]);
    assert_eq!(
        received[1].params["argv"],
        serde_json::json!(["sh", "-c", "exit 42"])
    );
    assert_eq!(received[2].params["vm"], "gentle-otter");
    assert_eq!(received[2].params["force"], true);
}

#[test]
fn run_rm_deletes_even_when_the_exec_fails() {
    let daemon = FakeDaemon::start(vec![
        Reply::ok("vm.create", vm_json("web", "running")),
        Reply::error("vm.exec", ApiError::operation_failed("guest agent is gone")),
        Reply::ok("vm.delete", vm_json("web", "stopped")),
    ]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "run", "--rm", "--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error: guest agent is gone"));
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["vm.create", "vm.exec", "vm.delete"]);
}

fn list_reply(vms: &[(&str, &str)]) -> Reply {
    Reply::ok(
        "vm.list",
        serde_json::Value::Array(vms.iter().map(|(n, s)| vm_json(n, s)).collect()),
    )
}

/// stderr without the daemon-log pointer of op lines (it names a temporary path).
fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn delete_tries_every_vm_and_fails_if_one_did() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "stopped"), ("db", "stopped")]),
        Reply::for_vm("vm.delete", "web", vm_json("web", "stopped")),
        Reply::for_vm("vm.delete", "db", vm_json("db", "stopped")),
    ]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd
        .args(["vm", "delete", "web", "nope", "db"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["deleted db", "deleted web"]);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("no VM is named \"nope\""), "{stderr}");
    assert!(stderr.contains("1 of 3 VMs failed"), "{stderr}");
    let mut names: Vec<String> = daemon
        .finish()
        .into_iter()
        .filter(|r| r.method == "vm.delete")
        .map(|r| r.params["vm"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["db", "web"]);
}

#[test]
fn stop_json_is_an_array_for_one_vm_and_for_several() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "running"), ("db", "running")]),
        Reply::for_vm("vm.stop", "web", vm_json("web", "stopped")),
        Reply::for_vm("vm.stop", "db", vm_json("db", "stopped")),
        list_reply(&[("web", "running")]),
        Reply::ok("vm.stop", vm_json("web", "stopped")),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    let output = cmd
        .args(["vm", "stop", "web", "db", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0]["name"], "web", "the order given");
    let one = banger(home.path(), daemon.socket())
        .args(["vm", "stop", "we", "--json"])
        .output()
        .unwrap();
    assert!(one.status.success(), "{}", stderr_of(&one));
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(parsed.len(), 1, "one VM is still an array");
    let received = daemon.finish();
    assert_eq!(
        received.last().unwrap().params["vm"],
        "web",
        "a prefix of one VM to stop is resolved and sent in full"
    );
}

#[test]
fn list_json_is_the_documented_records() {
    let daemon = FakeDaemon::start(vec![list_reply(&[("web", "running"), ("db", "stopped")])]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd.args(["vm", "ps", "--json"]).output().unwrap();
    assert!(output.status.success());
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["name"], "db");
    assert_eq!(parsed[1]["memory_bytes"], 512 * 1024 * 1024);
    assert!(
        parsed[1]["pid"].is_null(),
        "every key present: {}",
        parsed[1]
    );
    daemon.finish();
}

#[test]
fn stop_of_a_stopped_vm_and_start_of_a_running_one_succeed_and_say_so() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "stopped")]),
        list_reply(&[("web", "running")]),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    let stop = cmd.args(["vm", "stop", "web"]).output().unwrap();
    assert_eq!(stop.status.code(), Some(0), "{}", stderr_of(&stop));
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout),
        "web: already stopped (10.77.0.2)\n"
    );
    assert_eq!(stderr_of(&stop), "", "no progress line, no op id");
    let start = banger(home.path(), daemon.socket())
        .args(["vm", "start", "web"])
        .output()
        .unwrap();
    assert_eq!(start.status.code(), Some(0), "{}", stderr_of(&start));
    assert_eq!(
        String::from_utf8_lossy(&start.stdout),
        "web: already running (10.77.0.2)\n"
    );
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        ["vm.list", "vm.list"],
        "nothing was asked to start or stop"
    );
}

#[test]
fn destructive_commands_refuse_a_prefix_without_a_terminal() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("ux-zzvictim", "stopped")]),
        list_reply(&[("ux-zzvictim", "running")]),
        list_reply(&[("ux-zzvictim", "running"), ("db", "running")]),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    let delete = cmd.args(["vm", "delete", "ux-zz"]).output().unwrap();
    assert_eq!(delete.status.code(), Some(1));
    insta::assert_snapshot!("delete_prefix_refused", stderr_of(&delete));
    let kill = banger(home.path(), daemon.socket())
        .args(["vm", "kill", "ux-zz"])
        .output()
        .unwrap();
    assert_eq!(kill.status.code(), Some(1));
    insta::assert_snapshot!("kill_prefix_refused", stderr_of(&kill));
    let stop = banger(home.path(), daemon.socket())
        .args(["vm", "stop", "ux-zz", "db"])
        .output()
        .unwrap();
    assert_eq!(stop.status.code(), Some(1));
    assert!(
        stderr_of(&stop).contains("\"ux-zz\" is only a prefix of \"ux-zzvictim\"; `vm stop` needs"),
        "{}",
        stderr_of(&stop)
    );
    // Nothing destructive was asked; the `db` stop of the last command was not scripted
    // and fails, which the count of the summary shows.
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert!(
        !methods.iter().any(|m| m == "vm.delete" || m == "vm.kill"),
        "{methods:?}"
    );
}

#[test]
fn several_vms_run_at_once_and_each_progress_line_names_its_vm() {
    let started = |vm: &'static str| {
        let mut reply = Reply::events_then(
            "vm.start",
            vec![
                Event::OpStarted {
                    op: format!("op-{vm}"),
                },
                stage("boot", StageState::Started, 0),
                stage("boot", StageState::Done, 1234),
            ],
            vm_json(vm, "running"),
        );
        reply.vm = Some(vm);
        reply
    };
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "stopped"), ("db", "stopped"), ("up", "running")]),
        started("web"),
        started("db"),
    ]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd.args(["vm", "start", "--all"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    for vm in ["web", "db"] {
        assert!(
            stderr.contains(&format!("{vm}: [  0.0s] boot ...\n")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("{vm}: [  1.2s] boot ... done\n")),
            "{stderr}"
        );
    }
    let mut started: Vec<String> = daemon
        .finish()
        .into_iter()
        .filter(|r| r.method == "vm.start")
        .map(|r| r.params["vm"].as_str().unwrap().to_string())
        .collect();
    started.sort();
    assert_eq!(started, ["db", "web"], "--all starts the stopped VMs only");
}

#[test]
fn prune_answers_in_the_shape_of_delete() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "running"), ("old", "stopped")]),
        Reply::ok("vm.prune", serde_json::json!({"deleted": ["old"]})),
        list_reply(&[("old", "stopped")]),
        Reply::ok("vm.delete", vm_json("old", "stopped")),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    let prune = cmd.args(["vm", "prune", "-f", "--json"]).output().unwrap();
    assert!(prune.status.success(), "{}", stderr_of(&prune));
    let delete = banger(home.path(), daemon.socket())
        .args(["vm", "rm", "old", "--json"])
        .output()
        .unwrap();
    assert!(delete.status.success(), "{}", stderr_of(&delete));
    assert_eq!(
        String::from_utf8_lossy(&prune.stdout),
        String::from_utf8_lossy(&delete.stdout)
    );
    insta::assert_snapshot!("prune_json", String::from_utf8_lossy(&prune.stdout));
    daemon.finish();
}

#[test]
fn run_with_a_bare_word_says_the_command_goes_after_dashes() {
    let (home, mut cmd) = no_daemon();
    cmd.current_dir(home.path())
        .args(["vm", "run", "--rm", "uname"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: \"uname\" is not a path here; the command to run goes after `--`\n\
             hint: banger vm run --rm -- uname    (a PATH before `--` is a repository to copy in)\n",
        );
}

#[test]
fn run_detached_says_how_to_remove_the_running_vm() {
    let daemon = FakeDaemon::start(vec![Reply::ok("vm.create", vm_json("web", "running"))]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.args(["vm", "run", "-d", "--name", "web"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "remove it with `banger vm delete --force web`",
        ));
    daemon.finish();
}

#[test]
fn an_op_id_comes_with_the_daemon_log_and_logs_op_prints_its_lines() {
    let daemon = FakeDaemon::start(vec![Reply::error(
        "vm.list",
        ApiError::operation_failed("boot: qemu exited").with_op("op-12"),
    )]);
    let (home, mut cmd) = with_daemon(&daemon);
    let output = cmd.args(["vm", "list"]).output().unwrap();
    let log = home.path().join("state").join("bangerd.log");
    let stderr = stderr_of(&output).replace(&log.display().to_string(), "STATE/bangerd.log");
    insta::assert_snapshot!("op_with_daemon_log", stderr);
    daemon.finish();

    std::fs::create_dir_all(home.path().join("state")).unwrap();
    std::fs::write(
        &log,
        "t INFO bangerd::ops: operation started op=op-12 kind=\"vm.start\"\r\n\
         t INFO op{op=op-123}: other\n\
         t INFO op{op=op-12}: banger_vm: booting\n\
         t WARN bangerd::ops: operation failed op=op-12 code=operation_failed\n",
    )
    .unwrap();
    banger(home.path(), &home.path().join("none.sock"))
        .args(["logs", "--op", "op-12"])
        .assert()
        .success()
        .stdout(
            "t INFO bangerd::ops: operation started op=op-12 kind=\"vm.start\"\n\
             t INFO op{op=op-12}: banger_vm: booting\n\
             t WARN bangerd::ops: operation failed op=op-12 code=operation_failed\n",
        );
    banger(home.path(), &home.path().join("none.sock"))
        .args(["logs", "--op", "op-99"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("mentions op-99"));
}

#[test]
fn list_quiet_filter_and_template() {
    let daemon = FakeDaemon::start(vec![
        list_reply(&[("web", "running"), ("web-2", "stopped"), ("db", "running")]),
        list_reply(&[("web", "running"), ("web-2", "stopped"), ("db", "running")]),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    cmd.args(["ps", "-q", "--filter", "state=running"])
        .assert()
        .success()
        .stdout("web\ndb\n");
    banger(home.path(), daemon.socket())
        .args([
            "vm",
            "ls",
            "--filter",
            "name=web",
            "--format",
            "{{.Name}}={{.State}}",
        ])
        .assert()
        .success()
        .stdout("web=running\nweb-2=stopped\n");
    daemon.finish();
}

#[test]
fn bad_version_tells_to_restart_the_daemon() {
    let daemon = FakeDaemon::start(vec![Reply::error(
        "ping",
        ApiError::new(ErrorCode::BadVersion, "protocol 1 is not 2"),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    cmd.arg("ping")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the daemon speaks another protocol version; restart it",
        ));
    daemon.finish();
}

#[test]
fn system_status_without_an_install_says_how_to_install() {
    let (home, mut cmd) = no_daemon();
    cmd.env("BANGER_SYSTEM_ROOT", home.path())
        .args(["system", "status"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "banger is not installed as a service here",
        ))
        .stderr(predicate::str::contains("sudo banger system install"));
}

#[test]
fn version_works_without_a_daemon() {
    let (_home, mut cmd) = no_daemon();
    cmd.arg("version")
        .assert()
        .success()
        .stdout(predicate::str::contains(concat!(
            "banger  ",
            env!("CARGO_PKG_VERSION")
        )));
}

#[test]
fn completion_offers_catalog_images_without_a_daemon() {
    let (_home, mut cmd) = no_daemon();
    let output = cmd
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "3")
        .args(["--", "banger", "image", "pull", ""])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let candidates: Vec<&str> = stdout.lines().collect();
    assert!(candidates.contains(&"debian-bookworm"), "{candidates:?}");
    assert!(candidates.contains(&"tiny"), "{candidates:?}");
}

#[test]
fn completion_offers_vm_names_from_the_daemon() {
    let daemon = FakeDaemon::start(vec![Reply::ok(
        "complete.names",
        serde_json::json!(["web", "db"]),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "3")
        .args(["--", "banger", "vm", "stop", ""])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let candidates: Vec<&str> = stdout.lines().collect();
    assert!(
        candidates.contains(&"web") && candidates.contains(&"db"),
        "{candidates:?}"
    );
    let received = daemon.finish();
    assert_eq!(received[0].params["kind"], "vm");
}

#[test]
fn completion_command_prints_the_registration_script() {
    let (home, mut cmd) = no_daemon();
    let script = cmd.args(["completion", "bash"]).output().unwrap();
    assert!(script.status.success());
    let mut env_cmd = banger(home.path(), &home.path().join("nothing-here.sock"));
    let expected = env_cmd.env("COMPLETE", "bash").output().unwrap();
    assert_eq!(
        String::from_utf8(script.stdout).unwrap(),
        String::from_utf8(expected.stdout).unwrap()
    );
}

#[test]
fn ssh_config_install_is_idempotent_and_uninstall_restores_the_file() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let original = b"Host work\n  HostName work.example\n  User me";
    std::fs::write(ssh.join("config"), original).unwrap();
    let run = |flag: &str| {
        banger(home.path(), &home.path().join("nothing.sock"))
            .args(["ssh-config", flag])
            .assert()
            .success();
    };

    run("--install");
    let installed = std::fs::read(ssh.join("config")).unwrap();
    let text = String::from_utf8_lossy(&installed);
    let include = format!("Include {}", ssh.join("banger_config").display());
    assert_eq!(text.matches("Include ").count(), 1);
    assert!(text.lines().position(|l| l == include) < text.lines().position(|l| l == "Host work"));
    let block = std::fs::read_to_string(ssh.join("banger_config")).unwrap();
    assert!(block.contains("Host *.vm\n"));
    assert!(block.contains(&format!(
        "IdentityFile {}",
        home.path().join("config/ssh/id_ed25519").display()
    )));

    run("--install");
    assert_eq!(std::fs::read(ssh.join("config")).unwrap(), installed);

    run("--uninstall");
    assert_eq!(std::fs::read(ssh.join("config")).unwrap(), original);
    assert!(!ssh.join("banger_config").exists());
}

#[test]
fn run_rm_deletes_the_vm_on_ctrl_c() {
    let daemon = FakeDaemon::start(vec![
        Reply::ok("vm.create", vm_json("web", "running")),
        Reply::hang(
            "vm.exec",
            vec![Event::Output {
                stream: OutputStream::Stdout,
                data: b"working\n".to_vec(),
            }],
        ),
        Reply::ok("vm.delete", vm_json("web", "stopped")),
    ]);
    let home = tempfile::tempdir().unwrap();
    let mut child = banger_std(home.path(), daemon.socket())
        .args(["vm", "run", "--rm", "--", "sleep", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(daemon.wait_for("vm.exec", Duration::from_secs(30)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read as _;
            let _ = pipe.read_to_string(&mut stderr);
        }
        let _ = tx.send((status, stderr));
    });
    let (status, stderr) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("banger did not exit after Ctrl-C");
    assert_eq!(status.unwrap().code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    let methods: Vec<String> = daemon.finish().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["vm.create", "vm.exec", "vm.delete"]);
}

#[test]
fn doctor_fails_only_on_fail_and_reports_the_daemon() {
    let (_home, mut cmd) = no_daemon();
    let output = cmd.args(["doctor", "--json"]).output().unwrap();
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let daemon = checks.last().unwrap();
    assert_eq!(daemon["name"], "daemon");
    assert_eq!(daemon["status"], "warn");
    assert!(daemon["hint"].as_str().unwrap().contains("bangerd &"));
    let any_fail = checks.iter().any(|c| c["status"] == "fail");
    assert_eq!(output.status.code(), Some(if any_fail { 1 } else { 0 }));
}

/// `banger doctor` on a state directory it cannot write: the store check fails and says
/// so. As root (who may write anything a mode forbids) the directory is a read-only
/// tmpfs mounted in a private mount namespace (`unshare`), so the host is untouched;
/// otherwise its mode is 0500.
#[test]
fn doctor_fails_the_store_check_on_a_read_only_state_dir() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    let output = if is_root {
        banger_requires::require!(Tool("unshare"));
        let banger = banger_std(home.path(), &home.path().join("none.sock"));
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o ro none "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&state)
            .arg(banger.get_program())
            .args(["doctor", "--json"])
            .env_clear()
            .envs(banger.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        Command::from_std(cmd).output().unwrap()
    } else {
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o500)).unwrap();
        let mut cmd = banger(home.path(), &home.path().join("none.sock"));
        cmd.args(["doctor", "--json"]).output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let checks: Vec<serde_json::Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let store = checks
        .iter()
        .find(|c| c["name"] == "store")
        .expect("a store check");
    assert_eq!(store["status"], "fail", "{store}");
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .contains("cannot write in"),
        "{store}"
    );
    if is_root {
        assert!(
            store["hint"]
                .as_str()
                .unwrap()
                .contains("read-only file system"),
            "{store}"
        );
    }
    assert_eq!(output.status.code(), Some(1), "a failed check fails doctor");
}

#[test]
fn vm_run_refuses_a_path_outside_git_before_any_request() {
    let daemon = FakeDaemon::start(vec![]);
    let (home, mut cmd) = with_daemon(&daemon);
    let plain = home.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    cmd.args(["vm", "run", plain.to_str().unwrap(), "--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not inside a git working tree"))
        .stderr(predicate::str::contains(
            "hint: PATH must be a git working tree",
        ));
    assert!(daemon.finish().is_empty(), "nothing reaches the daemon");
}

#[test]
fn vm_run_dry_run_lists_the_copy_with_no_daemon() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@e"])
            .args(args)
            .current_dir(&repo)
            .env("HOME", home.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("tracked.txt"), "t").unwrap();
    std::fs::write(repo.join(".gitignore"), "*.log\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "c"]);
    std::fs::write(repo.join("untracked.txt"), "u").unwrap();
    std::fs::write(repo.join("x.log"), "i").unwrap();
    let mut cmd = banger(home.path(), &home.path().join("no-daemon.sock"));
    let out = cmd
        .args(["vm", "run", "--dry-run", repo.to_str().unwrap()])
        .assert()
        .success();
    let out = out.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.lines().any(|l| l == "tracked.txt"), "{stdout}");
    assert!(stdout.lines().any(|l| l == ".git/HEAD"), "{stdout}");
    assert!(!stdout.contains("untracked.txt") && !stdout.contains("x.log"));
    assert!(stderr.contains("mode overlay"), "{stderr}");
    assert!(
        stderr.contains("1 untracked file is not copied"),
        "{stderr}"
    );
}

/// `vm exec` with Docker's flags: `-t` asks for a terminal (24x80 when stdout is not
/// one) and passes TERM, `-u` and `-w` go through, env files come first and `-e` wins.
/// The VM is still starting at first: the CLI waits, with a stage line, then runs.
#[test]
fn exec_waits_for_a_booting_vm_and_sends_docker_flags() {
    let daemon = FakeDaemon::start(vec![
        Reply::ok("vm.show", vm_json("web", "starting")),
        Reply::ok("vm.show", vm_json("web", "running")),
        Reply::ok("vm.exec", serde_json::json!({"exit_code": 127})),
    ]);
    let (home, mut cmd) = with_daemon(&daemon);
    let env_file = home.path().join("vars.env");
    std::fs::write(&env_file, "# comment\nA=file\nB=file\nTERM_FROM_HOST\n").unwrap();
    cmd.env("TERM", "xterm-256color")
        .env("TERM_FROM_HOST", "yes")
        .args([
            "vm",
            "exec",
            "-t",
            "-u",
            "alice",
            "-w",
            "/srv",
            "--env-file",
        ])
        .arg(&env_file)
        .args(["-e", "B=flag", "web", "--", "missing-command"])
        .assert()
        .code(127)
        .stderr(predicate::str::contains(
            "waiting for web to boot (starting) ...",
        ))
        .stderr(predicate::str::contains("done (running)"));
    let received = daemon.finish();
    let exec = &received[2];
    assert_eq!(exec.method, "vm.exec");
    assert_eq!(
        exec.params["tty"],
        serde_json::json!({"rows": 24, "cols": 80})
    );
    assert_eq!(exec.params["user"], "alice");
    assert_eq!(exec.params["cwd"], "/srv");
    assert_eq!(
        exec.params["env"],
        serde_json::json!([
            ["A", "file"],
            ["TERM_FROM_HOST", "yes"],
            ["B", "flag"],
            ["TERM", "xterm-256color"]
        ])
    );
}

#[test]
fn a_bad_env_file_is_refused_before_any_request() {
    let daemon = FakeDaemon::start(vec![]);
    let (home, mut cmd) = with_daemon(&daemon);
    let env_file = home.path().join("bad.env");
    std::fs::write(&env_file, "OK=1\nNOT A NAME=2\n").unwrap();
    cmd.args(["vm", "exec", "--env-file"])
        .arg(&env_file)
        .args(["web", "--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "line 2: \"NOT A NAME\" is not a variable name (write KEY=VALUE)",
        ));
    assert!(daemon.finish().is_empty());
}

#[test]
fn stats_json_is_an_array_in_seconds_also_for_one_named_vm() {
    let daemon = FakeDaemon::start(vec![Reply::ok(
        "vm.stats",
        serde_json::json!({"name": "web", "state": "running", "vmm_rss_bytes": 1024,
            "vmm_cpu_ms": 1500, "disk_allocated_bytes": 10, "disk_size_bytes": 20}),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd.args(["vm", "stats", "web", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed.len(), 1, "one VM is still an array");
    assert_eq!(parsed[0]["vmm_cpu_secs"], 1.5);
    assert!(parsed[0]["cpu_percent"].is_null(), "{}", parsed[0]);
    assert!(parsed[0].get("vmm_cpu_ms").is_none(), "{}", parsed[0]);
    daemon.finish();
}

#[test]
fn snapshot_list_json_has_sizes_in_bytes_and_every_key() {
    let daemon = FakeDaemon::start(vec![Reply::ok(
        "snapshot.list",
        serde_json::json!([{"id": "5e5e5e5e00112233", "name": "base", "state": "ready",
            "source_vm": "src", "image": "tiny", "kernel": "k", "vcpus": 1,
            "memory_mib": 256, "disk_mib": 1024, "driver": "qemu", "size_bytes": 4096,
            "dir": "/s/snapshots/x", "running_forks": [], "created_at": "2026-01-02T03:04:05Z"}]),
    )]);
    let (_home, mut cmd) = with_daemon(&daemon);
    let output = cmd
        .args(["vm", "snapshot", "list", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed[0]["memory_bytes"], 256 << 20);
    assert_eq!(parsed[0]["disk_bytes"], 1u64 << 30);
    assert!(parsed[0]["template_key"].is_null(), "{}", parsed[0]);
    daemon.finish();
}
