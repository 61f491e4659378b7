//! `vm stats`: what VMs cost the host (VMM memory and CPU, disk), for one VM, several,
//! or every running one; once, or refreshed with `--watch` until Ctrl-C. Human output
//! uses binary units; `--json` prints bytes and seconds, always as an array.

use std::time::{Duration, Instant};

use banger_api::methods::{Empty, VmList, VmRef, VmStatsGet};
use banger_api::types::{VmState, VmStats};
use clap::Args;

use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::render;

/// Show VMs' resource use
#[derive(Debug, Args)]
#[command(
    long_about = "Show what VMs cost the host: memory (RSS) and CPU time of each VMM \
process, and the space each disk really occupies next to its virtual size. Without a VM, \
every running VM is shown. `--watch` refreshes every few seconds (2 by default) until \
Ctrl-C and adds the CPU use since the last refresh.

`--json` prints an array, one object a VM (also for one), with sizes in bytes, CPU time \
in seconds (`vmm_cpu_secs`) and, with `--watch`, the CPU use since the last refresh \
(`cpu_percent`, `null` on the first); with `--watch`, one such array a line per \
refresh. docs/json.md documents the keys.",
    after_help = "Examples:\n  banger vm stats\n  banger vm stats web db\n  \
banger vm stats --watch\n  banger vm stats web --watch 5\n  banger vm stats web --json"
)]
pub struct StatsArgs {
    /// VMs, each by name, unique name prefix, or id prefix (default: every running VM)
    #[arg(value_name = "VM", add = crate::candidates::vm_names())]
    pub vms: Vec<String>,
    /// Refresh every SECONDS (2 when given without a value) until Ctrl-C
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// Print the result as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `vm stats`.
pub async fn stats(ctx: &Ctx, args: StatsArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let Some(period) = args.watch.map(Duration::from_secs) else {
        let sample = sample(&mut daemon, &args.vms).await?;
        return show(&args, &sample, None, false);
    };
    let clear = ctx.term.stdout && !args.json;
    // Listening from here on: a Ctrl-C that lands while a sample is being taken is kept
    // for the next wait, not lost (a fresh `ctrl_c()` each round would miss it).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut previous: Option<(Instant, Vec<VmStats>)> = None;
    loop {
        let taken = Instant::now();
        let sample = sample(&mut daemon, &args.vms).await?;
        let cpu = previous
            .as_ref()
            .map(|(at, before)| cpu_percent(before, &sample, taken.duration_since(*at)));
        show(&args, &sample, cpu.as_deref(), clear)?;
        previous = Some((taken, sample));
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

/// One reading of every VM asked for (every running VM when none is named).
async fn sample(daemon: &mut Daemon, named: &[String]) -> Result<Vec<VmStats>, CliError> {
    let names = if named.is_empty() {
        daemon
            .ask::<VmList>(&Empty {})
            .await?
            .into_iter()
            .filter(|vm| vm.state == VmState::Running)
            .map(|vm| vm.name)
            .collect()
    } else {
        named.to_vec()
    };
    let mut stats = Vec::with_capacity(names.len());
    for vm in names {
        stats.push(daemon.ask::<VmStatsGet>(&VmRef { vm }).await?);
    }
    Ok(stats)
}

fn show(
    args: &StatsArgs,
    sample: &[VmStats],
    cpu: Option<&[Option<f64>]>,
    clear: bool,
) -> Result<(), CliError> {
    if args.json {
        let records = render::records::stats::stats(sample, cpu);
        return if args.watch.is_some() {
            render::stdout(&render::json_line(&records)?)
        } else {
            render::stdout(&render::json(&records)?)
        };
    }
    let mut text = String::new();
    if clear {
        // Home and clear: each refresh replaces the last.
        text.push_str("\x1b[H\x1b[2J");
    }
    if sample.is_empty() {
        text.push_str("no VM is running\n");
    } else if let ([one], None) = (sample, args.watch) {
        // One VM, once: the detailed view. Every refresh of `--watch` is the table, on a
        // terminal or not.
        text.push_str(&render::detail::stats(one));
    } else {
        text.push_str(&table(sample, cpu));
    }
    render::stdout(&text)
}

/// The CPU use of each VM of `now` between two readings, as a percentage of one host
/// CPU; `None` where a reading lacks the figure or the VM is new.
pub fn cpu_percent(before: &[VmStats], now: &[VmStats], elapsed: Duration) -> Vec<Option<f64>> {
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    now.iter()
        .map(|vm| {
            let then = before.iter().find(|old| old.name == vm.name)?.vmm_cpu_ms?;
            let used = vm.vmm_cpu_ms?.checked_sub(then)?;
            (elapsed_ms > 0.0).then(|| used as f64 / elapsed_ms * 100.0)
        })
        .collect()
}

/// The human table: one row a VM, sizes in binary units.
pub fn table(sample: &[VmStats], cpu: Option<&[Option<f64>]>) -> String {
    let dash = || "-".to_owned();
    let rows = sample
        .iter()
        .enumerate()
        .map(|(index, vm)| {
            let mut row = vec![
                vm.name.clone(),
                vm.state.to_string(),
                vm.vmm_rss_bytes.map_or_else(dash, render::approx_bytes),
                vm.vmm_cpu_ms
                    .map_or_else(dash, |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            ];
            if let Some(cpu) = cpu {
                row.push(
                    cpu.get(index)
                        .copied()
                        .flatten()
                        .map_or_else(dash, |percent| format!("{percent:.1}%")),
                );
            }
            row.push(render::approx_bytes(vm.disk_allocated_bytes));
            row.push(render::bytes(vm.disk_size_bytes));
            row
        })
        .collect();
    let mut header = vec!["NAME", "STATE", "MEMORY", "CPU TIME"];
    if cpu.is_some() {
        header.push("CPU");
    }
    header.extend(["DISK USED", "DISK SIZE"]);
    render::table::grid(&header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, rss: Option<u64>, cpu_ms: Option<u64>) -> VmStats {
        VmStats {
            name: name.into(),
            state: VmState::Running,
            vmm_rss_bytes: rss,
            vmm_cpu_ms: cpu_ms,
            disk_allocated_bytes: 300 << 20,
            disk_size_bytes: 4 << 30,
        }
    }

    #[test]
    fn cpu_use_is_the_time_used_between_readings() {
        let before = [vm("a", None, Some(1000)), vm("b", None, None)];
        let now = [
            vm("a", None, Some(1500)),
            vm("b", None, Some(10)),
            vm("new", None, Some(5)),
        ];
        let got = cpu_percent(&before, &now, Duration::from_secs(2));
        assert_eq!(got, vec![Some(25.0), None, None]);
    }

    #[test]
    fn the_table_uses_binary_units_and_a_cpu_column_when_watching() {
        let sample = [
            vm("web", Some(180 << 20), Some(12_345)),
            vm("db", None, None),
        ];
        insta::assert_snapshot!(table(&sample, None), @r"
        NAME  STATE    MEMORY  CPU TIME  DISK USED  DISK SIZE
        web   running  180MiB  12.3s     300MiB     4GiB
        db    running  -       -         300MiB     4GiB
        ");
        insta::assert_snapshot!(table(&sample, Some(&[Some(12.5), None])), @r"
        NAME  STATE    MEMORY  CPU TIME  CPU    DISK USED  DISK SIZE
        web   running  180MiB  12.3s     12.5%  300MiB     4GiB
        db    running  -       -         -      300MiB     4GiB
        ");
    }
}
