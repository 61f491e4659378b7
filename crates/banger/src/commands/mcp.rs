//! `banger mcp`: serves the Model Context Protocol on stdin/stdout so that an agent (any
//! MCP client over stdio) can run sandboxes, or with `--print-config` prints the snippet
//! that registers it. The protocol is `banger-mcp`; the tools are `mcp_tools` and
//! `mcp_handler`. stdout carries only protocol messages; the log goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use banger_mcp::config::{self, ConfigFormat};
use banger_mcp::policy::{Policy, Profile};
use banger_mcp::server::{self, ServerInfo};
use clap::Args;

use crate::commands::mcp_handler::BangerTools;
use crate::connect::{self, Ctx};
use crate::errors::CliError;
use crate::render;

/// The largest JSON-RPC message accepted (one line).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Serve sandboxes to AI agents over the Model Context Protocol (stdio)
#[derive(Debug, Args)]
#[command(
    long_about = "Serve banger to an AI agent over the Model Context Protocol: JSON-RPC 2.0 \
on stdin/stdout, as MCP clients (Claude Code, Codex, ...) start a stdio server. The agent \
gets tools with JSON Schemas and structured results: vm_run (a fresh VM, optionally with a \
git repository copied in, one command: exit code, stdout, stderr), vm_create, vm_fork (new \
VMs resumed from a running one in about a second), vm_exec, vm_list, vm_delete, \
workspace_prepare, file_read and file_write. vm_run and vm_create take a network \
allow-list (`allow`: [\"pypi.org:443\", ...], or `deny_all`), enforced on the host. Output is capped per \
stream (--max-output) and the result says when it was cut. Cancelling a call stops the \
guest command; a VM vm_run created is deleted (unless kept), also when the client goes away.

Profiles limit the agent: `read-only` lists VMs and reads files; `run` (the default) creates \
VMs and acts only on the VMs this session created; `full` acts on every VM. Repositories \
may be imported only from under an --allow-repo directory (default: the directory \
`banger mcp` was started in). --max-vms caps the VMs a session has at once. Every call is \
logged to stderr with the client's name.

workspace_export returns the guest's changes as a patch (at least 1 MiB of it, more with \
a larger --max-output). The run profile forks only its own VMs (and the snapshots those \
forks made); forks keep their source's network policy.",
    after_help = "\
Examples:
  banger mcp --print-config claude          Snippet for Claude Code (.mcp.json / claude mcp add)
  banger mcp --print-config codex --profile full   For ~/.codex/config.toml
  claude mcp add banger -- banger mcp --allow-repo ~/src
  banger mcp --profile read-only            Serve on stdio: list VMs and read files only
  banger mcp --max-vms 2 --max-output 16384"
)]
pub struct McpArgs {
    /// What the agent may do: `read-only`, `run` (only VMs it created) or `full`
    #[arg(long, value_name = "PROFILE", default_value = "run", value_parser = ["read-only", "run", "full"])]
    pub profile: String,
    /// A host directory whose repositories may be imported (repeatable; default: the
    /// current directory)
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub allow_repo: Vec<PathBuf>,
    /// VMs the session may have at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_vms: u64,
    /// Bytes kept of each output stream (stdout, stderr) of a command
    #[arg(long, value_name = "BYTES", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub max_output: u64,
    /// Print the config snippet that registers `banger mcp` with a client, and exit
    #[arg(long, value_name = "CLIENT", value_parser = ["claude", "codex", "generic"])]
    pub print_config: Option<String>,
}

/// `banger mcp`.
pub async fn mcp(ctx: &Ctx, args: McpArgs) -> Result<ExitCode, CliError> {
    let profile = Profile::parse(&args.profile).unwrap_or(Profile::Run);
    let mut allow_repos = Vec::new();
    for path in &args.allow_repo {
        allow_repos.push(connect::absolute(path).map_err(|_| {
            CliError::usage(
                format!("--allow-repo {}: no such directory", path.display()),
                Some("give an existing directory"),
            )
        })?);
    }
    if let Some(client) = &args.print_config {
        let format = ConfigFormat::parse(client).unwrap_or(ConfigFormat::Generic);
        let command = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "banger".into());
        let mut extra = vec!["--profile".to_string(), profile.as_str().to_string()];
        for path in &allow_repos {
            extra.push("--allow-repo".into());
            extra.push(path.display().to_string());
        }
        if let Some(note) = config::note(format, &command, &extra) {
            render::note(&note);
        }
        render::stdout(&config::snippet(format, &command, &extra))?;
        return Ok(ExitCode::SUCCESS);
    }
    if allow_repos.is_empty() {
        allow_repos.push(connect::absolute(std::path::Path::new("."))?);
    }
    let policy = Policy {
        profile,
        allow_repos,
        max_vms: usize::try_from(args.max_vms).unwrap_or(4),
    };
    let max_output = usize::try_from(args.max_output).unwrap_or(65536);
    let tools = Arc::new(BangerTools::new(ctx.clone(), policy, max_output));
    let info = ServerInfo {
        name: "banger".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        instructions: "banger runs commands in disposable Linux microVMs. vm_run is the one-shot \
path (fresh VM, optional git repository copied in, one command, exit code and output). \
For several steps: vm_create, then vm_exec / file_read / file_write / workspace_prepare, \
then vm_delete. vm_fork copies a prepared running VM in about a second. `allow` limits \
what a new VM may reach on the network."
            .into(),
        max_message_bytes: MAX_MESSAGE_BYTES,
        shutdown_grace: Duration::from_secs(120),
    };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    tokio::task::LocalSet::new()
        .run_until(server::serve(stdin, tokio::io::stdout(), tools, info))
        .await
        .map_err(|err| CliError::Local(anyhow::Error::new(err).context("mcp: stdio failed")))?;
    Ok(ExitCode::SUCCESS)
}
