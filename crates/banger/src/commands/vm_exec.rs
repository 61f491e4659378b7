//! `vm exec`: runs a command in a running VM through the guest agent, streaming its output
//! to this process's stdout and stderr, and exits with the command's exit code.

use std::process::ExitCode;

use banger_api::methods::{ExecOutput, VmExec, VmExecParams};
use clap::Args;

use crate::cli::VmArg;
use crate::commands::{guest_exit, mise_bootstrap, vm_wait, workspace_exec};
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::progress::Progress;
use crate::{render, terminal, values};

/// Run a command in a running VM and exit with its code
#[derive(Debug, Args)]
#[command(
    long_about = "Run a command in a running VM through the guest agent. Its stdout and \
stderr stream to banger's stdout and stderr as they come, and banger exits with the \
command's exit code. The arguments after `--` arrive as a list, without a shell: write \
`-- sh -c '...'` for pipes or variables.

banger's stdin becomes the command's stdin when it is a file or a pipe (the command sees \
end of file where the input ends); a terminal is forwarded only with `-i`, and `-n` gives \
the command /dev/null whatever stdin is. `-t` runs the command on a terminal in the guest \
(through the agent, no ssh): with `-it` your keys go to it as typed, Ctrl-C included, \
and a window resize follows; its output arrives on stdout only. `-it` is what an \
interactive shell needs: `vm exec web -- sh` without it reads no input and exits.

A command that cannot be found exits with 127, one that cannot be executed with 126, as \
in a shell; a missing `-w` directory or `-u` user is an error that names it. `-e K=V` \
(repeatable) and `--env-file FILE` (KEY=VALUE lines; later ones and `-e` win) set \
variables; `-u USER` runs as a user of the guest's /etc/passwd (name or uid) with its \
home as the default directory.

A VM that is still booting is waited for (a stage line says so) up to `--timeout` seconds.

When the VM has a workspace (`vm run PATH`, `vm workspace prepare`), the command runs in \
it (`--cwd` still wins), and banger warns when the host repository's HEAD or tracked files \
changed since it was prepared; `--auto-prepare` copies it again first. When the repository \
declares mise tools and the guest has mise, the command runs as `mise exec -- COMMAND`, so \
they are on PATH (the exit code is the command's).

`vm ssh` opens an interactive session instead; `vm run` creates a VM and runs the command \
in one step.",
    after_help = "\
Examples:
  banger vm exec web -- uname -a
  banger vm exec web -- sh -c 'echo $HOME; exit 3'   Exits with 3
  banger vm exec -it web -- bash                   An interactive shell
  banger vm exec web -w /root/repo -e CI=1 -- make test
  banger vm exec web -u alice --env-file .env -- env
  banger vm exec web -- sh -c 'cat > /tmp/notes.txt' < notes.txt
  tar -c src | banger vm exec web -- tar -x -C /root
  banger vm exec -n web -- long-running-job           Leave stdin alone
  banger vm exec web --auto-prepare -- make test     Sync the workspace, then run"
)]
pub struct ExecArgs {
    #[command(flatten)]
    pub vm: VmArg,
    #[command(flatten)]
    pub env: EnvArgs,
    /// Working directory in the guest (an error names it when it does not exist)
    #[arg(
        short = 'w',
        long = "cwd",
        visible_alias = "workdir",
        value_name = "DIR"
    )]
    pub cwd: Option<String>,
    /// Forward stdin even when it is a terminal
    #[arg(short = 'i', long, conflicts_with = "no_stdin")]
    pub interactive: bool,
    /// Run the command on a terminal in the guest (with -i: an interactive session)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run as this guest user (name or uid from its /etc/passwd) instead of root
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Do not forward stdin: the command reads /dev/null
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// Copy the VM's workspace again first when the host repository changed
    #[arg(long)]
    pub auto_prepare: bool,
    /// Seconds to wait for a VM that is still booting
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Command and arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The command's environment: `-e` and `--env-file`, shared by `vm exec` and `vm run`.
#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// Environment variable for the command, as KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = values::env_pair)]
    pub env: Vec<(String, String)>,
    /// Read variables from FILE (KEY=VALUE lines, `#` comments; a bare KEY takes banger's
    /// own value); `-e` wins over it
    #[arg(long = "env-file", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub env_file: Vec<std::path::PathBuf>,
}

impl EnvArgs {
    /// The variables, env files first (in order), then `-e`; a later one wins.
    pub fn resolve(&self, ctx: &Ctx) -> Result<Vec<(String, String)>, CliError> {
        let mut merged: Vec<(String, String)> = Vec::new();
        let mut add = |key: String, value: String| {
            merged.retain(|(known, _)| *known != key);
            merged.push((key, value));
        };
        for path in &self.env_file {
            let text = std::fs::read_to_string(path).map_err(|error| {
                CliError::failed(
                    format!("cannot read the env file {}: {error}", path.display()),
                    None,
                )
            })?;
            let variables = crate::env_file::parse(&text, |key| ctx.env(key))
                .map_err(|error| CliError::failed(format!("{}: {error}", path.display()), None))?;
            for (key, value) in variables {
                add(key, value);
            }
        }
        for (key, value) in &self.env {
            add(key.clone(), value.clone());
        }
        Ok(merged)
    }
}

/// `vm exec`.
pub async fn exec(ctx: &Ctx, args: ExecArgs) -> Result<ExitCode, CliError> {
    let env = args.env.resolve(ctx)?;
    let mut daemon = ctx.connect().await?;
    let info = vm_wait::until_running(
        ctx,
        &mut daemon,
        &args.vm.vm,
        vm_wait::timeout(args.timeout),
    )
    .await?;
    let workspace = workspace_exec::before_exec(ctx, &mut daemon, info, args.auto_prepare).await?;
    let mut progress = Progress::new(&ctx.term);
    let stdin = forwards_stdin(ctx, args.interactive, args.no_stdin);
    if let Some(hint) = shell_hint(ctx.term.stdin, stdin, args.tty, &args.command) {
        render::note(&hint);
    }
    // A workspace that declares mise tools runs its commands with them on PATH.
    let mise = workspace
        .as_ref()
        .is_some_and(|w| mise_bootstrap::dir_has_config(std::path::Path::new(&w.source)));
    let params = VmExecParams {
        vm: args.vm.vm,
        argv: if mise {
            mise_bootstrap::wrap(args.command)
        } else {
            args.command
        },
        env: with_term(ctx, env, args.tty),
        cwd: args.cwd.or(workspace.map(|w| w.guest_path)),
        stdin,
        tty: args.tty.then(terminal::current_size),
        user: args.user,
    };
    let output = run_exec(&mut daemon, &params, &mut progress).await?;
    Ok(guest_exit(output.exit_code))
}

/// Shells that read commands from stdin when run without arguments.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "fish", "ksh", "busybox"];

/// The note for `vm exec VM -- sh` typed on a terminal without `-i`/`-t`: the shell gets
/// no input and exits at once, as with `docker exec`, which is rarely what was meant.
pub fn shell_hint(
    stdin_is_terminal: bool,
    forwards_stdin: bool,
    tty: bool,
    command: &[String],
) -> Option<String> {
    let [program] = command else {
        return None;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    (stdin_is_terminal && !forwards_stdin && !tty && SHELLS.contains(&name)).then(|| {
        format!("{program} gets no input without -i and exits; use `-it` for an interactive shell")
    })
}

/// With a terminal, the guest gets the user's `TERM` (unless `-e` set one), so programs
/// draw for the terminal they really run on.
fn with_term(ctx: &Ctx, mut env: Vec<(String, String)>, tty: bool) -> Vec<(String, String)> {
    if tty
        && !env.iter().any(|(key, _)| key == "TERM")
        && let Some(term) = ctx.env("TERM")
    {
        env.push(("TERM".to_owned(), term));
    }
    env
}

/// Whether a guest command gets banger's stdin: a file or pipe always, a terminal only
/// when asked (`-i`), never with `-n`.
pub fn forwards_stdin(ctx: &Ctx, interactive: bool, no_stdin: bool) -> bool {
    !no_stdin && (interactive || !ctx.term.stdin)
}

/// Sends `vm.exec`, streaming this process's stdin when `params.stdin` says so. With a
/// terminal and a terminal's stdin, the user's terminal is raw for the call and its
/// resizes follow.
pub async fn run_exec(
    daemon: &mut Daemon,
    params: &VmExecParams,
    progress: &mut Progress,
) -> Result<ExecOutput, CliError> {
    if params.tty.is_some() && params.stdin {
        let (sizes, resizes) = tokio::sync::mpsc::unbounded_channel();
        terminal::watch_size_changes(sizes);
        let raw = terminal::RawMode::enable();
        let output = daemon
            .call_with_terminal::<VmExec, _>(
                params,
                tokio::io::stdin(),
                resizes,
                &mut progress.sink(),
            )
            .await;
        drop(raw);
        output
    } else if params.stdin {
        daemon
            .call_with_input::<VmExec, _>(params, tokio::io::stdin(), &mut progress.sink())
            .await
    } else {
        daemon.call::<VmExec>(params, &mut progress.sink()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_shell_on_a_terminal_without_it_gets_a_hint() {
        let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        // (stdin is a terminal, stdin forwarded, tty, command, hint expected)
        let table = [
            (true, false, false, argv(&["sh"]), true),
            (true, false, false, argv(&["/bin/bash"]), true),
            (true, true, true, argv(&["sh"]), false),
            (true, true, false, argv(&["sh"]), false),
            (true, false, true, argv(&["sh"]), false),
            (false, true, false, argv(&["sh"]), false),
            (true, false, false, argv(&["sh", "-c", "true"]), false),
            (true, false, false, argv(&["ls"]), false),
        ];
        for (terminal, forwarded, tty, command, want) in table {
            assert_eq!(
                shell_hint(terminal, forwarded, tty, &command).is_some(),
                want,
                "{command:?} terminal={terminal} forwarded={forwarded} tty={tty}"
            );
        }
        assert_eq!(
            shell_hint(true, false, false, &argv(&["sh"])).unwrap(),
            "sh gets no input without -i and exits; use `-it` for an interactive shell"
        );
    }
}
