//! The `banger` command: answers shell-completion requests, parses the command line, runs
//! the chosen command on a small tokio runtime, and maps the outcome to an exit code
//! (the guest command's code for `vm run`/`vm exec`, 1 for banger errors, 2 for usage
//! errors). Everything else lives in the modules below.

mod candidates;
mod cli;
mod commands;
mod config;
mod connect;
mod env_file;
mod errors;
mod guest_setup;
mod progress;
mod render;
mod system;
mod terminal;
mod values;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Must run before anything touches stdout: with `COMPLETE=<shell>` set, this prints
    // completions (or the registration script) and exits.
    clap_complete::CompleteEnv::with_factory(cli::command).complete();

    let cli = cli::Cli::parse();
    let ctx = connect::Ctx::from_process();
    if let Ok(log) = ctx.daemon_log() {
        errors::set_daemon_log(log);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let err = errors::CliError::Local(anyhow::Error::new(err).context("cannot start"));
            errors::print(&err);
            return err.exit_code();
        }
    };
    let outcome = runtime.block_on(commands::dispatch(&ctx, cli.command));
    // Do not wait for stray tasks (a followed log stream, a completion probe).
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(err) => {
            errors::print(&err);
            err.exit_code()
        }
    }
}
