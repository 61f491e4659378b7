//! [`TestHost`]: one isolated banger installation (directories + its own `bangerd`) and
//! the calls tests make against it: the CLI with a timeout, JSON views of VMs, the API
//! client, and the checks that nothing of a VM is left behind (row, directories, VMM).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use banger_api::{Client, ClientError};

use crate::{agent_binary, bin_dir, report_timing, tail, target_dir};

/// How long one CLI call may take unless the test says otherwise: a first image or
/// kernel build plus a boot under TCG on a busy two-core machine.
const CLI_TIMEOUT: Duration = Duration::from_secs(900);

/// How long the daemon gets to exit after a signal before it is killed.
const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a test changes about its installation before the daemon starts.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Written to `<config>/catalog.json`, which the daemon merges into its catalog.
    pub catalog: Option<serde_json::Value>,
    /// Extra environment for the daemon and the CLI (e.g. `BANGER_READY_TIMEOUT`).
    pub env: Vec<(String, String)>,
    /// Run `bangerd` and every CLI call inside this network namespace
    /// (`ip netns exec NS ...`), so guests' addresses are reachable from the CLI's ssh.
    pub netns: Option<String>,
}

/// One isolated banger installation with its own daemon.
#[derive(Debug)]
pub struct TestHost {
    root: tempfile::TempDir,
    daemon: Option<Child>,
    options: HostOptions,
    runtime: tokio::runtime::Runtime,
}

impl TestHost {
    /// Creates the directories and starts `bangerd`, returning once it listens.
    pub fn start() -> Result<TestHost> {
        TestHost::start_with(HostOptions::default())
    }

    /// Like [`TestHost::start`], with a catalog and environment set up first.
    pub fn start_with(options: HostOptions) -> Result<TestHost> {
        let mut host = TestHost::prepare(options)?;
        host.start_daemon()?;
        Ok(host)
    }

    /// Creates the directories (and the catalog) without starting the daemon: a test
    /// starts what the daemon needs first, e.g. the root helper, then calls
    /// [`TestHost::start_daemon`].
    pub fn prepare(options: HostOptions) -> Result<TestHost> {
        // Temp dirs under `/tmp` keep socket paths short (`sun_path` is 108 bytes).
        let root = tempfile::Builder::new()
            .prefix("banger-e2e-")
            .tempdir_in("/tmp")?;
        for dir in ["state", "runtime", "config", "home"] {
            std::fs::create_dir_all(root.path().join(dir))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the test's tokio runtime")?;
        let host = TestHost {
            root,
            daemon: None,
            options,
            runtime,
        };
        if let Some(catalog) = host.options.catalog.clone() {
            host.write_catalog(&catalog)?;
        }
        Ok(host)
    }

    /// A command for `program`, inside the host's network namespace when it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.options.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns.as_str()]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.root.path().join("runtime")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.path().join("config")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("bangerd.sock")
    }

    /// Writes `<config>/catalog.json`; the daemon reads it when it starts.
    pub fn write_catalog(&self, catalog: &serde_json::Value) -> Result<()> {
        let path = self.config_dir().join("catalog.json");
        std::fs::write(&path, serde_json::to_vec_pretty(catalog)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Environment that points banger at this host's directories.
    pub fn env(&self) -> Vec<(String, String)> {
        let root = self.root.path();
        let cache = target_dir().join("e2e-cache");
        let mut env = vec![
            ("HOME".into(), root.join("home").display().to_string()),
            (
                "BANGER_STATE_DIR".into(),
                root.join("state").display().to_string(),
            ),
            (
                "BANGER_RUNTIME_DIR".into(),
                root.join("runtime").display().to_string(),
            ),
            (
                "BANGER_CONFIG_DIR".into(),
                root.join("config").display().to_string(),
            ),
            ("BANGER_CACHE_DIR".into(), cache.display().to_string()),
            ("BANGER_AGENT".into(), agent_binary().display().to_string()),
            ("NO_COLOR".into(), "1".into()),
            ("RUST_LOG".into(), "info".into()),
            // A helper the user started (quickstart's, at the default socket) must not
            // serve test daemons: they would share its bridge and address pool. Tests
            // that want networking start their own and set this in `options.env`,
            // which comes later and wins.
            (
                "BANGER_HELPER_SOCKET".into(),
                root.join("no-helper.sock").display().to_string(),
            ),
            // Warm templates are built in the background after a cold boot of the
            // default image: on two shared cores that would slow every other test and
            // change its stages. Tests of templates set `BANGER_WARM_TEMPLATES=1`.
            ("BANGER_WARM_TEMPLATES".into(), "0".into()),
        ];
        env.extend(self.options.env.iter().cloned());
        env
    }

    /// Starts (or restarts) the daemon and waits until its socket accepts connections.
    pub fn start_daemon(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("bangerd.log"))?;
        // `ip netns exec` execs the daemon in place, so the child's pid is bangerd's.
        let mut cmd = self.command(bin_dir().join("bangerd"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start bangerd")?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.daemon.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "bangerd exited ({status}) before listening: {}",
                    self.daemon_log()
                );
            }
            if Instant::now() > deadline {
                bail!("bangerd did not listen within 30 s: {}", self.daemon_log());
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Sets (`Some`) or removes (`None`) a variable of the environment the daemon and the
    /// CLI get from now on (the next [`TestHost::start_daemon`] for the daemon).
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.options.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.options.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Waits (bounded by `timeout`) for the daemon to exit by itself and reaps it; its
    /// exit status, or `None` if it still runs at the deadline (it is left running).
    pub fn wait_daemon_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.daemon.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.daemon = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// The daemon's pid while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. 9) to the daemon and reaps it; VMs keep running. A daemon
    /// that already died (a test killed it by pid) is just reaped. One that ignores the
    /// signal is killed after [`DAEMON_EXIT_TIMEOUT`].
    pub fn kill_daemon(&mut self, signal: i32) -> Result<()> {
        let Some(mut child) = self.daemon.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            // It may exit between the check and the signal; the wait below settles it.
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + DAEMON_EXIT_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!(
                    "bangerd ignored signal {signal} for {}s and was killed",
                    DAEMON_EXIT_TIMEOUT.as_secs()
                );
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("bangerd.log")).unwrap_or_default()
    }

    /// Runs the CLI with this host's environment (timeout [`CLI_TIMEOUT`]).
    pub fn banger(&self, args: &[&str]) -> Output {
        self.banger_timeout(args, CLI_TIMEOUT)
    }

    /// Runs the CLI, killing it and failing the test after `timeout`.
    pub fn banger_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = tokio::process::Command::from(self.command(bin_dir().join("banger")));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, cmd.output()).await });
        match result {
            Ok(output) => output.expect("cannot run banger"),
            Err(_) => panic!(
                "banger {} did not finish within {}s\ndaemon log tail:\n{}",
                args.join(" "),
                timeout.as_secs(),
                tail(&self.daemon_log(), 40)
            ),
        }
    }

    /// Runs the CLI with `input` on its stdin (a pipe that ends after it).
    pub fn banger_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::from(self.command(bin_dir().join("banger")));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let input = input.to_vec();
        let result = self.runtime.block_on(async {
            tokio::time::timeout(CLI_TIMEOUT, async {
                let mut child = cmd.spawn().expect("cannot run banger");
                let mut stdin = child.stdin.take().expect("piped stdin");
                let feed = tokio::spawn(async move {
                    // The command may exit without reading it all; that is its business.
                    let _ = stdin.write_all(&input).await;
                });
                let output = child.wait_with_output().await;
                let _ = feed.await;
                output
            })
            .await
        });
        match result {
            Ok(output) => output.expect("cannot run banger"),
            Err(_) => panic!(
                "banger {} did not finish within {}s\ndaemon log tail:\n{}",
                args.join(" "),
                CLI_TIMEOUT.as_secs(),
                tail(&self.daemon_log(), 40)
            ),
        }
    }

    /// Starts the CLI in the background with this host's environment, stdout and stderr
    /// piped, for tests that signal it mid-command.
    pub fn spawn_banger(&self, args: &[&str]) -> Child {
        self.command(bin_dir().join("banger"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run banger")
    }

    /// Runs the CLI and fails with its output unless it exits 0; returns stdout.
    pub fn banger_ok(&self, args: &[&str]) -> String {
        let out = self.banger(args);
        self.expect_success(args, &out);
        text(&out.stdout)
    }

    /// Fails the test with the command's output and the daemon's log unless `out` is a
    /// success.
    pub fn expect_success(&self, args: &[&str], out: &Output) {
        assert!(
            out.status.success(),
            "banger {} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            tail(&self.daemon_log(), 40),
        );
    }

    /// Parses `banger ... --json` output.
    pub fn banger_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let text = self.banger_ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad JSON from banger {args:?}: {e}\n{text}"))
    }

    /// `vm show VM --json`.
    pub fn vm_show(&self, vm: &str) -> serde_json::Value {
        self.banger_json(&["vm", "show", vm])
    }

    /// `vm list --json`.
    pub fn vm_list(&self) -> Vec<serde_json::Value> {
        match self.banger_json(&["vm", "list"]) {
            serde_json::Value::Array(rows) => rows,
            other => panic!("vm list --json is not an array: {other}"),
        }
    }

    /// Names in `vm list`, sorted.
    pub fn vm_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .vm_list()
            .iter()
            .filter_map(|vm| vm["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// `vm exec VM -- argv...`, whatever its exit code.
    pub fn exec(&self, vm: &str, argv: &[&str]) -> Output {
        let mut args = vec!["vm", "exec", vm, "--"];
        args.extend_from_slice(argv);
        self.banger(&args)
    }

    /// `vm exec VM -- argv...`, which must exit 0; returns its stdout.
    pub fn exec_ok(&self, vm: &str, argv: &[&str]) -> String {
        let mut args = vec!["vm", "exec", vm, "--"];
        args.extend_from_slice(argv);
        self.banger_ok(&args)
    }

    /// `vm create --name NAME EXTRA... --json`, timed from the call to the ready VM; the
    /// time is reported as `TIMING create-to-ready <label>`.
    pub fn create_vm(&self, name: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["vm", "create", "--name", name];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let vm = self.banger_json(&args);
        report_timing(
            &format!("create-to-ready {name} ({})", extra.join(" ")),
            started.elapsed(),
        );
        assert_eq!(vm["state"], "running", "a created VM is running: {vm}");
        vm
    }

    /// Every per-VM directory on disk: `<state>/vms/*` and `<runtime>/vms/*`.
    pub fn vm_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for parent in [self.state_dir().join("vms"), self.runtime_dir().join("vms")] {
            if let Ok(entries) = std::fs::read_dir(parent) {
                dirs.extend(entries.flatten().map(|entry| entry.path()));
            }
        }
        dirs.sort();
        dirs
    }

    /// Pids of live VMM processes whose command line mentions this host's directories.
    pub fn vmm_pids(&self) -> Vec<u32> {
        let needle = self.root.path().display().to_string();
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // A zombie has an empty command line, so an exited VMM never matches.
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let is_vmm = cmdline.starts_with("qemu-system")
                || cmdline.contains("/qemu-system")
                || cmdline.contains("firecracker");
            if is_vmm && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Asserts that no VM exists in any form: no row, no directory, no VMM process.
    pub fn assert_no_vm_left(&self, context: &str) {
        let names = self.vm_names();
        assert!(
            names.is_empty(),
            "{context}: rows left in vm list: {names:?}"
        );
        self.assert_no_vm_files(context);
    }

    /// Asserts that no VM directory and no VMM process exist (rows may).
    pub fn assert_no_vm_files(&self, context: &str) {
        let dirs = self.vm_dirs();
        assert!(dirs.is_empty(), "{context}: VM directories left: {dirs:?}");
        let pids = self.vmm_pids();
        assert!(pids.is_empty(), "{context}: VMM processes left: {pids:?}");
    }

    /// Runs async code (the API client) on this host's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A protocol client connected to this host's daemon.
    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::connect(&self.socket()).await
    }

    /// What a failing test needs to see: the daemon log and every VM's serial tail.
    fn failure_report(&self) -> String {
        let mut report = format!(
            "--- bangerd log (last 60 lines) ---\n{}\n",
            tail(&self.daemon_log(), 60)
        );
        for dir in self.vm_dirs() {
            let serial = dir.join("serial.log");
            if let Ok(log) = std::fs::read_to_string(&serial) {
                report.push_str(&format!(
                    "--- {} (last 30 lines) ---\n{}\n",
                    serial.display(),
                    tail(&log, 30)
                ));
            }
        }
        report
    }
}

impl Drop for TestHost {
    #[expect(clippy::print_stderr, reason = "a failed test shows the daemon's side")]
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.failure_report());
        }
        let _ = self.kill_daemon(15);
        for pid in self.vmm_pids() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Bytes as (lossy) UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit code of a finished CLI call (`None` when a signal ended it).
pub fn exit_code(out: &Output) -> Option<i32> {
    out.status.code()
}
