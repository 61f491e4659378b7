//! The command tree: the top-level `banger` command and the command groups (`vm`,
//! `image`, `kernel`, `system`). Each leaf's arguments, help text and examples live with
//! its implementation in `commands/`, so one file holds everything about one command.
//! Parsing here is pure: values are checked by the parsers in `values`, nothing touches
//! the daemon or the disk.

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::commands::{
    completion, config, doctor, image, kernel, logs, mcp, ping, ssh_config, ssh_proxy, system,
    vm_cp, vm_exec, vm_lifecycle, vm_list, vm_logs, vm_policy, vm_port, vm_run, vm_set, vm_show,
    vm_snapshot, vm_ssh, vm_stats, workspace, workspace_export,
};

const ABOUT: &str = "Disposable Linux sandboxes in microVMs";

const LONG_ABOUT: &str = "\
banger gives you disposable Linux sandboxes in microVMs. `banger vm run ./repo -- make test` \
boots a guest from a golden image, imports the repository, runs the command and exits with \
its exit code.

The `banger` command talks to the `bangerd` daemon over a Unix socket. `sudo banger system \
install` runs it and its root helper (`banger-helper`, which sets up guest networking) as \
services; `bangerd &` starts the daemon alone by hand (its VMs then have no network). The \
socket is `$XDG_RUNTIME_DIR/banger/bangerd.sock`, or `BANGER_SOCKET`. `banger doctor` \
checks this host without the daemon; `banger logs --op ID` prints what the daemon logged \
for the operation an error names.

Exit codes: the guest command's exit code for `vm run` and `vm exec`, 1 when banger itself \
fails, 2 for usage errors.";

const EXAMPLES: &str = "\
Examples:
  banger vm run ./repo -- make test     Run the tests of ./repo in a fresh VM
  banger vm run --rm -- uname -a        Run one command, then delete the VM
  banger vm create --name web           Create and boot a VM named `web`
  banger vm ssh web                     Open a shell in it
  banger ps                             List VMs (`banger vm list`)
  banger rm -f web                      Delete a VM (`banger vm delete --force web`)
  banger doctor                         Check that this host can run VMs";

/// `banger`: the parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "banger",
    bin_name = "banger",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    max_term_width = 100,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The clap command, for completion and help rendering.
pub fn command() -> clap::Command {
    Cli::command()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(subcommand)]
    Vm(VmCommand),
    #[command(
        about = "List VMs (alias of `banger vm list`)",
        long_about = "List VMs: the same command as `banger vm list` (also `vm ls`, `vm ps`), \
with the same -q, --filter, --format and --json."
    )]
    Ps(vm_list::ListArgs),
    #[command(
        about = "Delete VMs and their disks (alias of `banger vm delete`)",
        long_about = "Delete VMs and their disks: the same command as `banger vm delete` \
(also `vm rm`). A running VM needs -f; a prefix of a name is confirmed on a terminal and \
refused without one."
    )]
    Rm(vm_lifecycle::DeleteArgs),
    Logs(logs::LogsArgs),
    #[command(subcommand)]
    Image(ImageCommand),
    #[command(subcommand)]
    Kernel(KernelCommand),
    SshConfig(ssh_config::SshConfigArgs),
    #[command(hide = true)]
    SshProxy(ssh_proxy::SshProxyArgs),
    #[command(subcommand)]
    System(SystemCommand),
    #[command(subcommand)]
    Config(ConfigCommand),
    Doctor(doctor::DoctorArgs),
    Health(ping::HealthArgs),
    Ping(ping::PingArgs),
    Version(ping::VersionArgs),
    Completion(completion::CompletionArgs),
    Mcp(mcp::McpArgs),
}

/// Create, run and manage VMs.
#[derive(Debug, Subcommand)]
#[command(
    about = "Create, run and manage VMs",
    long_about = "Create, run and manage VMs.

A VM is created from an image (a root filesystem) and a kernel, boots in a few seconds, \
and keeps its disk until it is deleted. `vm run` is the one-shot path (create, run a \
command, exit with its code); the other commands manage VMs one step at a time.

VMs are named by their name, a unique prefix of their name, or a prefix of their id. \
Commands that destroy (`delete`, `kill`, `stop` of several) need the full name or id: a \
prefix is confirmed on a terminal and refused without one. `start`, `stop`, `kill` and \
`delete` take `--all`. Aliases: `vm ls`/`vm ps` (`banger ps`), `vm rm` (`banger rm`).",
    after_help = "\
Examples:
  banger vm run ./repo -- make test     Create a VM, import ./repo, run `make test`
  banger vm create --name web --memory 2GiB
  banger vm exec web -- uname -a
  banger vm stop web
  banger vm ls -q --filter state=running
  banger vm rm -f web"
)]
pub enum VmCommand {
    Run(vm_run::RunArgs),
    Create(vm_run::CreateArgs),
    Start(vm_lifecycle::StartArgs),
    Stop(vm_lifecycle::StopArgs),
    Restart(vm_lifecycle::RestartArgs),
    Kill(vm_lifecycle::KillArgs),
    #[command(visible_alias = "rm")]
    Delete(vm_lifecycle::DeleteArgs),
    Prune(vm_lifecycle::PruneArgs),
    #[command(visible_aliases = ["ls", "ps"])]
    List(vm_list::ListArgs),
    Show(vm_show::ShowArgs),
    Ssh(vm_ssh::SshArgs),
    Exec(vm_exec::ExecArgs),
    Cp(vm_cp::CpArgs),
    Logs(vm_logs::LogsArgs),
    Stats(vm_stats::StatsArgs),
    Ports(vm_show::PortsArgs),
    Set(vm_set::SetArgs),
    Snapshot(vm_snapshot::SnapshotArgs),
    Fork(vm_snapshot::ForkArgs),
    #[command(subcommand)]
    Port(PortCommand),
    #[command(subcommand)]
    Policy(PolicyCommand),
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Publish guest ports on the host, or stop publishing them",
    long_about = "Publish a VM's guest ports on the host: the daemon listens on a host port (127.0.0.1 unless you choose another address) and forwards to the guest. Published ports are kept with the VM: they close at stop and open again at start. `vm run -p` and `vm create -p` publish at creation; `vm ports` lists them.",
    after_help = "\
Examples:
  banger vm port publish web 8080:80
  banger vm port publish web 0.0.0.0:8443:443 5353:53/udp
  banger vm port unpublish web 8080"
)]
pub enum PortCommand {
    Publish(vm_port::PublishArgs),
    Unpublish(vm_port::UnpublishArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Show or change what a VM may reach on the network",
    long_about = "Show or change a VM's network policy: the destinations it may reach \
(`--allow HOST[:PORT]`: a name, `*.example.com`, an IPv4 address or CIDR) and nothing \
else. The host enforces it: the guest's only resolver is banger's, which answers allowed \
names only; other DNS, ICMP, IPv6 and every address not allowed are dropped. A change \
applies to a running VM at once and is kept for its next start.",
    after_help = "\
Examples:
  banger vm policy show web
  banger vm policy set web --allow pypi.org:443 --allow '*.pythonhosted.org:443'
  banger vm policy set web --deny-all
  banger vm policy set web --clear          Back to --nat (or no network) alone
  banger vm policy check web pypi.org:443   Would it connect, and by which rule?
  banger vm logs --policy web              What the policy denied
  banger vm policy show web --json | jq .dropped_packets"
)]
pub enum PolicyCommand {
    Show(vm_policy::ShowArgs),
    Set(vm_policy::SetArgs),
    Check(vm_policy::CheckArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Import a repository into a VM and export the guest's edits",
    long_about = "Import a repository into a VM and export the guest's edits.

`prepare` copies a git repository (its committed state plus local changes) into the guest; \
`export` prints the guest's edits as a patch that `git apply` accepts. `vm run PATH` \
prepares the workspace for you.",
    after_help = "\
Examples:
  banger vm workspace prepare web ./repo
  banger vm workspace export web > guest.patch && git apply guest.patch
  banger vm workspace export web --format mbox | git am --3way
  banger vm workspace apply web"
)]
pub enum WorkspaceCommand {
    Prepare(workspace::PrepareArgs),
    Export(workspace_export::ExportArgs),
    Apply(workspace_export::ApplyArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Manage root filesystem images",
    long_about = "Manage root filesystem images.

An image is an ext4 root filesystem VMs boot from. Images come from the built-in catalog \
(`image pull`), an OCI registry (`image import`), a local file (`image register`) or a \
VM's disk (`image promote`). `image list --catalog` shows the built-in catalog.",
    after_help = "\
Examples:
  banger image list --catalog           What can be pulled
  banger image pull debian-bookworm     Build the default image
  banger image import localhost:5000/app:latest --name app
  banger image promote web web-golden"
)]
pub enum ImageCommand {
    List(image::ListArgs),
    Show(image::ShowArgs),
    Pull(image::PullArgs),
    Import(image::ImportArgs),
    Register(image::RegisterArgs),
    Promote(image::PromoteArgs),
    Delete(image::DeleteArgs),
    Warm(image::WarmArgs),
    #[command(subcommand)]
    Cache(ImageCacheCommand),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Manage the image build cache",
    long_about = "Manage the image build cache (downloaded packages and layers that can be \
fetched again).",
    after_help = "Examples:\n  banger image cache prune"
)]
pub enum ImageCacheCommand {
    Prune(image::CachePruneArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Manage guest kernels",
    long_about = "Manage guest kernels.

A kernel (vmlinux plus a small initramfs) boots the VM; images name the kernel they boot \
with. `kernel catalog` lists the built-in kernels `kernel pull` can fetch.",
    after_help = "\
Examples:
  banger kernel catalog
  banger kernel pull <name>
  banger kernel list"
)]
pub enum KernelCommand {
    Catalog(kernel::CatalogArgs),
    List(kernel::ListArgs),
    Show(kernel::ShowArgs),
    Pull(kernel::PullArgs),
    Delete(kernel::DeleteArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Install and manage banger's two services",
    long_about = "Install and manage banger's two services: banger-helper (root, guest \
networking) and bangerd (the owner user). systemd units where systemd is PID 1, supervised \
background processes elsewhere (`system status` says which).",
    after_help = "Examples:\n  sudo banger system install\n  banger system status\n  \
sudo banger system restart\n  sudo banger system uninstall"
)]
pub enum SystemCommand {
    Install(system::InstallArgs),
    Status(system::StatusArgs),
    Restart(system::RestartArgs),
    Uninstall(system::UninstallArgs),
    #[command(hide = true)]
    Supervise(system::SuperviseArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    about = "Show the config file's settings and where each came from",
    long_about = "Show the config file's settings. `config.toml` in banger's config \
directory gives defaults for new VMs (image, sizes, network policy, guest path, git \
identity, host CA certificates, files to sync); flags override it. README.md, \"The config \
file\", lists the keys.",
    after_help = "Examples:\n  banger config show\n  banger config show --json\n  banger config path"
)]
pub enum ConfigCommand {
    Show(config::ShowArgs),
    Path(config::PathArgs),
}

/// `--json`, for every command that prints data.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Print the result as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// One VM, by name, unique name prefix, or id prefix.
#[derive(Debug, Clone, Args)]
pub struct VmArg {
    /// VM name, unique name prefix, or id prefix
    #[arg(value_name = "VM", add = crate::candidates::vm_names())]
    pub vm: String,
}

#[cfg(test)]
mod tests;
