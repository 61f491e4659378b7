//! One file per command or command group; each holds the command's arguments and help
//! (clap derive), turns them into a request, and renders the answer. This module is the
//! one dispatch `match` from the parsed command line to those files.

pub mod completion;
pub mod config;
pub mod doctor;
pub mod image;
pub mod kernel;
pub mod logs;
pub mod mcp;
pub mod mcp_handler;
pub mod mcp_tools;
pub mod mise_bootstrap;
pub mod ping;
pub mod ssh_config;
pub mod ssh_proxy;
pub mod system;
pub mod vm_cp;
pub mod vm_exec;
pub mod vm_lifecycle;
pub mod vm_list;
pub mod vm_logs;
pub mod vm_policy;
pub mod vm_port;
pub mod vm_run;
pub mod vm_set;
pub mod vm_show;
pub mod vm_snapshot;
pub mod vm_ssh;
pub mod vm_stats;
pub mod vm_targets;
pub mod vm_wait;
pub mod workspace;
pub mod workspace_exec;
pub mod workspace_export;
pub mod workspace_local;

use std::process::ExitCode;

use crate::cli::{
    Command, ConfigCommand, ImageCacheCommand, ImageCommand, KernelCommand, PolicyCommand,
    PortCommand, SystemCommand, VmCommand, WorkspaceCommand,
};
use crate::connect::Ctx;
use crate::errors::CliError;

/// Runs the parsed command.
pub async fn dispatch(ctx: &Ctx, command: Command) -> Result<ExitCode, CliError> {
    let done = |result: Result<(), CliError>| result.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Vm(command) => match command {
            VmCommand::Run(args) => vm_run::run(ctx, args).await,
            VmCommand::Create(args) => done(vm_run::create(ctx, args).await),
            VmCommand::Start(args) => done(vm_lifecycle::start(ctx, args).await),
            VmCommand::Stop(args) => done(vm_lifecycle::stop(ctx, args).await),
            VmCommand::Restart(args) => done(vm_lifecycle::restart(ctx, args).await),
            VmCommand::Kill(args) => done(vm_lifecycle::kill(ctx, args).await),
            VmCommand::Delete(args) => done(vm_lifecycle::delete(ctx, args).await),
            VmCommand::Prune(args) => done(vm_lifecycle::prune(ctx, args).await),
            VmCommand::List(args) => done(vm_list::list(ctx, args).await),
            VmCommand::Show(args) => done(vm_show::show(ctx, args).await),
            VmCommand::Ssh(args) => vm_ssh::ssh(ctx, args).await,
            VmCommand::Exec(args) => vm_exec::exec(ctx, args).await,
            VmCommand::Cp(args) => done(vm_cp::cp(ctx, args).await),
            VmCommand::Logs(args) => done(vm_logs::logs(ctx, args).await),
            VmCommand::Stats(args) => done(vm_stats::stats(ctx, args).await),
            VmCommand::Ports(args) => done(vm_show::ports(ctx, args).await),
            VmCommand::Set(args) => done(vm_set::set(ctx, args).await),
            VmCommand::Snapshot(args) => done(vm_snapshot::snapshot(ctx, args).await),
            VmCommand::Fork(args) => done(vm_snapshot::fork(ctx, args).await),
            VmCommand::Port(PortCommand::Publish(args)) => done(vm_port::publish(ctx, args).await),
            VmCommand::Port(PortCommand::Unpublish(args)) => {
                done(vm_port::unpublish(ctx, args).await)
            }
            VmCommand::Policy(PolicyCommand::Show(args)) => done(vm_policy::show(ctx, args).await),
            VmCommand::Policy(PolicyCommand::Set(args)) => done(vm_policy::set(ctx, args).await),
            VmCommand::Policy(PolicyCommand::Check(args)) => vm_policy::check(ctx, args).await,
            VmCommand::Workspace(WorkspaceCommand::Prepare(args)) => {
                done(workspace::prepare(ctx, args).await)
            }
            VmCommand::Workspace(WorkspaceCommand::Export(args)) => {
                done(workspace_export::export(ctx, args).await)
            }
            VmCommand::Workspace(WorkspaceCommand::Apply(args)) => {
                done(workspace_export::apply(ctx, args).await)
            }
        },
        Command::Ps(args) => done(vm_list::list(ctx, args).await),
        Command::Rm(args) => done(vm_lifecycle::delete(ctx, args).await),
        Command::Logs(args) => done(logs::logs(ctx, args).await),
        Command::Image(command) => done(match command {
            ImageCommand::List(args) => image::list(ctx, args).await,
            ImageCommand::Show(args) => image::show(ctx, args).await,
            ImageCommand::Pull(args) => image::pull(ctx, args).await,
            ImageCommand::Import(args) => image::import(ctx, args).await,
            ImageCommand::Register(args) => image::register(ctx, args).await,
            ImageCommand::Promote(args) => image::promote(ctx, args).await,
            ImageCommand::Delete(args) => image::delete(ctx, args).await,
            ImageCommand::Warm(args) => image::warm(ctx, args).await,
            ImageCommand::Cache(ImageCacheCommand::Prune(args)) => {
                image::cache_prune(ctx, args).await
            }
        }),
        Command::Kernel(command) => done(match command {
            KernelCommand::Catalog(args) => kernel::catalog(ctx, args).await,
            KernelCommand::List(args) => kernel::list(ctx, args).await,
            KernelCommand::Show(args) => kernel::show(ctx, args).await,
            KernelCommand::Pull(args) => kernel::pull(ctx, args).await,
            KernelCommand::Delete(args) => kernel::delete(ctx, args).await,
        }),
        Command::SshConfig(args) => done(ssh_config::run(ctx, args)),
        Command::SshProxy(args) => ssh_proxy::run(ctx, args).await,
        Command::System(command) => done(match command {
            SystemCommand::Install(args) => system::install(ctx, args).await,
            SystemCommand::Status(args) => system::status(ctx, args).await,
            SystemCommand::Restart(args) => system::restart(ctx, args).await,
            SystemCommand::Uninstall(args) => system::uninstall(ctx, args).await,
            SystemCommand::Supervise(args) => system::supervise(ctx, args),
        }),
        Command::Config(ConfigCommand::Show(args)) => done(config::show(ctx, args)),
        Command::Config(ConfigCommand::Path(args)) => done(config::path(ctx, args)),
        Command::Doctor(args) => doctor::doctor(ctx, args).await,
        Command::Health(args) => done(ping::health(ctx, args).await),
        Command::Ping(args) => done(ping::ping(ctx, args).await),
        Command::Version(args) => done(ping::version(ctx, args).await),
        Command::Completion(args) => done(completion::completion(args)),
        Command::Mcp(args) => mcp::mcp(ctx, args).await,
    }
}

/// The exit code for a guest command's status. Codes outside 0..=255 (a negative code
/// for a signal, say) cannot be an exit status; they become 1 so that failure stays
/// failure.
pub fn guest_exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
