//! The warm-template part of `cargo xtask bench` (`cargo xtask bench templates` runs it
//! alone and splices it into BENCHMARKS.md): `vm run --rm -- true` restored from the
//! image's warm template against the same command with `--cold`, on tiny and on
//! debian-bookworm, in one run with alternating rounds and medians. Each image's template
//! is made first (one cold run, then its background build is awaited). The stages of
//! the warm runs (CLI progress lines, 0.1 s resolution) say where the time goes.
//!
//! Guests have no network here (no root helper), as in the fork figures.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Bench, median};

const ROUNDS: usize = 5;
const DEBIAN_ROUNDS: usize = 3;

/// Runs banger, returning (seconds, stderr).
fn timed(bench: &Bench, args: &[&str]) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = bench
        .command(&bench.bin.join("banger"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(bench.env())
        .stdin(Stdio::null())
        .output()
        .context("cannot run banger")?;
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("banger {} failed: {stderr}", args.join(" "));
    }
    Ok((secs, stderr))
}

/// `(stage, seconds since the previous stage ended)` of the `done` lines
/// (`[  1.2s] boot ... done (detail)`).
pub(super) fn stage_times(stderr: &str) -> Vec<(String, f64)> {
    let mut previous = 0.0;
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((secs, rest)) = rest.split_once("s]") else {
            continue;
        };
        let Ok(at) = secs.trim().parse::<f64>() else {
            continue;
        };
        let Some((stage, _)) = rest.split_once(" ... done") else {
            continue;
        };
        out.push((stage.trim().to_string(), at - previous));
        previous = at;
    }
    out
}

/// Waits for a ready template of `image`.
fn wait_for_template(bench: &Bench, image: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let list = bench.json(&["vm", "snapshot", "list"])?;
        if let Some(t) =
            list.as_array().into_iter().flatten().find(|s| {
                s["template_key"].is_string() && s["state"] == "ready" && s["image"] == image
            })
        {
            return Ok(t["name"].as_str().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("no warm template of {image} after 10 minutes")
}

struct Figures {
    cold: Vec<f64>,
    warm: Vec<f64>,
    /// Per stage, its durations over the warm runs.
    stages: BTreeMap<String, Vec<f64>>,
    order: Vec<String>,
    template: String,
    build_secs: f64,
}

fn measure(bench: &Bench, image: &str, rounds: usize) -> Result<Figures> {
    bench.banger(&["image", "warm", image])?;
    let t = Instant::now();
    timed(
        bench,
        &["vm", "run", "--image", image, "--rm", "--", "true"],
    )?;
    let template = wait_for_template(bench, image)?;
    let build_secs = t.elapsed().as_secs_f64();
    let mut figures = Figures {
        cold: Vec::new(),
        warm: Vec::new(),
        stages: BTreeMap::new(),
        order: Vec::new(),
        template,
        build_secs,
    };
    for round in 0..rounds {
        let order: &[bool] = if round % 2 == 0 {
            &[true, false]
        } else {
            &[false, true]
        };
        for &is_cold in order {
            if is_cold {
                let (secs, _) = timed(
                    bench,
                    &[
                        "vm", "run", "--image", image, "--rm", "--cold", "--", "true",
                    ],
                )?;
                figures.cold.push(secs);
            } else {
                let (secs, stderr) = timed(
                    bench,
                    &["vm", "run", "--image", image, "--rm", "--", "true"],
                )?;
                if !stderr.contains("from template") {
                    bail!("a warm run of {image} did not restore from its template:\n{stderr}");
                }
                for (stage, took) in stage_times(&stderr) {
                    if !figures.order.contains(&stage) {
                        figures.order.push(stage.clone());
                    }
                    figures.stages.entry(stage).or_default().push(took);
                }
                figures.warm.push(secs);
            }
        }
        eprintln!(
            "bench templates: {image} round {round}: cold {:.2}s, warm {:.2}s",
            figures.cold[round], figures.warm[round]
        );
    }
    Ok(figures)
}

fn table(out: &mut String, image: &str, rounds: usize, f: &Figures) {
    let cold = median(&mut f.cold.clone());
    let warm = median(&mut f.warm.clone());
    out.push_str(&format!(
        "\n| {image}, median of {rounds} | seconds |\n| --- | --- |\n| cold: `vm run --image {image} --rm --cold -- true` | {cold:.2} |\n| warm: `vm run --image {image} --rm -- true` (restored from {}) | **{warm:.2}** |\n\nCold / warm: **{:.1}x**. Raw: cold {:.2?}, warm {:.2?}. The template was ready {:.1} s after the first cold `vm run` began (that run plus the background build).\n",
        f.template,
        cold / warm,
        f.cold,
        f.warm,
        f.build_secs
    ));
    out.push_str(
        "\nWhere a warm run's time goes (median per stage, from the CLI's progress lines; the rest of the wall time is the command, `--rm`'s delete and the CLI):\n\n| stage | seconds |\n| --- | --- |\n",
    );
    let mut total = 0.0;
    for stage in &f.order {
        let took = median(&mut f.stages[stage].clone());
        total += took;
        out.push_str(&format!("| {stage} | {took:.2} |\n"));
    }
    out.push_str(&format!(
        "| (sum of stages) | {total:.2} |\n| (rest of the wall time) | {:.2} |\n",
        warm - total
    ));
}

/// Runs the template benchmarks against `bench`'s daemon; returns the section.
pub(super) fn section(bench: &Bench) -> Result<String> {
    bench.banger(&["image", "pull", "tiny"])?;
    bench.banger(&["kernel", "pull", "debian-6.1-cloud"])?;
    let tiny = measure(bench, "tiny", ROUNDS)?;
    eprintln!("bench templates: debian-bookworm (built once, cached after)");
    bench.banger(&["image", "pull", "debian-bookworm"])?;
    let debian = measure(bench, "debian-bookworm", DEBIAN_ROUNDS)?;
    let mut out = String::from(
        "\n## Warm templates: `vm run --rm -- true` restored vs cold (`cargo xtask bench templates`, alternating)\n\n\
         Debug build of banger, QEMU under TCG, 1 vCPU and 512 MiB (the defaults), no guest network (no root \
         helper: the identity fix-up skips the address part). Warm = the default path once the \
         image's template exists; cold = the same command with `--cold`. Targets (issue 11): warm \
         ≤ 1.0 s on tiny, ≤ 1.5 s on debian-bookworm.\n",
    );
    table(&mut out, "tiny", ROUNDS, &tiny);
    table(&mut out, "debian-bookworm", DEBIAN_ROUNDS, &debian);
    Ok(out)
}

/// Replaces the templates section of `report` (or appends it).
pub(super) fn splice(report: &str, section: &str) -> String {
    super::splice_section(report, "Warm templates", section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_times_are_deltas_of_done_lines() {
        let stderr = "[  0.0s] reserve name ...\n[  0.0s] reserve name ... done (x)\n\
                      [  0.1s] warm start ... done (from template t)\n\
                      [  0.4s] restore ... done (warm)\nnoise\n[  0.9s] new identity ... done (a, b)\n";
        let got = stage_times(stderr);
        let names: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            names,
            ["reserve name", "warm start", "restore", "new identity"]
        );
        assert!((got[2].1 - 0.3).abs() < 1e-9, "{got:?}");
        assert!((got[3].1 - 0.5).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn the_section_is_replaced_in_place() {
        let report = "# B\n\n## Warm templates: old\nold\n\n## Two\ny\n";
        assert_eq!(
            splice(report, "\n## Warm templates: new\nnew\n"),
            "# B\n\n## Warm templates: new\nnew\n\n## Two\ny\n"
        );
    }
}
