//! The helper binary over its real socket: refusals of bad arguments (these run as any
//! user, since nothing is touched), malformed lines, the socket's mode and ownership, and
//! the peer-credential check against a non-owner uid (root only: the socket is chowned
//! to that uid).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use banger_net::HelperClientError;
use banger_proto::helper::{HelperError, HelperOutcome, HelperRequest};
use banger_requires::require;
use support::{RunningHelper, current_uid};

fn refusal(result: Result<banger_net::HelperAnswer, HelperClientError>) -> HelperError {
    match result {
        Err(HelperClientError::Refused { source, .. }) => source,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_arguments_are_refused_over_the_socket() {
    let helper = RunningHelper::start(None, current_uid(), &[]);
    let cases: Vec<(HelperRequest, &str)> = vec![
        (
            HelperRequest::CreateTap {
                name: "bgt-a/b".into(),
            },
            "invalid_name",
        ),
        (
            HelperRequest::CreateTap {
                name: "bgt-0123456789abcdef".into(),
            },
            "invalid_name",
        ),
        (
            HelperRequest::DeleteTap {
                name: "eth0".into(),
            },
            "invalid_name",
        ),
        (
            HelperRequest::AddNat {
                guest_ip: "10.0.0.5".parse().unwrap(),
            },
            "outside_pool",
        ),
        (
            HelperRequest::RemoveNat {
                guest_ip: "172.30.0.1".parse().unwrap(),
            },
            "outside_pool",
        ),
    ];
    for (request, code) in cases {
        let shown = format!("{request:?}");
        let error = refusal(helper.call(request));
        assert_eq!(
            serde_json::to_value(&error).unwrap()["code"],
            code,
            "{shown}: {error}"
        );
    }
    let hello = helper.call(HelperRequest::Hello).unwrap();
    assert!(matches!(hello.outcome, HelperOutcome::Hello { .. }));
    helper.wait_for_log("refused: interface name \"bgt-a/b\"");
}

#[test]
fn dns_without_resolved_is_unsupported() {
    require!(Without("resolvectl"));
    let helper = RunningHelper::start(None, current_uid(), &[]);
    let error = refusal(helper.call(HelperRequest::SetupDns {
        bridge: "banger0".into(),
        server_ip: "172.30.0.1".parse().unwrap(),
        port: 5353,
    }));
    match error {
        HelperError::Unsupported { op, reason } => {
            assert_eq!(op, "setup_dns");
            assert!(reason.contains("172.30.0.1"), "{reason}");
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn malformed_lines_get_an_answer_and_the_connection_keeps_serving() {
    let helper = RunningHelper::start(None, current_uid(), &[]);
    let mut stream = UnixStream::connect(&helper.socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let lines = [
        "not json",
        r#"{"op":"run_shell","cmd":"id"}"#,
        r#"{"op":"add_nat","guest_ip":"172.30.0.300"}"#,
        // Operations the helper no longer has: refused like any unknown one.
        r#"{"op":"chown_to_owner","path":"/etc/shadow"}"#,
        r#"{"op":"attach_loop","path":"/etc/shadow"}"#,
        r#"{"op":"delete_bridge"}"#,
        r#"{"op":"hello"}"#,
    ];
    let mut replies = Vec::new();
    for line in lines {
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        replies.push(reply);
    }
    let (refused, hello) = replies.split_at(replies.len() - 1);
    for reply in refused {
        assert!(reply.contains(r#""code":"bad_request""#), "{reply}");
    }
    assert!(hello[0].contains(r#""outcome":"hello""#), "{}", hello[0]);
}

#[test]
fn the_socket_belongs_to_the_owner_only() {
    let helper = RunningHelper::start(None, current_uid(), &[]);
    let meta = std::fs::metadata(&helper.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), current_uid());
}

#[test]
fn a_non_owner_uid_is_refused() {
    require!(Root);
    let other = current_uid() + 1;
    let helper = RunningHelper::start(None, other, &[]);
    let error = refusal(helper.call(HelperRequest::Hello));
    assert_eq!(error, HelperError::Unauthorized { uid: current_uid() });
    assert_eq!(std::fs::metadata(&helper.socket).unwrap().uid(), other);
    helper.wait_for_log(&format!("refused uid {}", current_uid()));
    let (ok, stdout, stderr) = probe(&helper.socket);
    assert!(
        ok,
        "a helper that refuses us is still a live helper: {stderr}"
    );
    assert!(stdout.contains("serves another uid"), "{stdout}");
}

/// Runs `command` to its end: (success, stdout, stderr).
fn finish(command: &mut std::process::Command) -> (bool, String, String) {
    let out = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `banger-helper probe --socket PATH`.
fn probe(socket: &std::path::Path) -> (bool, String, String) {
    finish(
        std::process::Command::new(support::helper_binary())
            .arg("probe")
            .arg("--socket")
            .arg(socket),
    )
}

fn answers_hello(helper: &RunningHelper) -> bool {
    matches!(
        helper.call(HelperRequest::Hello),
        Ok(answer) if matches!(answer.outcome, HelperOutcome::Hello { .. })
    )
}

#[test]
fn probe_tells_a_live_helper_from_a_dead_one() {
    let mut helper = RunningHelper::start(None, current_uid(), &[]);
    let (ok, stdout, stderr) = probe(&helper.socket);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("is listening on") && stdout.contains("pool 172.30.0.0/24"),
        "{stdout}"
    );
    helper.kill();
    assert!(helper.socket.exists(), "a killed helper leaves its socket");
    let (ok, _, stderr) = probe(&helper.socket);
    assert!(!ok, "nothing answers on a dead helper's socket");
    assert!(stderr.contains("no banger-helper answers"), "{stderr}");
    let (ok, _, stderr) = probe(&helper.dir.path().join("nothing.sock"));
    assert!(!ok);
    assert!(stderr.contains("no banger-helper answers"), "{stderr}");
}

#[test]
fn a_live_helper_keeps_its_socket_and_a_stale_one_is_replaced() {
    let mut helper = RunningHelper::start(None, current_uid(), &[]);
    let (ok, _, stderr) = finish(&mut helper.another());
    assert!(!ok, "a second helper must not take a live socket");
    assert!(stderr.contains("is listening on"), "{stderr}");
    assert!(answers_hello(&helper), "the first helper still answers");
    helper.kill();
    helper.restart();
    assert!(answers_hello(&helper), "a stale socket is replaced");
}

/// As systemd runs the installed helper: root, but without the capabilities that bypass
/// file modes. `setpriv` drops them from the bounding set, so root's exec gets none.
const WITHOUT_DAC_OVERRIDE: &[&str] = &[
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
];

#[test]
fn a_helper_without_dac_override_tells_a_live_socket_from_a_stale_one_it_cannot_open() {
    require!(Root, Tool("setpriv"));
    // the owner's socket (0600, not root's): root without CAP_DAC_OVERRIDE cannot connect
    let owner = 65534;
    let mut helper = RunningHelper::start(None, owner, &[]);
    let (ok, _, stderr) = finish(&mut helper.another_through(WITHOUT_DAC_OVERRIDE));
    assert!(!ok, "a second helper must not take a live socket");
    assert!(stderr.contains("is listening on"), "{stderr}");
    helper.kill();
    // the case a `kill -9` under systemd left: a stale socket the new helper cannot open
    let restarted = helper.another_through(WITHOUT_DAC_OVERRIDE);
    helper.restart_as(restarted);
    let meta = std::fs::metadata(&helper.socket).unwrap();
    assert_eq!(meta.uid(), owner, "the new socket is the owner's again");
}
