//! The warm-start part of `cargo xtask bench` (`cargo xtask bench warm` runs it alone and
//! splices it into BENCHMARKS.md): a snapshot of a booted tiny guest, then, in one run
//! with alternating rounds and medians,
//!
//! - `vm run --rm -- true` (cold: create, boot, run, delete) against the warm path with
//!   the same result: `vm fork SNAP` + `vm exec -- true` + `vm delete`;
//! - `vm fork -n 4` against 4 `vm create` started at once;
//! - private memory (RssAnon) of a fork's QEMU against a cold-booted one's;
//! - `vm snapshot` time and file sizes for 512 MiB and 2 GiB guests;
//! - the first comparison again on debian-bookworm (3 rounds).
//!
//! Guests have no network here (no root helper), so forks skip the address part of
//! their identity fix-up.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Bench, median};

const ROUNDS: usize = 5;
const FORKS: usize = 4;
const DEBIAN_ROUNDS: usize = 3;

fn rss_anon_kib(pid: u64) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no RssAnon")
}

fn pid_of(bench: &Bench, vm: &str) -> Result<u64> {
    bench.json(&["vm", "show", vm])?["pid"]
        .as_u64()
        .with_context(|| format!("{vm} has no pid"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Allocated bytes of one file.
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Snapshots a fresh tiny VM with `memory`; returns (seconds, state, mem, disk bytes).
fn snapshot_of(bench: &Bench, vm: &str, memory: &str) -> Result<(f64, u64, u64, u64)> {
    bench.banger(&[
        "vm", "create", "--image", "tiny", "--name", vm, "--memory", memory,
    ])?;
    let t = Instant::now();
    let snap = bench.json(&["vm", "snapshot", vm, "--name", &format!("{vm}-snap")])?;
    let took = t.elapsed().as_secs_f64();
    let dir = std::path::PathBuf::from(snap["dir"].as_str().context("no dir")?);
    Ok((
        took,
        allocated(&dir.join("state")),
        allocated(&dir.join("mem")),
        allocated(&dir.join("disk.ext4")),
    ))
}

/// `vm run --image IMAGE --rm -- true` against `vm fork SNAP` + `vm exec -- true` (+
/// `vm delete`), alternating; returns (cold, warm with the delete, warm to the result).
fn compare(
    bench: &Bench,
    image: &str,
    snap: &str,
    rounds: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut warm_ready = Vec::new();
    for round in 0..rounds {
        let order: &[bool] = if round % 2 == 0 {
            &[true, false]
        } else {
            &[false, true]
        };
        for &is_cold in order {
            let t = Instant::now();
            if is_cold {
                // --cold: the image's warm template (made after the first cold run)
                // must not turn the cold side into a restore.
                bench.banger(&[
                    "vm", "run", "--image", image, "--rm", "--cold", "--", "true",
                ])?;
                cold.push(t.elapsed().as_secs_f64());
            } else {
                let name = format!("warm-{round}");
                bench.banger(&["vm", "fork", snap, "--name", &name])?;
                bench.banger(&["vm", "exec", &name, "--", "true"])?;
                warm_ready.push(t.elapsed().as_secs_f64());
                bench.banger(&["vm", "delete", "--force", &name])?;
                warm.push(t.elapsed().as_secs_f64());
            }
        }
        eprintln!(
            "bench warm: {image} round {round}: cold {:.2}s, warm {:.2}s",
            cold[round], warm[round]
        );
    }
    Ok((cold, warm, warm_ready))
}

/// Runs the warm-start benchmarks against `bench`'s daemon; returns the section.
pub(super) fn section(bench: &Bench) -> Result<String> {
    eprintln!("bench warm: pulling tiny and its kernel (cached after the first run)");
    bench.banger(&["image", "pull", "tiny"])?;
    bench.banger(&["kernel", "pull", "debian-6.1-cloud"])?;

    let (snap512, state512, mem512, disk512) = snapshot_of(bench, "warm-src", "512MiB")?;
    let snap = "warm-src-snap";
    let (cold, warm, warm_ready) = compare(bench, "tiny", snap, ROUNDS)?;

    // Four at once: `vm fork -n 4` against four `vm create` started together.
    let t = Instant::now();
    bench.banger(&["vm", "fork", snap, "--name", "f", "-n", &FORKS.to_string()])?;
    let fork4 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut children = Vec::new();
    for i in 1..=FORKS {
        let name = format!("c-{i}");
        children.push(
            bench
                .command(&bench.bin.join("banger"))
                .args(["vm", "create", "--image", "tiny", "--name", &name])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(bench.env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    for mut child in children {
        if !child.wait()?.success() {
            bail!("a concurrent vm create failed");
        }
    }
    let create4 = t.elapsed().as_secs_f64();
    let mut fork_anon = Vec::new();
    let mut cold_anon = Vec::new();
    for i in 1..=FORKS {
        bench.banger(&["vm", "exec", &format!("f-{i}"), "--", "true"])?;
        bench.banger(&["vm", "exec", &format!("c-{i}"), "--", "true"])?;
        fork_anon.push(rss_anon_kib(pid_of(bench, &format!("f-{i}"))?)? as f64 / 1024.0);
        cold_anon.push(rss_anon_kib(pid_of(bench, &format!("c-{i}"))?)? as f64 / 1024.0);
    }
    for i in 1..=FORKS {
        bench.banger(&["vm", "delete", "--force", &format!("f-{i}")])?;
        bench.banger(&["vm", "delete", "--force", &format!("c-{i}")])?;
    }

    let (snap2g, state2g, mem2g, disk2g) = snapshot_of(bench, "warm-big", "2GiB")?;
    for vm in ["warm-src", "warm-big"] {
        bench.banger(&["vm", "delete", "--force", vm])?;
        bench.banger(&["vm", "snapshot", "delete", &format!("{vm}-snap")])?;
    }

    eprintln!("bench warm: debian-bookworm (built once, cached after)");
    bench.banger(&["image", "pull", "debian-bookworm"])?;
    bench.banger(&[
        "vm",
        "create",
        "--image",
        "debian-bookworm",
        "--name",
        "warm-deb",
    ])?;
    let t = Instant::now();
    let deb_snap = bench.json(&["vm", "snapshot", "warm-deb", "--name", "warm-deb-snap"])?;
    let deb_snap_secs = t.elapsed().as_secs_f64();
    let deb_snap_bytes = deb_snap["size_bytes"].as_u64().unwrap_or(0);
    let (deb_cold, deb_warm, deb_ready) =
        compare(bench, "debian-bookworm", "warm-deb-snap", DEBIAN_ROUNDS)?;
    bench.banger(&["vm", "delete", "--force", "warm-deb"])?;
    bench.banger(&["vm", "snapshot", "delete", "warm-deb-snap"])?;

    let cold_median = median(&mut cold.clone());
    let warm_median = median(&mut warm.clone());
    let ready_median = median(&mut warm_ready.clone());
    let mut out = String::new();
    out.push_str(&format!(
        "\n## Warm starts: fork from a snapshot vs cold boot (tiny, `cargo xtask bench warm`, median of {ROUNDS}, alternating)\n\n"
    ));
    out.push_str("Debug build of banger (the time is QEMU's and the guest's), no guest network (no root helper: forks skip the address fix-up). The snapshot was taken of a booted, idle 512 MiB tiny guest.\n\n");
    out.push_str("| what | seconds |\n| --- | --- |\n");
    out.push_str(&format!(
        "| cold: `vm run --image tiny --rm -- true` (create, boot, run, delete) | {cold_median:.2} |\n"
    ));
    out.push_str(&format!(
        "| warm: `vm fork SNAP` + `vm exec -- true` (restore, identity fix-up, run) | {ready_median:.2} |\n"
    ));
    out.push_str(&format!(
        "| warm, with `vm delete --force` after (the same work as `--rm`) | {warm_median:.2} |\n"
    ));
    out.push_str(&format!(
        "\nCold / warm (with the delete): **{:.1}x**. Raw: cold {cold:.2?}, warm {warm:.2?}, warm to the result {warm_ready:.2?}.\n",
        cold_median / warm_median
    ));
    let deb_cold_median = median(&mut deb_cold.clone());
    let deb_warm_median = median(&mut deb_warm.clone());
    out.push_str(&format!(
        "\n| debian-bookworm (systemd; snapshot taken as soon as the agent answered), median of {DEBIAN_ROUNDS} | seconds |\n| --- | --- |\n| cold: `vm run --image debian-bookworm --rm -- true` | {deb_cold_median:.2} |\n| warm: `vm fork SNAP` + `vm exec -- true` | {:.2} |\n| warm, with `vm delete --force` after | {deb_warm_median:.2} |\n\nCold / warm (with the delete): **{:.1}x**. `vm snapshot` of it: {deb_snap_secs:.2} s, {} on disk. Raw: cold {deb_cold:.2?}, warm {deb_warm:.2?}.\n",
        median(&mut deb_ready.clone()),
        deb_cold_median / deb_warm_median,
        mib(deb_snap_bytes)
    ));
    out.push_str(&format!(
        "\n| {FORKS} VMs | seconds |\n| --- | --- |\n| `vm fork SNAP -n {FORKS}` | {fork4:.2} |\n| {FORKS} `vm create --image tiny` started at once | {create4:.2} |\n\nRatio: **{:.1}x** (one run each).\n",
        create4 / fork4
    ));
    out.push_str(&format!(
        "\n| QEMU private memory (RssAnon) after `true` ran, median of {FORKS} | MiB |\n| --- | --- |\n| fork (RAM file mapped copy-on-write) | {:.1} |\n| cold-booted VM | {:.1} |\n",
        median(&mut fork_anon.clone()),
        median(&mut cold_anon.clone())
    ));
    out.push_str("\n| guest | `vm snapshot` (CLI, seconds) | state file | RAM file (allocated) | disk copy (allocated) |\n| --- | --- | --- | --- | --- |\n");
    out.push_str(&format!(
        "| tiny, 512 MiB | {snap512:.2} | {} | {} | {} |\n",
        mib(state512),
        mib(mem512),
        mib(disk512)
    ));
    out.push_str(&format!(
        "| tiny, 2 GiB | {snap2g:.2} | {} | {} | {} |\n",
        mib(state2g),
        mib(mem2g),
        mib(disk2g)
    ));
    Ok(out)
}

/// Replaces the warm section of `report` (or appends it).
pub(super) fn splice(report: &str, section: &str) -> String {
    super::splice_section(report, "Warm starts", section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place() {
        let report = "# B\n\n## One\nx\n\n## Warm starts: old\nold\n\n## Two\ny\n";
        assert_eq!(
            splice(report, "\n## Warm starts: new\nnew\n"),
            "# B\n\n## One\nx\n\n## Warm starts: new\nnew\n\n## Two\ny\n"
        );
    }
}
