//! `vm create` and `vm run`. Both send `vm.create` (stages rendered as progress); `run`
//! then imports a workspace when given a path, and runs a command (exiting with its code),
//! opens an interactive ssh session, or, with `-d`, prints how to reach the VM. With
//! `--rm` the VM is deleted afterwards, also when the command fails or Ctrl-C is pressed.

use std::path::PathBuf;
use std::process::ExitCode;

use banger_api::methods::{VmCreate, VmCreateParams, VmDelete, VmDeleteParams, VmExecParams};
use banger_api::types::VmInfo;
use banger_api::{Event, StageState};
use clap::Args;

use crate::candidates;
use crate::cli::JsonFlag;
use crate::commands::workspace_local::{self, Checked, WorkspaceArgs};
use crate::commands::{guest_exit, mise_bootstrap, vm_exec, vm_ssh};
use crate::config;
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::guest_setup;
use crate::progress::Progress;
use crate::render;
use crate::values;

/// What a new VM looks like; shared by `vm create` and `vm run`.
#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Name of the new VM; one is generated when omitted
    #[arg(long, value_name = "NAME", value_parser = values::vm_name)]
    pub name: Option<String>,
    /// Image to boot (default: the catalog's default, see `banger image list --catalog`)
    #[arg(long, value_name = "IMAGE", add = candidates::image_names())]
    pub image: Option<String>,
    /// Kernel to boot (default: the image's kernel)
    #[arg(long, value_name = "KERNEL", add = candidates::kernel_names())]
    pub kernel: Option<String>,
    /// Number of virtual CPUs, at least 1
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub vcpu: Option<u32>,
    /// Memory, e.g. `512MiB` or `2GiB`; a bare number is MiB
    #[arg(long, value_name = "SIZE", value_parser = values::memory_mib)]
    pub memory: Option<u64>,
    /// Root disk size, e.g. `8GiB`; a bare number is MiB
    #[arg(long, value_name = "SIZE", value_parser = values::disk_mib)]
    pub disk: Option<u64>,
    /// Give the VM outbound network access through NAT
    #[arg(long)]
    pub nat: bool,
    /// Allow only this destination out (repeatable): a name, `*.example.com`, an IPv4
    /// address or CIDR, optionally `:PORT`; everything else is dropped (implies NAT)
    #[arg(long, value_name = "HOST[:PORT]", value_parser = values::allow_rule)]
    pub allow: Vec<String>,
    /// Let the VM reach nothing at all (no DNS either); the host still reaches it
    #[arg(long, conflicts_with_all = ["allow", "nat"])]
    pub deny_all: bool,
    /// Boot the guest even when a warm template could be restored (see `banger image warm`)
    #[arg(long)]
    pub cold: bool,
    /// Do not write your git identity (user.name, user.email) into the guest's git config
    #[arg(long)]
    pub no_git_identity: bool,
    /// Trust the host's extra CA certificates in the guest (default PATH:
    /// /usr/local/share/ca-certificates, or host_ca_path in the config file)
    #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true, conflicts_with = "no_host_ca")]
    pub host_ca: Option<Option<PathBuf>>,
    /// Do not add the host's CA certificates, whatever the config file says
    #[arg(long)]
    pub no_host_ca: bool,
    /// Publish a guest port on the host (repeatable): `[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`,
    /// on 127.0.0.1 unless HOST_IP is given; kept across stop/start
    #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = values::port_spec)]
    pub publish: Vec<String>,
}

impl SpecArgs {
    /// What the command line says, for merging with the config file.
    pub fn flags(&self) -> config::Flags {
        config::Flags {
            image: self.image.clone(),
            kernel: self.kernel.clone(),
            vcpus: self.vcpu,
            memory_mib: self.memory,
            disk_mib: self.disk,
            nat: self.nat,
            allow: self.allow.clone(),
            deny_all: self.deny_all,
            guest_path: None,
            bootstrap: None,
            git_identity: self.no_git_identity.then_some(false),
            host_ca: self.host_ca.clone(),
            no_host_ca: self.no_host_ca,
        }
    }

    fn params(&self, settings: &config::Settings) -> VmCreateParams {
        VmCreateParams {
            name: self.name.clone(),
            image: settings.image.value.clone(),
            kernel: settings.kernel.value.clone(),
            vcpus: settings.vcpus.value,
            memory_mib: settings.memory_mib.value,
            disk_mib: settings.disk_mib.value,
            nat: settings.nat.value,
            workspace: None,
            allow: settings.policy.value.allow.clone(),
            deny_all: settings.policy.value.deny_all,
            publish: self.publish.clone(),
            cold: self.cold,
        }
    }
}

/// Create and boot a VM
#[derive(Debug, Args)]
#[command(
    long_about = "Create a VM and boot it, showing each stage as it runs. The VM keeps \
running until `banger vm stop`; its disk stays until `banger vm delete`.

Unlike `vm run`, nothing runs in the guest and no workspace is imported: use `vm exec` or \
`vm ssh` next.",
    after_help = "\
Examples:
  banger vm create                                  Default image, generated name
  banger vm create --name web --memory 2GiB --vcpu 2
  banger vm create --name build --image debian-bookworm --disk 20GiB --nat
  banger vm create --name agent --allow pypi.org:443 --allow '*.pythonhosted.org:443'
  banger vm create --name sealed --deny-all         Reaches nothing; vm exec still works
  banger vm create --name web -p 8080:80            127.0.0.1:8080 on the host reaches the guest's 80
  banger vm create --json | jq -r .name"
)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Create a VM, run a command in it, exit with the command's code
#[derive(Debug, Args)]
#[command(
    long_about = "Create a VM, optionally copy a git repository into it, and run a \
command there; banger exits with the command's exit code. The command after `--` is passed \
as a list of arguments, without a shell: write `-- sh -c '...'` for shell syntax.

PATH is a git working tree or any directory inside one. What is copied: the files git \
tracks, as they are in the working tree (uncommitted edits included, deleted files absent), \
the repository's `.git` (so git works in the guest) and the checked-out content of \
submodules; untracked files only with `--include-untracked`; ignored files never. The copy \
is built on the host before the boot as a second disk, mounted at `--guest-path` \
(/root/repo); the command runs in the directory matching PATH there. The host repository is \
only read: git runs with no hooks, fsmonitor or filters. A PATH that is not in a git \
working tree is refused before any VM is created. `--dry-run` prints the exact list \
without a daemon.

When the repository declares mise tools (`.mise.toml`, `mise.toml` or `.tool-versions` \
at its root), the guest trusts the copy and runs `mise install` first (output in \
/var/log/banger-mise.log in the guest; a failed install fails the run with its tail), and \
the command runs as `mise exec -- COMMAND`. Installing needs the network: without `--nat` \
(or `--allow`) such a run is refused before any VM is created; `--no-bootstrap` skips it \
all. With `-d` the install finishes before banger returns; an interactive session starts \
at once while it finishes in the background. Images without mise (`tiny`) skip it with a \
note.

Without a command, opens an interactive ssh session instead. With `-d`, leaves the VM \
running and prints how to reach it. With `--rm`, deletes the VM when the command or \
session ends, also when it fails or Ctrl-C is pressed.",
    after_help = "\
Examples:
  banger vm run ./repo -- make test     Copy ./repo in, run `make test` in /root/repo
  banger vm run --rm ./repo/sub -- cargo test   Runs in /root/repo/sub
  banger vm run --include-untracked ./repo -- ls   Untracked files too (never ignored ones)
  banger vm run --dry-run ./repo        List what would be copied; no VM, no daemon
  banger vm run --nat ./repo -- make    Installs the repo's mise tools first, runs with them
  banger vm run --no-bootstrap ./repo -- ls   Skip the mise install (no network needed)
  banger vm run --rm -- uname -a        One command in a throwaway VM
  banger vm run --rm -- sh -c 'exit 42' Exits with 42
  banger vm run --name dev ./repo       Copy ./repo in and open a shell
  banger vm run -d --name web           Boot and return; reach it with `banger vm ssh web`
  banger vm run -d --name web -p 8080:80   Host 127.0.0.1:8080 forwards to the guest's port 80
  banger vm run --rm --allow github.com:443 -- git ls-remote https://github.com/rust-lang/rust
                                        Only github.com on 443 is reachable (and resolvable)"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Delete the VM when the command or session ends
    #[arg(long, conflicts_with = "detach")]
    pub rm: bool,
    /// Leave the VM running and print how to reach it (no command, no session)
    #[arg(short = 'd', long, conflicts_with = "command")]
    pub detach: bool,
    /// Git repository (or a directory inside one) to copy in; the command runs in the
    /// matching directory of the copy
    #[arg(value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub path: Option<PathBuf>,
    /// Do not forward stdin to the command (by default a file or pipe on stdin is its
    /// stdin)
    #[arg(short = 'n', long, conflicts_with = "interactive")]
    pub no_stdin: bool,
    /// Forward stdin even when it is a terminal
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run the command on a terminal in the guest (with -i: an interactive session)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Working directory in the guest for the command (default: the workspace's copy
    /// of PATH, else root's home)
    #[arg(
        short = 'w',
        long = "cwd",
        visible_alias = "workdir",
        value_name = "DIR"
    )]
    pub cwd: Option<String>,
    #[command(flatten)]
    pub env: vm_exec::EnvArgs,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    /// Do not install the repository's mise tools (`.mise.toml`, `mise.toml`,
    /// `.tool-versions`); by default they are installed, which needs `--nat` or `--allow`
    #[arg(long)]
    pub no_bootstrap: bool,
    /// With --dry-run: the listing as one JSON object
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Command and arguments to run in the guest, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `vm create`.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> Result<(), CliError> {
    let settings = config::settings(ctx, &args.spec.flags())?;
    let setup = guest_setup::prepare(ctx, &settings, None).await?;
    let mut daemon = ctx.connect().await?;
    let vm = create_vm(ctx, &mut daemon, &args.spec.params(&settings), &mut None).await?;
    guest_setup::apply(&mut daemon, &vm.name, &setup).await?;
    render::records::print_vm(args.output.json, &vm, summary)
}

/// `vm run`.
pub async fn run(ctx: &Ctx, mut args: RunArgs) -> Result<ExitCode, CliError> {
    if args.path.is_none() && args.workspace.any_given() {
        return Err(CliError::usage(
            "--guest-path, --mode, --include-untracked and --dry-run need a PATH",
            Some("give the repository to copy: `banger vm run ./repo -- make test`"),
        ));
    }
    if let Some(path) = &args.path {
        bare_word_check(path)?;
    }
    let mut flags = args.spec.flags();
    flags.guest_path = args.workspace.guest_path.clone();
    let settings = config::settings(ctx, &flags)?;
    args.workspace.guest_path = Some(settings.guest_path.value.clone());
    // Every check that can fail without a guest runs before `vm.create`.
    let checked = match &args.path {
        Some(path) => Some(workspace_local::check(path, &args.workspace).await?),
        None => None,
    };
    if let (true, Some(checked)) = (args.workspace.dry_run, &checked) {
        workspace_local::dry_run(checked, &args.workspace, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let setup = guest_setup::prepare(ctx, &settings, args.path.as_deref()).await?;
    let mut params = args.spec.params(&settings);
    if let Some(checked) = &checked {
        workspace_local::notice_skipped(&checked.plan);
        params.workspace = Some(checked.api_source(&args.workspace));
    }
    // --no-bootstrap wins over the config file's `bootstrap`.
    let bootstrap = mise_bootstrap::enabled(args.no_bootstrap, Some(settings.bootstrap.value))
        && checked
            .as_ref()
            .is_some_and(|c| mise_bootstrap::plan_has_config(&c.plan));
    if bootstrap {
        mise_bootstrap::check_network(&params)?;
    }
    let mut daemon = ctx.connect().await?;
    if !args.rm {
        let vm = create_vm(ctx, &mut daemon, &params, &mut None).await?;
        guest_setup::apply(&mut daemon, &vm.name, &setup).await?;
        return use_vm(ctx, &mut daemon, &vm, checked.as_ref(), bootstrap, &args).await;
    }

    // --rm: the VM goes away however this ends, Ctrl-C included.
    let mut reserved = None;
    let created = tokio::select! {
        vm = create_vm(ctx, &mut daemon, &params, &mut reserved) => vm,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    let vm = match created {
        Ok(vm) => vm,
        Err(err) => {
            // Interrupted mid-creation: the VM is ours to delete once the daemon has
            // announced its reserved name (the delete waits for the create to end). Before
            // that, a given name may still belong to another VM, so nothing is deleted.
            if matches!(err, CliError::Interrupted) {
                match &reserved {
                    Some(name) => remove(ctx, name).await,
                    None => render::note(
                        "the VM being created may be left behind; `banger vm list` shows it",
                    ),
                }
            }
            return Err(err);
        }
    };
    let outcome = tokio::select! {
        outcome = async {
            guest_setup::apply(&mut daemon, &vm.name, &setup).await?;
            use_vm(ctx, &mut daemon, &vm, checked.as_ref(), bootstrap, &args).await
        } => outcome,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    };
    remove(ctx, &vm.name).await;
    outcome
}

/// Everything `vm run` does with the VM once it exists.
async fn use_vm(
    ctx: &Ctx,
    daemon: &mut Daemon,
    vm: &VmInfo,
    checked: Option<&Checked>,
    bootstrap: bool,
    args: &RunArgs,
) -> Result<ExitCode, CliError> {
    // The workspace arrived as a disk at boot; the command runs in PATH's copy.
    let cwd = args
        .cwd
        .clone()
        .or_else(|| checked.map(|c| c.guest_cwd(args.workspace.guest_path())));
    let guest_path = args.workspace.guest_path();
    let mut wrap = false;
    if bootstrap && (args.detach || !args.command.is_empty()) {
        let mut progress = Progress::new(&ctx.term);
        wrap = mise_bootstrap::run(daemon, &vm.name, guest_path, &mut progress).await?
            == mise_bootstrap::Outcome::Ran;
    }
    if args.detach {
        // Ready means ready: with sshd in the image, return once ssh answers.
        vm_ssh::wait_for_ssh(ctx, daemon, &vm.name, DETACHED_SSH_WAIT).await;
        render::stdout(&detached(vm))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.command.is_empty() {
        if bootstrap {
            mise_bootstrap::start(daemon, &vm.name, guest_path).await?;
        }
        let target = vm_ssh::target(ctx, daemon, &vm.name).await?;
        return vm_ssh::session(&target, &[]).await;
    }
    let env = args.env.resolve(ctx)?;
    let mut progress = Progress::new(&ctx.term);
    let params = VmExecParams {
        vm: vm.name.clone(),
        argv: if wrap {
            mise_bootstrap::wrap(args.command.clone())
        } else {
            args.command.clone()
        },
        env,
        cwd,
        stdin: vm_exec::forwards_stdin(ctx, args.interactive, args.no_stdin),
        tty: args.tty.then(crate::terminal::current_size),
        user: None,
    };
    let output = vm_exec::run_exec(daemon, &params, &mut progress).await?;
    Ok(guest_exit(output.exit_code))
}

/// How long `vm run -d` waits for the guest's sshd before it says ssh is still coming up.
const DETACHED_SSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends `vm.create` with progress; `reserved` gets the VM's name as soon as the daemon
/// reports it reserved, so an interrupted `vm run --rm` knows what to delete.
async fn create_vm(
    ctx: &Ctx,
    daemon: &mut Daemon,
    params: &VmCreateParams,
    reserved: &mut Option<String>,
) -> Result<VmInfo, CliError> {
    let started = std::time::Instant::now();
    let mut progress = Progress::new(&ctx.term);
    let vm = daemon
        .call::<VmCreate>(params, &mut |event| {
            if let Event::Stage {
                stage,
                state: StageState::Done,
                detail: Some(name),
                ..
            } = &event
                && stage == banger_model::progress::RESERVE_NAME_STAGE
            {
                *reserved = Some(name.clone());
            }
            progress.handle(event);
        })
        .await;
    progress.finish();
    if let Ok(vm) = &vm {
        render::note(&format!(
            "{} ready in {:.1}s",
            vm.name,
            started.elapsed().as_secs_f64()
        ));
    }
    vm
}

/// `--rm`: deletes the VM on a fresh connection (the old one may be mid-request after an
/// interrupt). A failure here is reported but does not replace the command's outcome.
async fn remove(ctx: &Ctx, name: &str) {
    let result = async {
        let mut daemon = ctx.connect().await?;
        daemon
            .ask::<VmDelete>(&VmDeleteParams {
                vm: name.to_string(),
                force: true,
            })
            .await
    }
    .await;
    if let Err(err) = result {
        render::note(&format!(
            "could not delete {name} (--rm); delete it with `banger vm delete --force {name}`"
        ));
        crate::errors::print(&err);
    }
}

/// `vm run --rm uname` (a Docker habit): a bare word that names nothing on disk is a
/// command put before `--`, not a repository. A real path (`./repo`, `repo` that exists,
/// anything with a `/`) goes on to the workspace checks.
fn bare_word_check(path: &std::path::Path) -> Result<(), CliError> {
    let text = path.to_string_lossy();
    if text.contains('/') || text.starts_with('.') || path.exists() {
        return Ok(());
    }
    Err(CliError::usage(
        format!("{text:?} is not a path here; the command to run goes after `--`"),
        Some(&format!(
            "banger vm run --rm -- {text}    (a PATH before `--` is a repository to copy in)"
        )),
    ))
}

/// One line about a VM after a lifecycle command: `web: running (10.77.0.2)`.
pub fn summary(vm: &VmInfo) -> String {
    match &vm.address {
        Some(address) => format!("{}: {} ({address})\n", vm.name, vm.state),
        None => format!("{}: {}\n", vm.name, vm.state),
    }
}

/// What `vm run -d` prints.
fn detached(vm: &VmInfo) -> String {
    let name = &vm.name;
    format!(
        "{}\
         reach it with:\n  \
         banger vm ssh {name}\n  \
         banger vm exec {name} -- <command>\n\
         stop it with `banger vm stop {name}`, remove it with `banger vm delete --force {name}`\n",
        summary(vm)
    )
}
