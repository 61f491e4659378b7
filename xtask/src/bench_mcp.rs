//! `cargo xtask bench mcp`: what the MCP layer costs. `tools/call vm_run` of `true`
//! (tiny image) through one long-lived `banger mcp` process, end to end (request written
//! to its stdin to the answer read from its stdout), against `banger vm run --rm -- true`
//! as a whole CLI process, alternating the two after one warm-up, in one run. Uses the
//! debug build the e2e tests use and the e2e image cache; no network.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Bench, median};

const ROUNDS: usize = 2;

pub(super) fn run(root: &Path) -> Result<()> {
    crate::build_binaries(root, false)?;
    crate::build_agent(root)?;
    let dir = std::path::PathBuf::from(format!("/tmp/banger-bench-mcp-{}", std::process::id()));
    for sub in ["home", "state", "run", "config"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/debug"),
        dir: dir.clone(),
        daemon: None,
        netns: None,
        extra_env: vec![(
            "BANGER_CACHE_DIR".into(),
            root.join("target/e2e-cache").display().to_string(),
        )],
    };
    bench.start_daemon()?;
    let (cli, mcp) = measure(&bench)?;
    drop(bench);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut cli, mut mcp) = (cli, mcp);
    let (cli_m, mcp_m) = (median(&mut cli), median(&mut mcp));
    let section = format!(
        "\n## MCP (`cargo xtask bench mcp`)\n\n\
Tiny image, debug build, {ROUNDS} rounds alternating after one warm-up, median seconds.\n\n\
| what | seconds |\n| --- | --- |\n\
| `banger vm run --image tiny --rm -- true` (whole CLI process) | {cli_m:.2} |\n\
| `tools/call vm_run {{\"image\":\"tiny\",\"argv\":[\"true\"]}}` to a running `banger mcp` (request to answer; create, exec, delete) | {mcp_m:.2} |\n\n\
MCP vs CLI: **{:.2}x**. Rounds: CLI {cli:.2?}, MCP {mcp:.2?}.\n",
        mcp_m / cli_m
    );
    let path = root.join("BENCHMARKS.md");
    let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, splice(&report, &section))?;
    eprintln!("bench: wrote the MCP section of BENCHMARKS.md{section}");
    Ok(())
}

fn measure(bench: &Bench) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut child = bench
        .command(&bench.bin.join("banger"))
        .arg("mcp")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(bench.env())
        .current_dir(&bench.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run banger mcp")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut id = 0;
    let mut request = |method: &str, params: serde_json::Value| -> Result<serde_json::Value> {
        id += 1;
        let message =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{message}")?;
        stdin.flush()?;
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line)? == 0 {
                bail!("banger mcp closed its output");
            }
            let answer: serde_json::Value = serde_json::from_str(&line)?;
            if answer["id"] == id {
                return Ok(answer);
            }
        }
    };
    request(
        "initialize",
        serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "xtask-bench", "version": "1"}}),
    )?;
    let mut vm_run = || -> Result<f64> {
        let t = Instant::now();
        let answer = request(
            "tools/call",
            serde_json::json!({"name": "vm_run", "arguments": {"image": "tiny", "argv": ["true"]}}),
        )?;
        let took = t.elapsed().as_secs_f64();
        if answer["result"]["structuredContent"]["exit_code"] != 0 {
            bail!("vm_run did not succeed: {answer}");
        }
        Ok(took)
    };
    // Warm-up: image and kernel resolve from the cache.
    bench.banger(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
    let (mut cli, mut mcp) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        bench.banger(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
        cli.push(t.elapsed().as_secs_f64());
        mcp.push(vm_run()?);
        eprintln!(
            "bench: cli {:.2}s, mcp {:.2}s",
            cli[cli.len() - 1],
            mcp[mcp.len() - 1]
        );
    }
    drop(stdin);
    let _ = child.wait();
    Ok((cli, mcp))
}

/// `report` with its `## MCP` section replaced by `section` (appended when absent).
fn splice(report: &str, section: &str) -> String {
    let Some(start) = report.find("\n## MCP") else {
        return format!("{}\n{section}", report.trim_end_matches('\n'));
    };
    let rest = &report[start + 1..];
    let after = rest.find("\n## ").map_or("", |end| &rest[end..]);
    format!("{}{section}{after}", &report[..start])
}
