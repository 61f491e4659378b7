//! The user-facing text of every failure: one snapshot per daemon error code, plus the
//! local cases (daemon down, broken conversation).

use std::io::ErrorKind;

use super::*;

fn plain(err: &CliError) -> String {
    anstream::adapter::strip_str(&render(&translate(err))).to_string()
}

fn api(code: ErrorCode, message: &str) -> CliError {
    CliError::Daemon(ClientError::Api(ApiError::new(code, message)))
}

#[test]
fn every_error_code_reads_well() {
    let cases = [
        (ErrorCode::NotFound, "no VM named web"),
        (ErrorCode::AlreadyExists, "a VM named web exists already"),
        (
            ErrorCode::BadRequest,
            "memory is 64MiB; it must be at least 128MiB",
        ),
        (
            ErrorCode::BadVersion,
            "client speaks protocol 2, daemon speaks 1",
        ),
        (
            ErrorCode::Unauthorized,
            "uid 1001 is not the daemon's owner (1000)",
        ),
        (ErrorCode::UnknownMethod, "vm.frobnicate"),
        (
            ErrorCode::OperationFailed,
            "boot: qemu exited with status 1: could not open disk",
        ),
        (
            ErrorCode::Conflict,
            "web is running; stop it first or pass --force",
        ),
        (
            ErrorCode::NotYetAvailable,
            "vm.ports is not yet available in this version of banger",
        ),
    ];
    let mut all = String::new();
    for (code, message) in cases {
        all.push_str(&format!("--- {code}\n{}", plain(&api(code, message))));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn operation_failed_shows_the_cause_not_the_code() {
    let text = plain(&api(ErrorCode::OperationFailed, "disk full"));
    assert_eq!(text, "error: disk full\n");
    assert!(!text.contains("operation_failed"));
}

#[test]
fn daemon_hints_win_and_op_ids_show() {
    // Realistic values: a random op id and a per-user path, redacted for the snapshot.
    let err = CliError::Daemon(ClientError::Api(
        ApiError::operation_failed(
            "image build failed: mmdebstrap exited with 1 (log: /home/alice/.local/state/banger/ops/op-5f2a9c.log)",
        )
        .with_op("op-5f2a9c")
        .with_hint("see the daemon log for op-5f2a9c"),
    ));
    insta::with_settings!({filters => vec![
        (r"op-[0-9a-f]+", "op-[ID]"),
        (r"/home/[^/]+/", "[HOME]/"),
    ]}, {
        insta::assert_snapshot!(plain(&err), @r"
        error: image build failed: mmdebstrap exited with 1 (log: [HOME]/.local/state/banger/ops/op-[ID].log)
        hint: see the daemon log for op-[ID]
        op: op-[ID]
        ");
    });
}

#[test]
fn local_failures_read_well() {
    let down = |reason, custom_location| CliError::DaemonDown {
        socket: "/run/user/1000/banger/bangerd.sock".into(),
        reason,
        start_command: "bangerd &".into(),
        custom_location,
    };
    let cases = [
        ("socket missing", down(ErrorKind::NotFound, false)),
        (
            "stale socket, custom location",
            down(ErrorKind::ConnectionRefused, true),
        ),
        (
            "someone else's socket",
            down(ErrorKind::PermissionDenied, false),
        ),
        ("closed", CliError::Daemon(ClientError::Closed)),
        (
            "protocol",
            CliError::Daemon(ClientError::Protocol(
                "unreadable frame from the daemon".into(),
            )),
        ),
        (
            "usage",
            CliError::usage("refusing to prune", Some("pass -f")),
        ),
        (
            "local chain",
            CliError::Local(
                anyhow::anyhow!("No such file or directory (os error 2)")
                    .context("cannot read /tmp/x"),
            ),
        ),
        ("interrupted", CliError::Interrupted),
    ];
    let mut all = String::new();
    for (what, err) in cases {
        all.push_str(&format!(
            "--- {what} (exit {})\n{}",
            err.exit_status(),
            plain(&err)
        ));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn styles_are_present_for_terminals() {
    let styled = render(&translate(&api(ErrorCode::NotFound, "no VM named web")));
    assert!(styled.contains('\u{1b}'));
}
