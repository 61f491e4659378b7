//! `cargo xtask bench`: end-to-end benchmarks on real guests, written to BENCHMARKS.md.
//!
//! Ratios are measured within one run, alternating the two sides of each comparison,
//! because absolute times on shared 2-core machines are noisy:
//! - `vm create` to ready, and `vm start` (boot only) to ready, vs the very same QEMU
//!   command line launched by hand on a copy of the same prepared disk, to the same
//!   readiness (the guest agent's first answer);
//! - root disk provisioning time vs image size;
//! - daemon idle RSS;
//! - `vm exec true` round trip (the RPC, and the whole CLI process);
//! - OCI image import vs skopeo + umoci + mkfs.ext4, and on a shared base
//!   (`bench_images.rs`; `cargo xtask bench images` runs that part alone);
//! - workspace export of 1,000 changed files, `vm cp` of a tree vs `tar | vm exec` and
//!   `tar | ssh` (`bench_workspace.rs`; `cargo xtask bench export` alone).
//! - network policies: the policy resolver's added latency and rate, the helper's policy
//!   operations (`bench_policy.rs`; only with `cargo xtask bench policy`, no guest);
//! - warm starts: `vm fork` from a snapshot vs cold boots (`bench_warm.rs`; `cargo xtask
//!   bench warm` runs that part alone, on a debug build).
//! - published ports: a 64 MiB HTTP transfer through the daemon's forwarder vs straight
//!   from the guest's address (`bench_ports.rs`; only with `cargo xtask bench ports`,
//!   needs root).
//! - workspace import and prepare vs ssh + tar (`bench_workspaces.rs`; run on its own
//!   with `cargo xtask bench workspaces`, it needs root);
//! - `tools/call vm_run` through `banger mcp` vs `banger vm run --rm` (`bench_mcp.rs`;
//!   only with `cargo xtask bench mcp`).
//! - the keystroke round trip of `vm exec -it` vs `vm ssh` (`bench_tty.rs`; only with
//!   `cargo xtask bench tty`, needs root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[path = "bench_images.rs"]
mod images;
#[path = "bench_mcp.rs"]
mod mcp;
#[path = "bench_policy.rs"]
mod policy;
#[path = "bench_ports.rs"]
mod ports;
#[path = "bench_templates.rs"]
mod templates;
#[path = "bench_tty.rs"]
mod tty;
#[path = "bench_warm.rs"]
mod warm;
#[path = "bench_workspace.rs"]
mod workspace;
#[path = "bench_workspaces.rs"]
mod workspaces;

const ROUNDS: usize = 5;
const EXEC_ROUNDS: usize = 30;

struct Bench {
    root: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    daemon: Option<Child>,
    /// When set, the daemon and every CLI call run in this network namespace.
    netns: Option<String>,
    extra_env: Vec<(String, String)>,
}

impl Bench {
    fn env(&self) -> Vec<(String, String)> {
        let d = &self.dir;
        vec![
            ("HOME".into(), d.join("home").display().to_string()),
            (
                "BANGER_STATE_DIR".into(),
                d.join("state").display().to_string(),
            ),
            (
                "BANGER_RUNTIME_DIR".into(),
                d.join("run").display().to_string(),
            ),
            (
                "BANGER_CONFIG_DIR".into(),
                d.join("config").display().to_string(),
            ),
            (
                "BANGER_CACHE_DIR".into(),
                self.root.join("target/bench-cache").display().to_string(),
            ),
            (
                "BANGER_AGENT".into(),
                self.root
                    .join("target/agent/x86_64-unknown-linux-gnu/release/banger-agent")
                    .display()
                    .to_string(),
            ),
            ("NO_COLOR".into(), "1".into()),
            // Not a helper the user may have running at the default socket; the network
            // phase starts its own and overrides this through `extra_env`.
            (
                "BANGER_HELPER_SOCKET".into(),
                d.join("no-helper.sock").display().to_string(),
            ),
        ]
        .into_iter()
        .chain(self.extra_env.iter().cloned())
        .collect()
    }

    /// `program` as a command, inside the bench's namespace when it has one.
    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn banger(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(&self.bin.join("banger"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .context("cannot run banger")?;
        if !out.status.success() {
            bail!(
                "banger {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        Ok(serde_json::from_str(&self.banger(&all)?)?)
    }

    fn start_daemon(&mut self) -> Result<u32> {
        let log = std::fs::File::create(self.dir.join("bangerd.log"))?;
        let child = self
            .command(&self.bin.join("bangerd"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.banger(&["ping"]).is_err() {
            if Instant::now() > deadline {
                bail!("bangerd did not start");
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        Ok(pid)
    }
}

impl Bench {
    fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.banger(&["vm", "prune", "-f"]);
        if let Ok(list) = self.json(&["vm", "list"]) {
            for vm in list.as_array().into_iter().flatten() {
                if let Some(name) = vm["name"].as_str() {
                    let _ = self.banger(&["vm", "delete", "--force", name]);
                }
            }
        }
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo xtask bench warm` (or `templates`): only that section, on debug binaries
/// (the figures are QEMU's and the guest's), spliced into the existing report.
fn run_warm(root: &Path, templates: bool) -> Result<()> {
    crate::build_binaries(root, false)?;
    crate::build_agent(root)?;
    warm_tiny_cache()?;
    let dir = PathBuf::from(format!("/tmp/banger-bench-{}", std::process::id()));
    for sub in ["home", "state", "run", "config"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/debug"),
        dir,
        daemon: None,
        netns: None,
        // The e2e tests' cache (the tiny image and kernel are usually built there).
        extra_env: vec![(
            "BANGER_CACHE_DIR".into(),
            root.join("target/e2e-cache").display().to_string(),
        )],
    };
    bench.start_daemon()?;
    let path = root.join("BENCHMARKS.md");
    if templates {
        let section = templates::section(&bench)?;
        let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, templates::splice(&report, &section))?;
        eprintln!("bench: wrote the warm-template section of BENCHMARKS.md");
        return Ok(());
    }
    let section = warm::section(&bench)?;
    let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, warm::splice(&report, &section))?;
    eprintln!("bench: wrote the warm-start section of BENCHMARKS.md");
    Ok(())
}

/// Replaces the section of `report` whose heading starts with `## {heading}` (up to the
/// next `## `) by `section`, or appends `section` when there is none.
fn splice_section(report: &str, heading: &str, section: &str) -> String {
    let Some(start) = report.find(&format!("\n## {heading}")) else {
        return format!("{}\n{section}", report.trim_end_matches('\n'));
    };
    let rest = &report[start + 1..];
    let after = rest.find("\n## ").map_or("", |end| &rest[end..]);
    format!("{}{section}{after}", &report[..start])
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("policy") {
        // No guest and no release build: the resolver runs in this process, the helper
        // is the debug build.
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "banger-helper"])
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!("cargo build -p banger-helper failed");
        }
        let section = policy::section(root)?;
        let path = root.join("BENCHMARKS.md");
        let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, policy::splice(&report, &section))?;
        eprintln!("bench: wrote the network policy section of BENCHMARKS.md");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("warm") {
        return run_warm(root, false);
    }
    if args.first().map(String::as_str) == Some("templates") {
        return run_warm(root, true);
    }
    if args.first().map(String::as_str) == Some("ports") {
        return run_ports(root);
    }
    if args.first().map(String::as_str) == Some("workspaces") {
        return workspaces::run(root);
    }
    if args.first().map(String::as_str) == Some("mcp") {
        return mcp::run(root);
    }
    if args.first().map(String::as_str) == Some("tty") {
        return tty::run(root);
    }
    crate::build_binaries(root, true)?;
    crate::build_agent(root)?;
    let dir = PathBuf::from(format!("/tmp/banger-bench-{}", std::process::id()));
    for sub in ["home", "state", "run", "config", "manual"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/release"),
        dir,
        daemon: None,
        netns: None,
        extra_env: Vec::new(),
    };
    let daemon_pid = bench.start_daemon()?;
    if args.first().map(String::as_str) == Some("images") {
        // Only the image section, spliced into the existing report.
        let section = images::section(&bench)?;
        let path = root.join("BENCHMARKS.md");
        let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, images::splice(&report, &section))?;
        eprintln!("bench: wrote the images section of BENCHMARKS.md");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("export") {
        let section = workspace::section(&bench)?;
        let path = root.join("BENCHMARKS.md");
        let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&path, workspace::splice(&report, &section))?;
        eprintln!("bench: wrote the workspace section of BENCHMARKS.md");
        return Ok(());
    }
    let idle_rss = rss_kib(daemon_pid)?;
    // Asked now: the network phase below restarts the daemon in a namespace and stops it.
    let accelerator = accel(&bench)?;

    eprintln!("bench: pulling the tiny image and the kernel (cached after the first run)");
    bench.banger(&["image", "pull", "tiny"])?;
    bench.banger(&["kernel", "pull", "debian-6.1-cloud"])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut create = Vec::new();
    let mut start = Vec::new();
    let mut manual = Vec::new();
    let mut run_rm = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("bench-{round}");
        let t = Instant::now();
        bench.banger(&["vm", "create", "--image", "tiny", "--name", &name])?;
        create.push(t.elapsed().as_secs_f64());
        let info = bench.json(&["vm", "show", &name])?;
        let id = info["id"].as_str().context("no id")?.to_string();
        bench.banger(&["vm", "stop", &name])?;
        let t = Instant::now();
        bench.banger(&["vm", "start", &name])?;
        start.push(t.elapsed().as_secs_f64());
        let pid = bench.json(&["vm", "show", &name])?["pid"]
            .as_u64()
            .context("no pid")?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        bench.banger(&["vm", "stop", &name])?;
        manual.push(runtime.block_on(manual_launch(&bench.dir, &id, &args))?);
        bench.banger(&["vm", "delete", &name])?;
        let t = Instant::now();
        bench.banger(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
        run_rm.push(t.elapsed().as_secs_f64());
        eprintln!(
            "bench: round {round}: create {:.2}s, start {:.2}s, by hand {:.2}s, run --rm {:.2}s",
            create[round], start[round], manual[round], run_rm[round]
        );
    }

    bench.banger(&["vm", "create", "--image", "tiny", "--name", "bench-exec"])?;
    let mut rpc = Vec::new();
    let mut cli = Vec::new();
    let socket = bench.dir.join("run/bangerd.sock");
    for _ in 0..EXEC_ROUNDS {
        let t = Instant::now();
        bench.banger(&["vm", "exec", "bench-exec", "--", "true"])?;
        cli.push(t.elapsed().as_secs_f64() * 1000.0);
        rpc.push(runtime.block_on(exec_rpc(&socket))? * 1000.0);
    }
    let busy_rss = rss_kib(daemon_pid)?;
    bench.banger(&["vm", "delete", "--force", "bench-exec"])?;

    let provisioning = runtime.block_on(provisioning(&bench.dir))?;
    let images = images::section(&bench)?;
    let network = network_phase(&mut bench)?;
    let dns = dns_bench(root)?;

    let mut manual_sorted = manual.clone();
    let manual_median = median(&mut manual_sorted);
    let create_median = median(&mut create.clone());
    let start_median = median(&mut start.clone());
    let mut report = String::new();
    report
        .push_str("# Benchmarks\n\nProduced by `cargo xtask bench` (release build, QEMU microvm; ");
    report.push_str(&format!(
        "accelerator as `banger health` reports: {accelerator}).\n"
    ));
    report.push_str(&format!(
        "Machine: {} cores. Absolute times are noisy on shared machines; each comparison is made within one run, alternating sides.\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    report.push_str(&format!(
        "## Boot to ready, tiny image (median of {ROUNDS})\n\n| what | seconds |\n| --- | --- |\n"
    ));
    report.push_str(&format!("| `banger vm create` (CLI start to ready: name, disk copy + patch, boot, agent) | {create_median:.2} |\n"));
    report.push_str(&format!(
        "| `banger vm start` (CLI start to ready: boot, agent) | {start_median:.2} |\n"
    ));
    report.push_str(&format!("| the same QEMU command line by hand, on a copy of the same disk, to the agent's first answer | {manual_median:.2} |\n"));
    report.push_str(&format!(
        "\nbanger's overhead over the hand-run VMM: **{:+.1}%** for `vm start`, {:+.1}% for `vm create` (target: <= 15%). A negative figure means the difference is inside the run-to-run noise. `vm start` is the like-for-like comparison; `vm create` also copies, checks (`e2fsck -fy`), grows and patches the root disk before the boot, which the hand-run launch reuses.\n",
        (start_median / manual_median - 1.0) * 100.0,
        (create_median / manual_median - 1.0) * 100.0
    ));
    report.push_str(&format!(
        "\nRaw: create {create:.2?}, start {start:.2?}, by hand {manual:.2?}.\n"
    ));
    report.push_str(&format!(
        "\n## `vm exec VM -- true` round trip ({EXEC_ROUNDS} runs)\n\n| path | median ms | p90 ms |\n| --- | --- | --- |\n| RPC to the daemon (agent exec over virtio-serial) | {:.1} | {:.1} |\n| whole `banger vm exec` process | {:.1} | {:.1} |\n\nTarget: <= 50 ms under TCG.\n",
        median(&mut rpc.clone()),
        percentile(&mut rpc.clone(), 0.9),
        median(&mut cli.clone()),
        percentile(&mut cli.clone(), 0.9),
    ));
    report.push_str(&format!(
        "\n## Daemon memory\n\n| state | RSS |\n| --- | --- |\n| idle (started, no VMs) | {:.1} MiB |\n| after the runs above | {:.1} MiB |\n\nTarget: idle <= 25 MiB.\n",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0
    ));
    report.push_str("\n## Root disk provisioning vs image size\n\nThe same 64 MiB of incompressible data in ext4 images of growing apparent size (`mkfs.ext4 -d`); the VM disk is a private copy of the image, made as `banger vm create` makes it (median of 3).\n\n| image size | method | seconds |\n| --- | --- | --- |\n");
    for (size, method, secs) in &provisioning {
        report.push_str(&format!("| {size} | {method} | {secs:.3} |\n"));
    }
    report.push_str("\nOn a filesystem with reflinks (XFS, btrfs) the copy is a reflink and costs the same at every size; on ext4 (CI) it is a sparse copy whose cost follows the allocated data, not the apparent size.\n");
    let run_rm_median = median(&mut run_rm.clone());
    report.push_str(&format!(
        "\n## `vm run --rm -- true` vs booting the same guest by hand (tiny, median of {ROUNDS})\n\n| what | seconds |\n| --- | --- |\n| `banger vm run --image tiny --rm -- true` (create, boot, run, delete; whole CLI) | {run_rm_median:.2} |\n| the same QEMU command line by hand to the agent's first answer (above) | {manual_median:.2} |\n\nOverhead: **{:+.1}%** (target: <= 20%). Raw: {run_rm:.2?}.\n",
        (run_rm_median / manual_median - 1.0) * 100.0
    ));
    report.push_str(&images);
    report.push_str(&workspace::section(&bench)?);
    report.push_str(&network);
    report.push_str(&dns);
    std::fs::write(root.join("BENCHMARKS.md"), report)?;
    eprintln!("bench: wrote BENCHMARKS.md");
    Ok(())
}

fn accel(bench: &Bench) -> Result<String> {
    Ok(bench.json(&["health"])?["accelerator"]
        .as_str()
        .unwrap_or("?")
        .to_string())
}

/// Launches banger's own QEMU command line for VM `id` on a copy of its disk, with every
/// path moved to a scratch directory, and times spawn -> first agent answer.
async fn manual_launch(dir: &Path, id: &str, args: &[String]) -> Result<f64> {
    let scratch = dir.join("manual");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("run"))?;
    let vm_dir = dir.join("state/vms").join(id).display().to_string();
    let run_dir = dir.join("run/vms").join(id).display().to_string();
    let disk = scratch.join("root.ext4");
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(format!("{vm_dir}/root.ext4"))
        .arg(&disk)
        .status()?;
    if !status.success() {
        bail!("cp failed");
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace(&vm_dir, &scratch.display().to_string())
                .replace(&run_dir, &scratch.join("run").display().to_string())
        })
        .collect();
    let agent = scratch.join("run/agent.sock");
    let started = Instant::now();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start QEMU by hand")?;
    let deadline = Duration::from_secs(120);
    let result = async {
        loop {
            if started.elapsed() > deadline {
                bail!("the hand-launched guest did not answer within {deadline:?}");
            }
            match banger_proto::agent_client::AgentClient::connect_unix(&agent).await {
                Ok(client) => loop {
                    if client.hello(Duration::from_secs(1)).await.is_ok() {
                        return Ok(started.elapsed().as_secs_f64());
                    }
                    if started.elapsed() > deadline {
                        bail!("no hello");
                    }
                },
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// One `vm.exec true` over the daemon's socket.
async fn exec_rpc(socket: &Path) -> Result<f64> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let started = Instant::now();
    write
        .write_all(b"{\"v\":1,\"id\":1,\"method\":\"vm.exec\",\"params\":{\"vm\":\"bench-exec\",\"argv\":[\"true\"]}}\n")
        .await?;
    while let Some(line) = lines.next_line().await? {
        let frame: serde_json::Value = serde_json::from_str(&line)?;
        match frame["type"].as_str() {
            Some("result") => return Ok(started.elapsed().as_secs_f64()),
            Some("error") => bail!("exec failed: {line}"),
            _ => {}
        }
    }
    bail!("connection closed")
}

/// Provisioning time for ext4 images with the same content and growing apparent size.
async fn provisioning(dir: &Path) -> Result<Vec<(String, String, f64)>> {
    let runner = banger_exec::SystemRunner;
    let work = dir.join("provision");
    std::fs::create_dir_all(work.join("tree/data"))?;
    // 64 MiB of incompressible data so every image holds the same allocated bytes.
    let data: Vec<u8> = (0..64u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("tree/data/blob"), &data)?;
    let mut rows = Vec::new();
    for size_gib in [1u64, 4, 16] {
        let image = work.join(format!("image-{size_gib}.ext4"));
        let file = std::fs::File::create(&image)?;
        file.set_len(size_gib << 30)?;
        drop(file);
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(work.join("tree"))
            .arg(&image)
            .status()?;
        if !status.success() {
            bail!("mkfs.ext4 failed");
        }
        let mut times = Vec::new();
        let mut method = String::new();
        for _ in 0..ROUNDS {
            let disk = work.join("disk.ext4");
            let _ = std::fs::remove_file(&disk);
            let t = Instant::now();
            let used = banger_vm::disk::provision(&runner, &image, &disk).await?;
            times.push(t.elapsed().as_secs_f64());
            method = used.as_str().to_string();
        }
        rows.push((format!("{size_gib} GiB"), method, median(&mut times)));
        let _ = std::fs::remove_file(&image);
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(rows)
}

/// The daemon and the root helper inside a network namespace made for the bench, so
/// guests get a NIC: `vm exec` vs `vm ssh` round trips, and `vm run --rm -- true` with
/// networking. Returns the report section.
/// `cargo xtask bench ports`: published-port throughput against direct access to the
/// guest's address (needs root: a network namespace and banger-helper), on debug
/// binaries, spliced into the existing report.
fn run_ports(root: &Path) -> Result<()> {
    if nix_is_root().is_none() {
        bail!("cargo xtask bench ports needs root (a network namespace and banger-helper)");
    }
    crate::build_binaries(root, false)?;
    crate::build_agent(root)?;
    warm_tiny_cache()?;
    let dir = PathBuf::from(format!("/tmp/banger-bench-{}", std::process::id()));
    for sub in ["home", "state", "run", "config"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/debug"),
        dir,
        daemon: None,
        netns: None,
        extra_env: Vec::new(),
    };
    let ns = format!("bgbench-{}", std::process::id());
    let netns = NetnsGuard::new(&ns)?;
    let (mut helper, socket) = start_netns_helper(&bench, &ns)?;
    bench.netns = Some(ns.clone());
    bench.extra_env = vec![
        ("BANGER_HELPER_SOCKET".into(), socket.display().to_string()),
        (
            "BANGER_CACHE_DIR".into(),
            root.join("target/e2e-cache").display().to_string(),
        ),
    ];
    let result = bench
        .start_daemon()
        .and_then(|_| ports::section(&bench, &ns));
    // The VM goes before the namespace and the helper.
    let _ = bench.banger(&["vm", "delete", "--force", ports::VM]);
    bench.stop_daemon();
    bench.netns = None;
    let _ = helper.kill();
    let _ = helper.wait();
    drop(netns);
    let section = result?;
    let path = root.join("BENCHMARKS.md");
    let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, ports::splice(&report, &section))?;
    eprintln!("bench: wrote the published-ports section of BENCHMARKS.md");
    Ok(())
}

fn network_phase(bench: &mut Bench) -> Result<String> {
    if nix_is_root().is_none() {
        return Ok("\n## Guest access over the network\n\nNot measured: needs root (network namespace and banger-helper).\n".into());
    }
    bench.stop_daemon();
    let ns = format!("bgbench-{}", std::process::id());
    let netns = NetnsGuard::new(&ns)?;
    let (mut helper, socket) = start_netns_helper(bench, &ns)?;
    bench.netns = Some(ns.clone());
    bench.extra_env = vec![("BANGER_HELPER_SOCKET".into(), socket.display().to_string())];
    let result = (|| -> Result<String> {
        bench.start_daemon()?;
        let mut run_net = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            bench.banger(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
            run_net.push(t.elapsed().as_secs_f64());
        }
        bench.banger(&["vm", "create", "--image", "tiny", "--name", "bench-net"])?;
        let address = bench.json(&["vm", "show", "bench-net"])?["address"]
            .as_str()
            .unwrap_or("-")
            .to_string();
        // The first ssh records nothing new (the host key is known) but warms the caches.
        bench.banger(&["vm", "ssh", "bench-net", "--", "true"])?;
        let mut exec = Vec::new();
        let mut ssh = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            bench.banger(&["vm", "exec", "bench-net", "--", "true"])?;
            exec.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            bench.banger(&["vm", "ssh", "bench-net", "--", "true"])?;
            ssh.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        bench.banger(&["vm", "delete", "--force", "bench-net"])?;
        Ok(format!(
            "\n## Guest access over the network (daemon and banger-helper in a network namespace; guest {address})\n\n| what | median | p90 |\n| --- | --- | --- |\n| `banger vm exec VM -- true` (agent, virtio-serial) | {:.0} ms | {:.0} ms |\n| `banger vm ssh VM -- true` (OpenSSH to the guest's dropbear) | {:.0} ms | {:.0} ms |\n| `banger vm run --image tiny --rm -- true` with a NIC (tap from the helper) | {:.2} s | |\n\nRaw `vm run` with a NIC: {run_net:.2?}.\n",
            median(&mut exec.clone()),
            percentile(&mut exec.clone(), 0.9),
            median(&mut ssh.clone()),
            percentile(&mut ssh.clone(), 0.9),
            median(&mut run_net.clone()),
        ))
    })();
    bench.stop_daemon();
    bench.netns = None;
    let _ = helper.kill();
    let _ = helper.wait();
    drop(netns);
    result
}

/// Pulls the tiny image and its kernel into `target/e2e-cache` with a daemon in the
/// host's own namespace: the benches' network namespaces have no route out, so a fresh
/// clone's first run could not fetch them from there. A no-op once cached.
fn warm_tiny_cache() -> Result<()> {
    eprintln!("bench: pulling the tiny image and its kernel (cached after the first run)");
    let host = banger_e2e::TestHost::start()?;
    let image = host.banger_json(&["image", "pull", "tiny"]);
    let kernel = image["kernel"]
        .as_str()
        .context("`image pull tiny` names no kernel")?;
    host.banger_ok(&["kernel", "pull", kernel]);
    Ok(())
}

/// Starts banger-helper in `ns` for the bench's state; answers it and its socket once it
/// listens.
fn start_netns_helper(bench: &Bench, ns: &str) -> Result<(Child, PathBuf)> {
    use std::os::unix::fs::PermissionsExt as _;
    // The helper refuses a socket directory that group or others can write to: a private
    // one (0700, whatever the umask made of the bench's directory).
    let socket_dir = bench.dir.join("helper");
    std::fs::create_dir_all(&socket_dir)?;
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))?;
    let socket = socket_dir.join("helper.sock");
    let uid = nix_is_root().unwrap_or(0).to_string();
    let helper_log = std::fs::File::create(bench.dir.join("helper.log"))?;
    let mut helper = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bench.bin.join("banger-helper"))
        .args(["--owner-uid", &uid, "--state-dir"])
        .arg(bench.dir.join("state"))
        .arg("--runtime-dir")
        .arg(bench.dir.join("run"))
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(helper_log.try_clone()?)
        .stderr(helper_log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            let _ = helper.kill();
            let _ = helper.wait();
            let log = std::fs::read_to_string(bench.dir.join("helper.log")).unwrap_or_default();
            bail!(
                "banger-helper did not listen on {}: {log}",
                socket.display()
            );
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    Ok((helper, socket))
}

/// The effective uid when it is root (0), for the helper's `--owner-uid`.
fn nix_is_root() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    (uid == 0).then_some(uid)
}

/// A network namespace that is deleted when dropped.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new(name: &str) -> Result<NetnsGuard> {
        let _ = Command::new("ip").args(["netns", "delete", name]).status();
        if !Command::new("ip")
            .args(["netns", "add", name])
            .status()?
            .success()
        {
            bail!("cannot create network namespace {name}");
        }
        let _ = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status();
        Ok(NetnsGuard(name.to_string()))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// The `.vm` DNS responder under load over loopback (banger-dns's bench example).
fn dns_bench(root: &Path) -> Result<String> {
    let mut rows = String::new();
    for clients in ["1", "2"] {
        let out = Command::new("cargo")
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "banger-dns",
                "--example",
                "dns_bench",
                "--",
            ])
            .args(["--clients", clients, "--json"])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("dns_bench failed");
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let value: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("{}"))?;
        rows.push_str(&format!(
            "| {clients} | {} | {:.0} | {:.1} | {:.1} | {} |\n",
            value["answered"],
            value["qps"].as_f64().unwrap_or(0.0),
            value["p50_us"].as_f64().unwrap_or(0.0),
            value["p99_us"].as_f64().unwrap_or(0.0),
            value["lost"]
        ));
    }
    Ok(format!(
        "\n## `.vm` DNS responder (`cargo run --release -p banger-dns --example dns_bench -- --clients N --json`)\n\nA queries over loopback, each client waiting for its answer.\n\n| clients | answered | queries/s | p50 us | p99 us | lost |\n| --- | --- | --- | --- | --- | --- |\n{rows}"
    ))
}
