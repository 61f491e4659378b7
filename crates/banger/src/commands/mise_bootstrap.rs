//! mise bootstrap for `vm run PATH`: when the repository declares its tools (`.mise.toml`,
//! `mise.toml`, `.tool-versions` at its root), the guest runs `mise trust <guest path>`
//! (the repository is the user's own checkout; a prompt would only stall a sandbox) and
//! `mise install`, with their output in [`GUEST_LOG`] in the guest and a progress stage
//! here. Installing needs the network, so a run without NAT (or an allow-list) is refused
//! before any VM exists. Commands in such a workspace run as `mise exec -- cmd` when the
//! guest has mise, so the declared tools are on PATH; exit codes pass through (`exec`).
//!
//! Only argv and scripts are built here and the guest is driven through `vm.exec`; the
//! daemon knows nothing of mise.

use std::path::Path;
use std::time::Instant;

use banger_api::methods::{VmCreateParams, VmExec, VmExecParams};
use banger_api::{Event, StageState};
use banger_workspace::Plan;

use crate::connect::Daemon;
use crate::errors::CliError;
use crate::progress::Progress;
use crate::render;

/// The files that make a repository a mise project (at its root).
pub const CONFIG_FILES: [&str; 3] = [".mise.toml", "mise.toml", ".tool-versions"];
/// Where the bootstrap's output goes in the guest.
pub const GUEST_LOG: &str = "/var/log/banger-mise.log";
/// The progress stage's name.
pub const STAGE: &str = "mise install";
/// Lines of the log shown when the install fails.
const TAIL_LINES: u32 = 30;
/// The bootstrap script's exit code when the guest has no `mise`.
const NO_MISE: i32 = 90;

/// Trust, then install, all output to the log; on failure the log's tail on stdout.
/// `$1` is the workspace's guest path.
const SCRIPT: &str = r#"log=/var/log/banger-mise.log
command -v mise >/dev/null 2>&1 || exit 90
export MISE_YES=1
{
  echo "+ mise trust $1" && mise trust "$1" &&
  echo "+ mise install" && cd "$1" && mise install
} >"$log" 2>&1 </dev/null
rc=$?
echo "banger: bootstrap finished with exit code $rc" >>"$log"
[ "$rc" -eq 0 ] || tail -n "$2" "$log"
exit "$rc"
"#;

/// Whether `vm run` bootstraps at all. `--no-bootstrap` wins; otherwise the config
/// file's `bootstrap` key when it has one (`config_default`, wired by the config file's
/// loader), else on.
pub fn enabled(no_bootstrap: bool, config_default: Option<bool>) -> bool {
    !no_bootstrap && config_default.unwrap_or(true)
}

/// Whether the files going into the guest include a mise config at the repository root.
pub fn plan_has_config(plan: &Plan) -> bool {
    plan.entries.iter().any(|entry| {
        entry
            .path
            .to_str()
            .is_some_and(|path| CONFIG_FILES.contains(&path))
    })
}

/// Whether the host directory `root` has a mise config (for `vm exec` on a workspace).
pub fn dir_has_config(root: &Path) -> bool {
    CONFIG_FILES
        .iter()
        .any(|name| fs_err::symlink_metadata(root.join(name)).is_ok())
}

/// Refuses a bootstrap that could not reach the network, before any VM is created.
pub fn check_network(params: &VmCreateParams) -> Result<(), CliError> {
    if (params.nat || !params.allow.is_empty()) && !params.deny_all {
        return Ok(());
    }
    Err(CliError::usage(
        "the repository declares mise tools (.mise.toml, mise.toml or .tool-versions) and \
         installing them needs the network",
        Some(
            "give the VM network access with `--nat` (or `--allow HOST` for the tools' \
             servers), or skip the install with `--no-bootstrap`",
        ),
    ))
}

/// `argv` run through `mise exec` when the guest has mise (else as it is), so the
/// tools the workspace declares are on PATH. `exec` keeps the exit code the command's.
/// Missing tools are not installed on the fly (a guest without network would stall).
pub fn wrap(argv: Vec<String>) -> Vec<String> {
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        "if command -v mise >/dev/null 2>&1; then \
         MISE_EXEC_AUTO_INSTALL=false exec mise exec -- \"$@\"; fi; exec \"$@\""
            .to_string(),
        "banger-mise".to_string(),
    ];
    wrapped.extend(argv);
    wrapped
}

/// The argv of the bootstrap in the foreground.
pub fn foreground_argv(guest_path: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "banger-mise".into(),
        guest_path.into(),
        TAIL_LINES.to_string(),
    ]
}

/// The argv that starts the bootstrap in its own session and returns at once (exit 90
/// when the guest has no mise).
pub fn background_argv(guest_path: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "command -v mise >/dev/null 2>&1 || exit 90; \
         setsid -f sh -c \"$0\" banger-mise \"$1\" \"$2\" >/dev/null 2>&1 </dev/null"
            .into(),
        SCRIPT.into(),
        guest_path.into(),
        TAIL_LINES.to_string(),
    ]
}

/// What a bootstrap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Tools installed (or started installing, in the background).
    Ran,
    /// The image has no mise; nothing was installed.
    NoMise,
}

/// Runs the bootstrap to completion, as a progress stage; a failed install is an error
/// carrying the log's tail.
pub async fn run(
    daemon: &mut Daemon,
    vm: &str,
    guest_path: &str,
    progress: &mut Progress,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    progress.handle(stage(StageState::Started, 0, None));
    let (code, output) = exec_captured(daemon, vm, foreground_argv(guest_path)).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match code {
        0 => {
            progress.handle(stage(StageState::Done, elapsed_ms, Some(GUEST_LOG)));
            Ok(Outcome::Ran)
        }
        NO_MISE => {
            progress.handle(stage(StageState::Done, elapsed_ms, Some("skipped")));
            no_mise_note();
            Ok(Outcome::NoMise)
        }
        code => {
            progress.finish();
            Err(CliError::failed(
                format!(
                    "mise install failed in the guest (exit code {code}); the end of \
                     {GUEST_LOG}:\n{}",
                    String::from_utf8_lossy(&output).trim_end()
                ),
                Some(
                    "fix the repository's mise config, or skip the install with \
                     `--no-bootstrap`",
                ),
            ))
        }
    }
}

/// Starts the bootstrap in the background (interactive `vm run`) and says where its log is.
pub async fn start(daemon: &mut Daemon, vm: &str, guest_path: &str) -> Result<Outcome, CliError> {
    let (code, output) = exec_captured(daemon, vm, background_argv(guest_path)).await?;
    match code {
        0 => {
            render::note(&format!(
                "installing the repository's mise tools in the background; log: {GUEST_LOG} \
                 in the guest (`tail -f {GUEST_LOG}`)"
            ));
            Ok(Outcome::Ran)
        }
        NO_MISE => {
            no_mise_note();
            Ok(Outcome::NoMise)
        }
        code => Err(CliError::failed(
            format!(
                "cannot start the mise bootstrap in the guest (exit code {code}): {}",
                String::from_utf8_lossy(&output).trim_end()
            ),
            Some("skip it with `--no-bootstrap`"),
        )),
    }
}

fn no_mise_note() {
    render::note(
        "the image has no mise: the repository's tools were not installed (the \
         debian-bookworm image carries mise)",
    );
}

fn stage(state: StageState, elapsed_ms: u64, detail: Option<&str>) -> Event {
    Event::Stage {
        op: String::new(),
        stage: STAGE.to_string(),
        state,
        elapsed_ms,
        detail: detail.map(str::to_string),
    }
}

/// Runs `argv` in the guest, its output (both streams) collected instead of shown.
async fn exec_captured(
    daemon: &mut Daemon,
    vm: &str,
    argv: Vec<String>,
) -> Result<(i32, Vec<u8>), CliError> {
    let params = VmExecParams {
        vm: vm.to_string(),
        argv,
        env: Vec::new(),
        cwd: None,
        stdin: false,
        tty: None,
        user: None,
    };
    let mut output = Vec::new();
    let result = daemon
        .call::<VmExec>(&params, &mut |event| {
            if let Event::Output { data, .. } = event {
                output.extend_from_slice(&data);
            }
        })
        .await?;
    Ok((result.exit_code, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(nat: bool, allow: &[&str], deny_all: bool) -> VmCreateParams {
        VmCreateParams {
            name: None,
            image: None,
            kernel: None,
            vcpus: None,
            memory_mib: None,
            disk_mib: None,
            nat,
            workspace: None,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny_all,
            ..VmCreateParams::default()
        }
    }

    #[test]
    fn the_flag_wins_over_the_config_default() {
        assert!(enabled(false, None));
        assert!(enabled(false, Some(true)));
        assert!(!enabled(false, Some(false)));
        assert!(!enabled(true, Some(true)));
        assert!(!enabled(true, None));
    }

    #[test]
    fn network_is_required_and_the_refusal_names_both_ways_out() {
        assert!(check_network(&params(true, &[], false)).is_ok());
        assert!(check_network(&params(false, &["example.com:443"], false)).is_ok());
        for refused in [params(false, &[], false), params(false, &[], true)] {
            let CliError::Usage { message, hint } = check_network(&refused).unwrap_err() else {
                panic!("not a usage error");
            };
            let hint = hint.unwrap();
            assert!(message.contains(".mise.toml"), "{message}");
            assert!(
                hint.contains("--nat") && hint.contains("--no-bootstrap"),
                "{hint}"
            );
        }
    }

    #[test]
    fn wrap_keeps_the_argv_as_positional_arguments() {
        let argv = wrap(vec!["sh".into(), "-c".into(), "exit 7".into()]);
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert!(argv[2].contains("exec mise exec -- \"$@\""));
        assert!(argv[2].ends_with("exec \"$@\""));
        assert_eq!(argv[3..], ["banger-mise", "sh", "-c", "exit 7"]);
    }

    /// The scripts run under a real `sh` with a fake `mise` on PATH: trust gets the guest
    /// path, install runs there, the log records both, a failure prints the log's tail.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "test: the script runs under a real sh with a fake mise"
    )]
    fn the_script_trusts_then_installs_and_reports_the_tail_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let repo = dir.path().join("repo");
        fs_err::create_dir_all(&bin).unwrap();
        fs_err::create_dir_all(&repo).unwrap();
        let calls = dir.path().join("calls");
        let fake = format!(
            "#!/bin/sh\necho \"$* in $(pwd)\" >>{}\necho \"mise says $1\"\n\
             [ \"$1\" = install ] && [ -n \"$FAIL\" ] && exit 3\nexit 0\n",
            calls.display()
        );
        let mise = bin.join("mise");
        fs_err::write(&mise, fake).unwrap();
        fs_err::set_permissions(&mise, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let log = dir.path().join("log");
        let script = SCRIPT.replace(GUEST_LOG, log.to_str().unwrap());
        let run = |fail: bool| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(&script)
                .arg("banger-mise")
                .arg(&repo)
                .arg("5")
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
            if fail {
                cmd.env("FAIL", "1");
            }
            cmd.output().unwrap()
        };
        let ok = run(false);
        assert_eq!(ok.status.code(), Some(0));
        assert!(ok.stdout.is_empty(), "a success prints nothing");
        let calls_text = fs_err::read_to_string(&calls).unwrap();
        let repo_text = repo.display().to_string();
        assert_eq!(
            calls_text.lines().collect::<Vec<_>>(),
            [
                format!(
                    "trust {repo_text} in {}",
                    std::env::current_dir().unwrap().display()
                ),
                format!("install in {repo_text}"),
            ]
        );
        let log_text = fs_err::read_to_string(&log).unwrap();
        assert!(log_text.contains("+ mise trust") && log_text.contains("mise says install"));
        assert!(log_text.contains("exit code 0"));

        let failed = run(true);
        assert_eq!(failed.status.code(), Some(3));
        let tail = String::from_utf8_lossy(&failed.stdout);
        assert!(tail.contains("mise says install"), "{tail}");
        assert!(tail.contains("exit code 3"), "{tail}");

        // No mise at all: the dedicated code, no log.
        fs_err::remove_file(&log).unwrap();
        let none = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .arg("banger-mise")
            .arg(&repo)
            .arg("5")
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(none.status.code(), Some(NO_MISE));
        assert!(!log.exists());
    }

    #[test]
    fn config_files_are_found_at_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!dir_has_config(dir.path()));
        fs_err::create_dir_all(dir.path().join("sub")).unwrap();
        fs_err::write(dir.path().join("sub/.mise.toml"), "").unwrap();
        assert!(!dir_has_config(dir.path()));
        fs_err::write(dir.path().join(".tool-versions"), "node 20\n").unwrap();
        assert!(dir_has_config(dir.path()));
    }
}
