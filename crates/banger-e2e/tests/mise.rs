//! mise bootstrap on real guests. The root helper and the daemon run in a network
//! namespace made for the test ("the host"), joined by a veth to a second one ("the
//! internet") whose HTTP server serves one small tool as a tarball. The repository's
//! `.mise.toml` declares it through mise's `http:` backend, so `mise install` in a
//! `debian-bookworm` guest (which carries mise) needs the internet namespace and nothing
//! else. Checked: without `--nat` the run is refused before any VM exists; with it the
//! command finds the tool (`mise exec`), the trust step leaves nothing to confirm, `vm
//! exec` on the workspace finds it too and exit codes pass through; `--no-bootstrap`
//! installs nothing; a tool that cannot be downloaded fails the run with the log's tail;
//! on `tiny` (no mise) the run says so and goes on. No traffic leaves the namespaces.
//!
//! Needs root plus what every VM test needs; otherwise it is a recorded skip
//! (`require_vm!`), fatal under `CI=true`.

// Test code: measurements go to stderr, and the lab's tools run directly.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use banger_e2e::{
    HostOptions, TestHost, bin_dir, exit_code, git, report_timing, require_vm, tail, text,
    wait_until,
};

const UPLINK: &str = "bgmi0";
const UPLINK_HOST_IP: &str = "172.31.0.1";
const INTERNET_IP: &str = "172.31.0.2";
const HTTP_PORT: u16 = 8080;
const TOOL_VERSION: &str = "1.2.3";
/// Debian guests under TCG on a shared two-core host, plus a first image build.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// The two namespaces, the veth, the HTTP server and the root helper; dropped after the
/// [`TestHost`] (declare it first).
struct Lab {
    ns: String,
    internet: String,
    dir: tempfile::TempDir,
    http: Option<Child>,
    helper: Option<Child>,
}

impl Lab {
    fn new() -> Result<Lab> {
        let id = std::process::id();
        let lab = Lab {
            ns: format!("bgmise-{id}"),
            internet: format!("bgmisei-{id}"),
            dir: tempfile::Builder::new()
                .prefix("banger-mise-lab-")
                .tempdir()?,
            http: None,
            helper: None,
        };
        ip(&["netns", "add", &lab.ns])?;
        ip(&["netns", "add", &lab.internet])?;
        for ns in [&lab.ns, &lab.internet] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            &lab.ns,
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "bgmi1",
            "netns",
            &lab.internet,
        ])?;
        let host_addr = format!("{UPLINK_HOST_IP}/30");
        ip(&["-n", &lab.ns, "addr", "add", &host_addr, "dev", UPLINK])?;
        ip(&["-n", &lab.ns, "link", "set", UPLINK, "up"])?;
        let inet_addr = format!("{INTERNET_IP}/30");
        ip(&[
            "-n",
            &lab.internet,
            "addr",
            "add",
            &inet_addr,
            "dev",
            "bgmi1",
        ])?;
        ip(&["-n", &lab.internet, "link", "set", "bgmi1", "up"])?;
        ip(&["-n", &lab.ns, "route", "add", "default", "via", INTERNET_IP])?;
        let etc = PathBuf::from(format!("/etc/netns/{}", lab.ns));
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {INTERNET_IP}\n"),
        )?;
        Ok(lab)
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    fn http_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("http.log")).unwrap_or_default()
    }

    /// Serves [`Lab::www`] from "the internet", logging each request.
    fn start_http(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("http.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.internet])
            .args(["python3", "-u", "-m", "http.server"])
            .arg(HTTP_PORT.to_string())
            .args(["--bind", INTERNET_IP, "--directory"])
            .arg(self.www())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.http = Some(child);
        wait_until("the HTTP server listens", Duration::from_secs(20), || {
            let log = self.http_log();
            if log.contains("Serving HTTP") {
                Ok(())
            } else {
                Err(log)
            }
        });
        Ok(())
    }

    fn helper_socket(&self) -> PathBuf {
        self.dir.path().join("helper.sock")
    }

    fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    fn start_helper(&mut self, host: &TestHost) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("helper.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin_dir().join("banger-helper"))
            .args(["--owner-uid", "0", "--state-dir"])
            .arg(host.state_dir())
            .arg("--runtime-dir")
            .arg(host.root().join("runtime"))
            .arg("--socket")
            .arg(self.helper_socket())
            .args(["--uplink", UPLINK])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.helper = Some(child);
        let socket = self.helper_socket();
        wait_until("banger-helper listens", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .map(drop)
                .map_err(|e| format!("{e}; helper log:\n{}", self.helper_log()))
        });
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [self.helper.take(), self.http.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["netns", "del", &self.internet]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

/// Builds (or finds) both images and the kernel from the host's own namespace: the lab
/// has no route to the Debian mirror or the npm registry.
fn warm_cache() {
    let host = TestHost::start().expect("a daemon outside the lab");
    for image in ["debian-bookworm", "tiny"] {
        let started = Instant::now();
        let out = host.banger_timeout(&["image", "pull", image, "--json"], RUN_TIMEOUT);
        host.expect_success(&["image", "pull", image], &out);
        report_timing(&format!("image pull {image}"), started.elapsed());
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let kernel = info["kernel"].as_str().expect("the image names its kernel");
        host.banger_ok(&["kernel", "pull", kernel]);
    }
}

fn lab_and_host() -> Result<(Lab, TestHost)> {
    warm_cache();
    let mut lab = Lab::new()?;
    write_tool(&lab.www())?;
    lab.start_http()?;
    let mut host = TestHost::prepare(HostOptions {
        netns: Some(lab.ns.clone()),
        env: vec![(
            "BANGER_HELPER_SOCKET".into(),
            lab.helper_socket().display().to_string(),
        )],
        ..HostOptions::default()
    })?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    let log = host.daemon_log();
    assert!(
        !log.contains("guest networking is off"),
        "the daemon did not enable networking:\n{}",
        tail(&log, 20)
    );
    Ok((lab, host))
}

/// `hello-1.2.3.tar.gz`: `hello-1.2.3/bin/hello`, a script printing its version.
fn write_tool(www: &Path) -> Result<()> {
    let top = www.join(format!("hello-{TOOL_VERSION}"));
    std::fs::create_dir_all(top.join("bin"))?;
    let script = top.join("bin/hello");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"hello {TOOL_VERSION}\"\n"),
    )?;
    run(Command::new("chmod").arg("755").arg(&script))?;
    run(Command::new("tar")
        .arg("-C")
        .arg(www)
        .arg("-czf")
        .arg(www.join(format!("hello-{TOOL_VERSION}.tar.gz")))
        .arg(format!("hello-{TOOL_VERSION}")))?;
    Ok(())
}

/// A committed repository at `dir` whose `.mise.toml` (when `tool_file` is given) asks
/// for `http:hello` from that file on the internet namespace's server.
fn make_repo(dir: &Path, tool_file: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("README"), "fixture\n").unwrap();
    if let Some(file) = tool_file {
        std::fs::write(
            dir.join(".mise.toml"),
            format!(
                "[tools]\n\"http:hello\" = {{ version = \"{TOOL_VERSION}\", url = \
                 \"http://{INTERNET_IP}:{HTTP_PORT}/{file}\" }}\n"
            ),
        )
        .unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "fixture"]);
    dir.to_path_buf()
}

fn banger(host: &TestHost, args: &[&str]) -> Output {
    host.banger_timeout(args, RUN_TIMEOUT)
}

fn timed(host: &TestHost, what: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = banger(host, args);
    host.expect_success(args, &out);
    report_timing(what, started.elapsed());
    out
}

/// The seconds of the `mise install` stage line (`[  3.2s] mise install ... done`).
fn stage_seconds(stderr: &str) -> Option<f64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("mise install ... done"))?;
    let inner = line.split('[').nth(1)?.split("s]").next()?;
    inner.trim().parse().ok()
}

#[test]
fn mise_bootstrap_installs_declared_tools_and_commands_find_them() -> Result<()> {
    require_vm!(Root, Tool("ip"), Tool("nft"), Tool("python3"), Tool("tar"));
    let (lab, host) = lab_and_host()?;
    let work = tempfile::tempdir()?;
    let repo = make_repo(&work.path().join("repo"), Some("hello-1.2.3.tar.gz"));
    let repo_arg = repo.display().to_string();

    // Without the network: refused before any VM exists, naming both ways out.
    let refused = banger(&host, &["vm", "run", "--rm", &repo_arg, "--", "hello"]);
    let stderr = text(&refused.stderr);
    assert_eq!(exit_code(&refused), Some(2), "{stderr}");
    assert!(
        stderr.contains("--nat") && stderr.contains("--no-bootstrap"),
        "{stderr}"
    );
    assert!(host.vm_names().is_empty(), "a VM exists after the refusal");
    assert!(
        host.vm_dirs().is_empty(),
        "VM files exist after the refusal"
    );

    // With NAT: installed from "the internet", on PATH through `mise exec`.
    let ran = timed(
        &host,
        "vm run --nat ./repo -- hello (mise config, debian-bookworm)",
        &[
            "vm",
            "run",
            "--rm",
            "--nat",
            &repo_arg,
            "--",
            "hello",
            "--version",
        ],
    );
    assert_eq!(text(&ran.stdout).trim(), format!("hello {TOOL_VERSION}"));
    let stderr = text(&ran.stderr);
    let install = stage_seconds(&stderr).unwrap_or_else(|| panic!("no stage line:\n{stderr}"));
    report_timing(
        "mise install stage (one small tool)",
        Duration::from_secs_f64(install),
    );
    assert!(
        lab.http_log()
            .contains(&format!("GET /hello-{TOOL_VERSION}.tar.gz")),
        "the tool did not come from the lab's server:\n{}",
        lab.http_log()
    );

    // `vm run -- true` with and without mise config (the figures).
    timed(
        &host,
        "vm run --nat ./repo -- true (mise config)",
        &["vm", "run", "--rm", "--nat", &repo_arg, "--", "true"],
    );
    let plain = make_repo(&work.path().join("plain"), None);
    timed(
        &host,
        "vm run --nat ./plain -- true (no mise config)",
        &[
            "vm",
            "run",
            "--rm",
            "--nat",
            &plain.display().to_string(),
            "--",
            "true",
        ],
    );

    // --no-bootstrap: nothing installed, no network needed.
    let skipped = banger(
        &host,
        &[
            "vm",
            "run",
            "--rm",
            "--no-bootstrap",
            &repo_arg,
            "--",
            "sh",
            "-c",
            "command -v hello || ls /root/.local/share/mise/installs 2>/dev/null || echo absent",
        ],
    );
    host.expect_success(&["vm", "run", "--no-bootstrap"], &skipped);
    assert_eq!(text(&skipped.stdout).trim(), "absent");
    assert!(!text(&skipped.stderr).contains("mise install ..."));

    // -d: the install is done when banger returns; `vm exec` finds the tool, passes the
    // exit code through, and the trust step left nothing to confirm.
    timed(
        &host,
        "vm run -d --nat ./repo",
        &["vm", "run", "-d", "--nat", "--name", "tools", &repo_arg],
    );
    assert_eq!(
        host.exec_ok("tools", &["hello", "--version"]).trim(),
        format!("hello {TOOL_VERSION}")
    );
    let which = host.exec_ok("tools", &["sh", "-c", "command -v hello"]);
    assert!(which.contains("/mise/installs/"), "{which}");
    let code = host.exec("tools", &["sh", "-c", "exit 7"]);
    assert_eq!(exit_code(&code), Some(7));
    let trust = host.exec_ok("tools", &["mise", "trust", "--show"]);
    // mise shows paths under HOME (/root) with `~`.
    assert!(
        trust.contains("/root/repo: trusted") || trust.contains("~/repo: trusted"),
        "{trust}"
    );
    let log = host.exec_ok("tools", &["cat", "/var/log/banger-mise.log"]);
    assert!(log.contains("exit code 0"), "{log}");
    let listed = host.exec("tools", &["mise", "ls", "--current"]);
    let listed_err = text(&listed.stderr);
    assert!(
        !listed_err.contains("trust"),
        "mise still asks about trust:\n{listed_err}"
    );
    host.banger_ok(&["vm", "delete", "--force", "tools"]);

    // Interactive (no command): the session starts while the install runs in the
    // background; the note names the log, and the shell sees the install finish.
    let session = "for i in $(seq 300); do grep -q 'exit code' /var/log/banger-mise.log \
                   2>/dev/null && break; sleep 1; done; cat /var/log/banger-mise.log; \
                   cd /root/repo && mise exec -- hello --version\n";
    let interactive = host.banger_with_input(
        &["vm", "run", "--rm", "--nat", &repo_arg],
        session.as_bytes(),
    );
    host.expect_success(&["vm", "run", "--nat", "./repo"], &interactive);
    let stderr = text(&interactive.stderr);
    assert!(
        stderr.contains("in the background") && stderr.contains("/var/log/banger-mise.log"),
        "{stderr}"
    );
    assert!(!stderr.contains("mise install ... done"), "{stderr}");
    let stdout = text(&interactive.stdout);
    assert!(stdout.contains("exit code 0"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("hello {TOOL_VERSION}")),
        "{stdout}"
    );

    // A tool that cannot be downloaded fails the run with the log's tail.
    let broken = make_repo(&work.path().join("broken"), Some("missing.tar.gz"));
    let failed = banger(
        &host,
        &[
            "vm",
            "run",
            "--rm",
            "--nat",
            &broken.display().to_string(),
            "--",
            "true",
        ],
    );
    let stderr = text(&failed.stderr);
    assert_ne!(exit_code(&failed), Some(0), "{stderr}");
    assert!(
        stderr.contains("mise install failed") && stderr.contains("/var/log/banger-mise.log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("404") || stderr.contains("http:hello"),
        "{stderr}"
    );

    // tiny has no mise: the run says so and goes on.
    let tiny = banger(
        &host,
        &[
            "vm", "run", "--rm", "--nat", "--image", "tiny", &repo_arg, "--", "true",
        ],
    );
    host.expect_success(&["vm", "run", "--image", "tiny"], &tiny);
    assert!(
        text(&tiny.stderr).contains("the image has no mise"),
        "{}",
        text(&tiny.stderr)
    );
    host.assert_no_vm_left("after the runs");
    Ok(())
}
