//! `cargo xtask bench workspaces`: how fast a repository gets into a guest, against the
//! obvious alternative, within one run, same tiny image, same VM settings.
//!
//! A generated repository (`git fast-import`: by default 10,000 files, 200 MiB of
//! incompressible content, 2,000 commits) is copied
//! - into a new VM: `vm run REPO -- true` minus `vm run -- true` (the import's cost,
//!   boot excluded), against `{ git ls-files -z; .git } | tar --null -T - -c | ssh guest
//!   tar -x -C /root/repo` into a running VM (OpenSSH to the guest's dropbear);
//! - into a running VM: `vm workspace prepare VM REPO` against the same ssh pipeline.
//!
//! Needs root (a network namespace and banger-helper, for ssh). Uses the debug build
//! the e2e tests use (no release build on shared machines) and the e2e image cache.
//! `BANGER_BENCH_WS_SCALE=N` (percent) shrinks the repository; the report says its size.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{Bench, NetnsGuard, nix_is_root};

/// The generated repository's shape.
struct Shape {
    files: usize,
    bytes: u64,
    commits: usize,
}

impl Shape {
    fn scaled() -> Shape {
        let scale: u64 = std::env::var("BANGER_BENCH_WS_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s| (1..=100).contains(s))
            .unwrap_or(100);
        Shape {
            files: (10_000 * scale / 100).max(10) as usize,
            bytes: (200 << 20) * scale / 100,
            commits: (2_000 * scale / 100).max(2) as usize,
        }
    }
}

/// xorshift64*: incompressible bytes, quickly, with no dependency.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Builds the repository at `repo` with one `git fast-import` stream: the first commit
/// adds every file, each later one edits one small file; then checks the tree out.
fn generate(repo: &Path, shape: &Shape) -> Result<()> {
    std::fs::create_dir_all(repo)?;
    let git = |args: &[&str]| -> Result<()> {
        let status = Command::new("git")
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(repo)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("git {args:?} failed");
        }
        Ok(())
    };
    git(&["init", "-q"])?;
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().context("fast-import stdin")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let size = (shape.bytes / shape.files as u64) as usize;
    let mut buf = vec![0u8; size];
    let path = |i: usize| format!("src/d{:03}/f{i:05}.bin", i % 100);
    for i in 0..shape.files {
        noise.fill(&mut buf);
        write!(out, "blob\nmark :{}\ndata {}\n", i + 1, buf.len())?;
        out.write_all(&buf)?;
        out.write_all(b"\n")?;
    }
    let when = 1_700_000_000u64;
    write!(
        out,
        "commit refs/heads/main\nmark :{}\ncommitter Bench <bench@example.invalid> {when} +0000\ndata 7\ninitial\n",
        shape.files + 1
    )?;
    for i in 0..shape.files {
        writeln!(out, "M 100644 :{} {}", i + 1, path(i))?;
    }
    out.write_all(b"\n")?;
    for c in 1..shape.commits {
        let text = format!("change {c}\n");
        write!(
            out,
            "commit refs/heads/main\ncommitter Bench <bench@example.invalid> {} +0000\ndata {}\n{text}\nM 100644 inline notes/n{:03}.txt\ndata {}\n{text}\n",
            when + c as u64,
            text.len(),
            c % 50,
            text.len()
        )?;
    }
    out.flush()?;
    drop(out);
    if !child.wait()?.success() {
        bail!("git fast-import failed");
    }
    git(&["reset", "-q", "--hard"])?;
    Ok(())
}

/// Bytes under `dir` (file contents), for the report.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub(super) fn run(root: &Path) -> Result<()> {
    if nix_is_root().is_none() {
        bail!("bench workspaces needs root (a network namespace and banger-helper, for ssh)");
    }
    crate::build_binaries(root, false)?;
    crate::build_agent(root)?;
    let dir = PathBuf::from(format!("/tmp/banger-bench-ws-{}", std::process::id()));
    for sub in ["home", "state", "run", "config"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let shape = Shape::scaled();
    let repo = dir.join("repo");
    let t = Instant::now();
    generate(&repo, &shape)?;
    eprintln!(
        "bench: generated {} files, {} commits in {:.1}s",
        shape.files,
        shape.commits,
        t.elapsed().as_secs_f64()
    );
    let work_bytes = du(&repo) - du(&repo.join(".git"));
    let git_bytes = du(&repo.join(".git"));

    let ns = format!("bgws-{}", std::process::id());
    let netns = NetnsGuard::new(&ns)?;
    let mut bench = Bench {
        root: root.to_path_buf(),
        bin: root.join("target/debug"),
        dir: dir.clone(),
        daemon: None,
        netns: Some(ns.clone()),
        extra_env: Vec::new(),
    };
    // The same helper as the other network benches: its socket in a private 0700
    // directory of the bench's, which the helper's directory checks accept.
    let (mut helper, socket) = super::start_netns_helper(&bench, &ns)?;
    bench.extra_env = vec![
        ("BANGER_HELPER_SOCKET".into(), socket.display().to_string()),
        (
            "BANGER_CACHE_DIR".into(),
            root.join("target/e2e-cache").display().to_string(),
        ),
    ];
    let result = measure(&mut bench, &repo);
    bench.stop_daemon();
    drop(bench);
    let _ = helper.kill();
    let _ = helper.wait();
    drop(netns);
    let figures = result?;

    let section = format!(
        "\n## Workspaces (`cargo xtask bench workspaces`)\n\n\
Generated repository (`git fast-import`): {} files, {} commits; working tree {:.0} MiB, `.git` {:.0} MiB \
(incompressible content: the worst case for both sides). Tiny image, one run each, debug build, \
daemon and banger-helper in a network namespace (for ssh).\n\n\
| what | seconds |\n| --- | --- |\n\
| `banger vm run --rm REPO -- true` | {:.2} |\n\
| `banger vm run --rm -- true` | {:.2} |\n\
| import into a new VM: the difference (disk built on the host, `mkfs.ext4 -d -`) | {:.2} |\n\
| `{{ git ls-files -z; printf '.git\\0'; }} \\| tar --null -T - -c \\| banger vm ssh VM -- tar -x -C /root/repo` into a running VM | {:.2} |\n\
| `banger vm workspace prepare VM REPO` into a running VM (tar through the agent) | {:.2} |\n\n\
Import into a new VM vs ssh + tar: **{:.2}x** (target <= 0.5x). \
Prepare into a running VM vs ssh + tar: **{:.2}x** (target <= 0.8x).\n",
        shape.files,
        shape.commits,
        work_bytes as f64 / (1 << 20) as f64,
        git_bytes as f64 / (1 << 20) as f64,
        figures.run_repo,
        figures.run_plain,
        figures.run_repo - figures.run_plain,
        figures.ssh,
        figures.prepare,
        (figures.run_repo - figures.run_plain) / figures.ssh,
        figures.prepare / figures.ssh,
    );
    let path = root.join("BENCHMARKS.md");
    let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, splice(&report, &section))?;
    eprintln!("bench: wrote the workspaces section of BENCHMARKS.md{section}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

struct Figures {
    run_repo: f64,
    run_plain: f64,
    ssh: f64,
    prepare: f64,
}

fn measure(bench: &mut Bench, repo: &Path) -> Result<Figures> {
    bench.start_daemon()?;
    let repo_arg = repo.to_str().context("repo path")?;
    // Warm-up: the image and kernel resolve from the cache, the page cache holds the repo.
    bench.banger(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
    let timed = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        bench.banger(args)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let run_plain = timed(&["vm", "run", "--image", "tiny", "--rm", "--", "true"])?;
    let run_repo = timed(&[
        "vm", "run", "--image", "tiny", "--rm", repo_arg, "--", "true",
    ])?;
    eprintln!("bench: vm run: plain {run_plain:.2}s, with the repo {run_repo:.2}s");

    bench.banger(&["vm", "create", "--image", "tiny", "--name", "bench-ws"])?;
    // Waits for the guest's sshd and records its host key.
    bench.banger(&["vm", "ssh", "bench-ws", "--", "true"])?;
    let banger = bench.bin.join("banger");
    let pipeline = format!(
        "set -e; cd '{repo_arg}'; {{ git ls-files -z; printf '.git\\0'; }} | tar --null -T - -c -f - | '{}' vm ssh bench-ws -- 'mkdir -p /root/repo && tar -x -C /root/repo'",
        banger.display()
    );
    let t = Instant::now();
    let out = bench
        .command(Path::new("sh"))
        .args(["-c", &pipeline])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(bench.env())
        .stdin(Stdio::null())
        .output()?;
    let ssh = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "the ssh pipeline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let count = |dir: &str| -> Result<String> {
        bench.banger(&[
            "vm",
            "exec",
            "bench-ws",
            "--",
            "sh",
            "-c",
            &format!("find {dir} -type f | wc -l"),
        ])
    };
    let ssh_files = count("/root/repo")?;
    bench.banger(&["vm", "exec", "bench-ws", "--", "rm", "-rf", "/root/repo"])?;
    let prepare = timed(&["vm", "workspace", "prepare", "bench-ws", repo_arg])?;
    let prepared_files = count("/root/repo")?;
    eprintln!(
        "bench: ssh + tar {ssh:.2}s ({} files), prepare {prepare:.2}s ({} files)",
        ssh_files.trim(),
        prepared_files.trim()
    );
    bench.banger(&["vm", "delete", "--force", "bench-ws"])?;
    Ok(Figures {
        run_repo,
        run_plain,
        ssh,
        prepare,
    })
}

/// `report` with its `## Workspaces` section replaced by `section` (appended when
/// absent).
fn splice(report: &str, section: &str) -> String {
    let Some(start) = report.find("\n## Workspaces") else {
        return format!("{}\n{section}", report.trim_end_matches('\n'));
    };
    let rest = &report[start + 1..];
    let after = rest.find("\n## ").map_or("", |end| &rest[end..]);
    format!("{}{section}{after}", &report[..start])
}
