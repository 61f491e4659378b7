//! `vm snapshot VM [--name SNAP]`, `vm snapshot list|show|delete` and
//! `vm fork SNAP|VM [--name NEW] [-n COUNT]`: warm starts from a saved guest.

use banger_api::methods::{
    Empty, NameRef, SnapshotDelete, SnapshotList, SnapshotShow, VmFork, VmForkParams, VmSnapshot,
    VmSnapshotParams,
};
use banger_api::types::SnapshotInfo;
use clap::{Args, Subcommand};

use crate::cli::JsonFlag;
use crate::commands::vm_run::summary;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render::records::snapshot::SnapshotJson;
use crate::render::{self, records};

/// Save a running VM, or manage saved snapshots
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    long_about = "Save a running VM: its memory, device state and disk, as they are at one \
instant. The guest is paused for the save and the disk copy (well under a second for small \
guests), then runs on. `vm fork` makes new VMs from the snapshot in about a second each, \
restored instead of booted.

A snapshot holds the guest's memory, so its files are readable by you only, under the \
state directory, and go when the snapshot is deleted. `list`, `show` and `delete` manage \
snapshots; delete is refused while a running fork maps the snapshot's memory.

Snapshots need the QEMU driver; with Firecracker they are not yet available.",
    after_help = "\
Examples:
  banger vm snapshot web --name web-ready
  banger vm fork web-ready -n 3
  banger vm snapshot list
  banger vm snapshot show web-ready --json
  banger vm snapshot delete web-ready"
)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,
    /// The running VM to save (name, unique name prefix, or id prefix)
    #[arg(value_name = "VM", required = true, add = crate::candidates::vm_names())]
    pub vm: Option<String>,
    /// Name of the snapshot (default: `<vm>-<6 hex>`)
    #[arg(long, value_name = "SNAP", value_parser = crate::values::image_name)]
    pub name: Option<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    List(ListArgs),
    Show(ShowArgs),
    Delete(DeleteArgs),
}

/// List snapshots
#[derive(Debug, Args)]
#[command(
    long_about = "List snapshots: name, the VM it was taken from, image, memory, what its \
files use on disk, age, and the running VMs forked from it.",
    after_help = "Examples:\n  banger vm snapshot list\n  banger vm snapshot list --json | jq -r '.[].name'"
)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Show one snapshot
#[derive(Debug, Args)]
#[command(
    long_about = "Show one snapshot: the VM it was taken from, its image, kernel, vCPUs, \
memory and disk (what every fork gets), what its files use on disk, when it was taken, the \
running VMs forked from it, and the directory of its files.",
    after_help = "Examples:\n  banger vm snapshot show web-ready\n  banger vm snapshot show web-ready --json"
)]
pub struct ShowArgs {
    /// Snapshot name or id prefix
    #[arg(value_name = "SNAP")]
    pub name: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Delete a snapshot and its files
#[derive(Debug, Args)]
#[command(
    long_about = "Delete a snapshot: its memory, device state and disk copy. Refused while \
a VM forked from it is running (its memory maps the snapshot's), naming those VMs. Forks \
that were stopped or booted again do not depend on it.",
    after_help = "Examples:\n  banger vm snapshot delete web-ready"
)]
pub struct DeleteArgs {
    /// Snapshot name or id prefix
    #[arg(value_name = "SNAP")]
    pub name: String,
}

/// Make new VMs from a snapshot (or from a running VM)
#[derive(Debug, Args)]
#[command(
    long_about = "Make new VMs that start where a snapshot left off, restored in about a \
second instead of booted. SOURCE is a snapshot, or a running VM (snapshotted first). Each \
fork gets its own disk copy, name, address, MAC, clock set from the host, a reseeded kernel \
RNG, and a new machine-id and ssh host keys where the image has them, all before anything \
runs in it. What a fork cannot change without a reboot is its boot id: `vm show` says \
`forked from` while it is shared with the snapshot.

With -n COUNT, several forks: named NAME-1..NAME-COUNT with --name, generated otherwise.",
    after_help = "\
Examples:
  banger vm fork web-ready                 One fork, with a generated name
  banger vm fork web-ready --name worker -n 4
  banger vm fork web --name web2           Snapshot the running VM web, then fork it"
)]
pub struct ForkArgs {
    /// Snapshot (name or id prefix), or a running VM
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Name of the new VM (with -n: the prefix of NAME-1..NAME-COUNT)
    #[arg(long, value_name = "NAME", value_parser = crate::values::vm_name)]
    pub name: Option<String>,
    /// How many VMs to make
    #[arg(short = 'n', long = "count", value_name = "COUNT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub count: u32,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `vm snapshot ...`.
pub async fn snapshot(ctx: &Ctx, args: SnapshotArgs) -> Result<(), CliError> {
    match args.command {
        Some(SnapshotCommand::List(list_args)) => list(ctx, list_args).await,
        Some(SnapshotCommand::Show(show_args)) => show(ctx, show_args).await,
        Some(SnapshotCommand::Delete(delete_args)) => delete(ctx, delete_args).await,
        None => {
            let mut daemon = ctx.connect().await?;
            let params = VmSnapshotParams {
                vm: args.vm.unwrap_or_default(),
                name: args.name,
            };
            let snapshot = daemon
                .call_with_progress::<VmSnapshot>(&ctx.term, &params)
                .await?;
            records::print(
                args.output.json,
                &snapshot,
                SnapshotJson::from,
                |snapshot| {
                    format!(
                        "snapshot {} of {} ({}); `banger vm fork {}` makes VMs from it\n",
                        snapshot.name,
                        snapshot.source_vm,
                        render::approx_bytes(snapshot.size_bytes),
                        snapshot.name
                    )
                },
            )
        }
    }
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let snapshots = daemon.ask::<SnapshotList>(&Empty {}).await?;
    if !args.output.json && snapshots.is_empty() {
        render::note("no snapshots yet; `banger vm snapshot VM` saves a running VM");
        return Ok(());
    }
    records::print(
        args.output.json,
        &snapshots,
        |s| records::all::<_, SnapshotJson>(s),
        |snapshots| table(snapshots, jiff::Timestamp::now()),
    )
}

async fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let snapshot = daemon
        .ask::<SnapshotShow>(&NameRef { name: args.name })
        .await?;
    records::print(
        args.output.json,
        &snapshot,
        SnapshotJson::from,
        |snapshot| detail(snapshot, jiff::Timestamp::now()),
    )
}

async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let snapshot = daemon
        .ask::<SnapshotDelete>(&NameRef { name: args.name })
        .await?;
    render::stdout(&format!(
        "deleted snapshot {} (freed {})\n",
        snapshot.name,
        render::approx_bytes(snapshot.size_bytes)
    ))
}

/// `vm fork`.
pub async fn fork(ctx: &Ctx, args: ForkArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let params = VmForkParams {
        source: args.source,
        name: args.name,
        count: Some(args.count),
    };
    let vms = daemon
        .call_with_progress::<VmFork>(&ctx.term, &params)
        .await?;
    render::records::print_vms(args.output.json, &vms, |vms| {
        vms.iter().map(summary).collect::<String>()
    })
}

/// `vm snapshot list` as a table.
pub fn table(snapshots: &[SnapshotInfo], now: jiff::Timestamp) -> String {
    let rows = snapshots
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.source_vm.clone(),
                s.image.clone(),
                render::mib(s.memory_mib),
                render::approx_bytes(s.size_bytes),
                render::age(&s.created_at, now),
                if s.state == "ready" {
                    if s.running_forks.is_empty() {
                        "-".to_string()
                    } else {
                        s.running_forks.join(",")
                    }
                } else {
                    format!("({})", s.state)
                },
            ]
        })
        .collect();
    render::table::grid(
        &[
            "NAME", "FROM VM", "IMAGE", "MEMORY", "ON DISK", "CREATED", "FORKS",
        ],
        rows,
    )
}

/// `vm snapshot show`.
pub fn detail(s: &SnapshotInfo, now: jiff::Timestamp) -> String {
    render::detail::pairs(&[
        ("name", Some(s.name.clone())),
        ("id", Some(s.id.clone())),
        ("state", Some(s.state.clone())),
        ("from vm", Some(s.source_vm.clone())),
        ("image", Some(s.image.clone())),
        ("kernel", Some(s.kernel.clone())),
        ("vcpus", Some(s.vcpus.to_string())),
        ("memory", Some(render::mib(s.memory_mib))),
        ("disk", Some(render::mib(s.disk_mib))),
        ("driver", Some(s.driver.clone())),
        (
            "template",
            s.template_key
                .as_ref()
                .map(|key| format!("warm template of {} ({key})", s.image)),
        ),
        ("on disk", Some(render::approx_bytes(s.size_bytes))),
        (
            "running forks",
            Some(if s.running_forks.is_empty() {
                "-".to_string()
            } else {
                s.running_forks.join(", ")
            }),
        ),
        (
            "created",
            Some(format!(
                "{} ({})",
                s.created_at,
                render::age(&s.created_at, now)
            )),
        ),
        ("dir", Some(s.dir.clone())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, forks: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: "5a5a5a5a5a5a5a5a".into(),
            name: name.into(),
            state: "ready".into(),
            source_vm: "web".into(),
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 1,
            memory_mib: 512,
            disk_mib: 1024,
            driver: "qemu".into(),
            size_bytes: 120 << 20,
            dir: "/s/snapshots/5a5a5a5a5a5a5a5a".into(),
            running_forks: forks.iter().map(|f| f.to_string()).collect(),
            template_key: None,
            created_at: "2026-12-02T19:00:00Z".into(),
        }
    }

    #[test]
    fn table_and_detail_say_size_age_and_forks() {
        let now: jiff::Timestamp = "2026-12-02T19:05:00Z".parse().unwrap();
        let text = table(&[info("base", &[]), info("ready", &["w-1", "w-2"])], now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].contains("base") && lines[1].contains("120") && lines[1].ends_with('-'),
            "{text}"
        );
        assert!(
            lines[2].contains("5m") && lines[2].ends_with("w-1,w-2"),
            "{text}"
        );
        let shown = detail(&info("base", &["w-1"]), now);
        assert!(
            shown.contains("running forks") && shown.contains("w-1"),
            "{shown}"
        );
    }
}
