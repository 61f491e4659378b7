//! The workspace part of `cargo xtask bench` (alone: `cargo xtask bench export`):
//!
//! - `banger vm workspace export` of a guest repository in which 1,000 files changed
//!   (median of 3), with the patch's size;
//! - `banger vm cp` of a host tree of 1,000 files into the guest, against `tar -c | banger
//!   vm exec VM -- tar -x` (the same agent channel, busybox tar in the guest) and, when
//!   the guest has a network (banger-helper running), `tar -c | ssh guest tar -x`;
//!   rounds alternate the methods.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Bench, median};

const ROUNDS: usize = 3;
const FILES: usize = 1000;
const VM: &str = "bench-export";

const GUEST_REPO: &str = "set -e; rm -rf /root/repo; mkdir -p /root/repo; cd /root/repo; git init -q
i=0; while [ $i -lt 1000 ]; do echo \"line $i of a file that will change\" > f$i.txt; i=$((i+1)); done
git add -A; git -c user.name=b -c user.email=b@example.invalid commit -qm base
for f in f*.txt; do echo changed >> $f; done";

/// Runs the workspace benchmarks against `bench`'s daemon; returns the BENCHMARKS.md
/// section.
pub(super) fn section(bench: &Bench) -> Result<String> {
    bench.banger(&["image", "pull", "tiny"])?;
    bench.banger(&["kernel", "pull", "debian-6.1-cloud"])?;
    bench.banger(&["vm", "create", "--image", "tiny", "--name", VM])?;
    let result = measure(bench);
    let _ = bench.banger(&["vm", "delete", "--force", VM]);
    result
}

fn measure(bench: &Bench) -> Result<String> {
    bench.banger(&["vm", "exec", VM, "--", "sh", "-c", GUEST_REPO])?;
    let patch = bench.dir.join("export.patch");
    let patch_arg = patch.to_str().context("path")?;
    let mut export = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        bench.banger(&["vm", "workspace", "export", VM, "--output", patch_arg])?;
        export.push(t.elapsed().as_secs_f64());
    }
    let listed = bench.json(&["vm", "workspace", "export", VM])?;
    let changed = listed["files"].as_array().map_or(0, Vec::len);
    let patch_bytes = std::fs::metadata(&patch)?.len();

    // A host tree: 1,000 files of 8 KiB of noise in 10 directories.
    let tree = bench.dir.join("tree");
    for i in 0..FILES {
        let dir = tree.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir)?;
        let bytes: Vec<u8> = (0..8192u32)
            .map(|j| ((i as u32).wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)) as u8)
            .collect();
        std::fs::write(dir.join(format!("f{i}")), bytes)?;
    }
    let has_network = bench.json(&["vm", "show", VM])?["address"].is_string();
    let banger = bench.bin.join("banger");
    let (mut cp, mut exec, mut ssh) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let t = Instant::now();
        bench.banger(&[
            "vm",
            "cp",
            tree.to_str().context("path")?,
            &format!("{VM}:/root/cp-{round}"),
        ])?;
        cp.push(t.elapsed().as_secs_f64());
        bench.banger(&[
            "vm",
            "exec",
            VM,
            "--",
            "mkdir",
            &format!("/root/exec-{round}"),
        ])?;
        let t = Instant::now();
        pipeline(
            bench,
            &format!(
                "tar -c -C {} . | {} vm exec {VM} -- tar -x -C /root/exec-{round}",
                tree.display(),
                banger.display()
            ),
        )?;
        exec.push(t.elapsed().as_secs_f64());
        if has_network {
            bench.banger(&[
                "vm",
                "exec",
                VM,
                "--",
                "mkdir",
                &format!("/root/ssh-{round}"),
            ])?;
            let t = Instant::now();
            pipeline(
                bench,
                &format!(
                    "tar -c -C {} . | {} vm ssh {VM} -- tar -x -C /root/ssh-{round}",
                    tree.display(),
                    banger.display()
                ),
            )?;
            ssh.push(t.elapsed().as_secs_f64());
        }
    }
    let check = bench.banger(&[
        "vm",
        "exec",
        VM,
        "--",
        "sh",
        "-c",
        "find /root/cp-0 -type f | wc -l",
    ])?;
    if check.trim() != FILES.to_string() {
        bail!("vm cp landed {} files, not {FILES}", check.trim());
    }
    let (export_median, cp_median, exec_median) = (
        median(&mut export.clone()),
        median(&mut cp.clone()),
        median(&mut exec.clone()),
    );
    let mut text = format!(
        "\n## Workspaces: export and copy (tiny guest, median of {ROUNDS})\n\n\
         Produced by `cargo xtask bench export`.\n\n\
         | what | seconds |\n| --- | --- |\n\
         | `banger vm workspace export` ({changed} changed files, {:.1} KiB patch) | {export_median:.2} |\n\
         | `banger vm cp` of a {FILES}-file tree (8 MiB) into the guest | {cp_median:.2} |\n\
         | `tar -c \\| banger vm exec VM -- tar -x` (same tree, same agent channel) | {exec_median:.2} |\n",
        patch_bytes as f64 / 1024.0
    );
    if has_network {
        let ssh_median = median(&mut ssh.clone());
        text.push_str(&format!(
            "| `tar -c \\| ssh guest tar -x` (same tree, over the network) | {ssh_median:.2} |\n\n\
             `vm cp` / `tar | ssh`: **{:.2}x**.",
            cp_median / ssh_median
        ));
    } else {
        text.push_str(
            "\n`tar | ssh` not measured: the guest has no network here (banger-helper is not running).",
        );
    }
    text.push_str(&format!(
        " `vm cp` / `tar | vm exec`: {:.2}x. Raw: export {export:.2?}, cp {cp:.2?}, exec {exec:.2?}, ssh {ssh:.2?}.\n",
        cp_median / exec_median
    ));
    Ok(text)
}

fn pipeline(bench: &Bench, script: &str) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(bench.env())
        .stdout(Stdio::null())
        .status()
        .context("cannot run sh")?;
    if !status.success() {
        bail!("{script} failed ({status})");
    }
    Ok(())
}

/// `report` with its workspace section replaced by `section` (appended when absent).
pub(super) fn splice(report: &str, section: &str) -> String {
    const HEADING: &str = "\n## Workspaces: export and copy";
    let Some(start) = report.find(HEADING) else {
        return format!("{}\n{}", report.trim_end(), section);
    };
    let rest = &report[start + HEADING.len()..];
    let end = rest
        .find("\n## ")
        .map_or(report.len(), |at| start + HEADING.len() + at);
    format!(
        "{}{}{}",
        &report[..start],
        section.trim_end_matches('\n'),
        &report[end..]
    )
}
