//! Upgrade in place with a running VM, in supervised mode (systemd is not PID 1 on this
//! host): `banger system install` below a temporary root (`BANGER_SYSTEM_ROOT`, so
//! nothing of the host's own installation is touched) with its own bridge, pool and DNS
//! port; a `tiny` VM with guest networking is created and started through the installed
//! daemon; then `system install` runs again (the same binaries: an upgrade's steps). The
//! test asserts the VM kept running across it:
//!
//! - the VM's VMM is the same process (pid from `vm show`, alive throughout) and the guest
//!   did not reboot (`/proc/sys/kernel/random/boot_id` unchanged);
//! - the guest keeps its address, `vm exec` works through the new daemon, and the VM is
//!   `running` in `vm show`;
//! - the daemon was restarted (its pid in `system status --json` changed) and reattached
//!   the VM (its log says so);
//! - both services answer afterwards.
//!
//! Then `system uninstall --purge --yes` removes it all (VMM included), and the test
//! checks no process, file, bridge or nftables rule of its root is left. A failed test
//! uninstalls too (a drop guard). The owner's cache directory below the root is a
//! root-owned symlink to the shared `target/e2e-cache`, so the image is not fetched
//! again; it is removed before uninstall, so `--purge` never reaches the shared cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use banger_e2e::{agent_binary, bin_dir, note, pid_alive, require_vm, target_dir, wait_until};

const VM: &str = "upg";

/// How long one CLI call may take: a first image fetch plus a boot under TCG.
const CLI_TIMEOUT: Duration = Duration::from_secs(900);

/// One installation below a temporary root; dropping it uninstalls it.
struct Installed {
    dir: tempfile::TempDir,
    bridge: String,
    runtime: tokio::runtime::Runtime,
}

impl Installed {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn cache_link(&self) -> PathBuf {
        self.root().join("owner/cache")
    }

    /// `banger ARGS` against this installation (a clean environment plus the root, so
    /// the CLI finds the installed daemon through the install metadata): its stdout, or
    /// the failure with its stderr.
    fn banger(&self, args: &[&str]) -> Result<String, banger_exec::ExecError> {
        let cmd = banger_exec::Cmd::new(bin_dir().join("banger"))
            .args(args)
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("BANGER_SYSTEM_ROOT", self.root())
            .timeout(CLI_TIMEOUT);
        self.runtime
            .block_on(banger_exec::run(&cmd))
            .map(|out| out.stdout_text())
    }

    fn banger_ok(&self, args: &[&str]) -> String {
        self.banger(args).unwrap_or_else(|error| {
            panic!(
                "banger {}: {error}\ndaemon log tail:\n{}",
                args.join(" "),
                self.daemon_log_tail()
            )
        })
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.banger_ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{out}"))
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root().join("var/log/banger/bangerd.log")).unwrap_or_default()
    }

    fn daemon_log_tail(&self) -> String {
        banger_e2e::tail(&self.daemon_log(), 40)
    }

    /// `system status --json` once both services answer.
    fn both_answer(&self, what: &str) -> serde_json::Value {
        wait_until(
            &format!("{what}: both services answer"),
            Duration::from_secs(30),
            || {
                let status = self.json(&["system", "status"]);
                let services = status["services"].as_array().unwrap();
                if services.iter().all(|s| s["answers"] == true) {
                    Ok(status)
                } else {
                    Err(status.to_string())
                }
            },
        )
    }

    fn exec_ok(&self, argv: &[&str]) -> String {
        let mut args = vec!["vm", "exec", VM, "--"];
        args.extend_from_slice(argv);
        self.banger_ok(&args)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // the shared cache first, so that --purge cannot reach it
        let _ = std::fs::remove_file(self.cache_link());
        if self.root().join("etc/banger/install.json").exists()
            && let Err(error) = self.banger(&["system", "uninstall", "--purge", "--yes"])
        {
            note(&format!("cleanup: uninstall failed: {error}"));
        }
        if std::thread::panicking() {
            note(&format!(
                "--- installed bangerd log ---\n{}",
                self.daemon_log_tail()
            ));
        }
        for pid in processes_under(&self.root()) {
            let _ = Command::new("kill")
                .args(["-9", &pid.0.to_string()])
                .status();
        }
    }
}

/// Processes whose command line names `root`: (pid, command line).
fn processes_under(root: &Path) -> Vec<(u32, String)> {
    let needle = root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&needle) {
                found.push((pid, text));
            }
        }
    }
    found
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn nft_ruleset(runtime: &tokio::runtime::Runtime) -> String {
    let cmd = banger_exec::Cmd::new("nft")
        .args(["list", "ruleset"])
        .timeout(Duration::from_secs(30));
    runtime
        .block_on(banger_exec::run(&cmd))
        .expect("nft list ruleset")
        .stdout_text()
}

fn daemon_pid(status: &serde_json::Value) -> i64 {
    let daemon = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "bangerd")
        .unwrap_or_else(|| panic!("no bangerd in {status}"));
    daemon["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("bangerd has no pid: {status}"))
}

#[test]
fn reinstall_keeps_a_running_vm_running() {
    require_vm!(Root, Tool("ip"), Tool("nft"));
    let dir = tempfile::Builder::new()
        .prefix("banger-upg-")
        .tempdir_in("/tmp")
        .unwrap();
    let n = std::process::id() % 200 + 20;
    let installed = Installed {
        dir,
        bridge: format!("bangerup{n}"),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    let root = installed.root();
    std::fs::create_dir_all(root.join("owner")).unwrap();
    std::os::unix::fs::symlink(target_dir().join("e2e-cache"), installed.cache_link()).unwrap();
    let subnet = format!("10.234.{n}.0/24");
    let port = (44000 + n).to_string();
    let from = bin_dir().display().to_string();
    let agent = agent_binary().display().to_string();
    let install = [
        "system",
        "install",
        "--owner",
        "root",
        "--mode",
        "supervised",
        "--from",
        &from,
        "--agent",
        &agent,
        "--bridge",
        &installed.bridge,
        "--subnet",
        &subnet,
        "--dns-port",
        &port,
    ];
    let out = installed.banger_ok(&install);
    assert!(out.contains("supervised background processes"), "{out}");
    let before_status = installed.both_answer("both services answer after install");

    let started = Instant::now();
    let vm = installed.json(&["vm", "create", "--name", VM, "--image", "tiny"]);
    note(&format!(
        "created {VM} in {:.1}s through the installed daemon",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(vm["state"], "running", "{vm}");
    let vm = installed.json(&["vm", "show", VM]);
    let pid = vm["pid"].as_u64().expect("a running VM has a pid") as u32;
    let address = installed.exec_ok(&["ip", "-4", "-o", "addr", "show", "eth0"]);
    let gateway = subnet.replace(".0/24", ".1");
    assert!(
        address.contains(&subnet.replace(".0/24", ".")),
        "the guest has no address in {subnet}: {address}"
    );
    installed.exec_ok(&["ping", "-c", "1", "-W", "5", &gateway]);
    let boot_id = installed.exec_ok(&["cat", "/proc/sys/kernel/random/boot_id"]);

    // the upgrade: the same binaries, installed again
    let started = Instant::now();
    let out = installed.banger_ok(&install);
    note(&format!(
        "re-install took {:.1}s:\n{out}",
        started.elapsed().as_secs_f64()
    ));
    let after_status = installed.both_answer("both services answer after the re-install");
    assert_ne!(
        daemon_pid(&after_status),
        daemon_pid(&before_status),
        "the daemon was not restarted"
    );
    assert!(
        pid_alive(pid),
        "the VMM (pid {pid}) did not survive the re-install"
    );

    let vm = installed.json(&["vm", "show", VM]);
    assert_eq!(vm["state"], "running", "{vm}");
    assert_eq!(vm["pid"].as_u64(), Some(u64::from(pid)), "same VMM: {vm}");
    assert_eq!(
        installed.exec_ok(&["cat", "/proc/sys/kernel/random/boot_id"]),
        boot_id,
        "the guest rebooted"
    );
    assert_eq!(
        installed.exec_ok(&["ip", "-4", "-o", "addr", "show", "eth0"]),
        address,
        "the guest's address changed"
    );
    installed.exec_ok(&["ping", "-c", "1", "-W", "5", &gateway]);
    let log = installed.daemon_log();
    assert!(
        log.lines().any(|l| l.contains("reconciled VMs")
            && l.contains("reattached=[")
            && !l.contains("reattached=[]")),
        "the new daemon did not reattach the VM:\n{}",
        installed.daemon_log_tail()
    );

    // clean up: nothing of this root is left
    std::fs::remove_file(installed.cache_link()).unwrap();
    let out = installed.banger_ok(&["system", "uninstall", "--purge", "--yes"]);
    note(&format!("uninstall:\n{out}"));
    wait_until(
        "no process of the uninstalled root runs",
        Duration::from_secs(10),
        || {
            let left = processes_under(&root);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    assert!(!pid_alive(pid), "the VMM outlived uninstall");
    let mut left = Vec::new();
    files_under(&root, &mut left);
    assert_eq!(left, Vec::<PathBuf>::new());
    assert!(!Path::new("/sys/class/net").join(&installed.bridge).exists());
    let ruleset = nft_ruleset(&installed.runtime);
    assert!(
        !ruleset.contains(&installed.bridge) && !ruleset.contains(&subnet.replace(".0/24", ".")),
        "{ruleset}"
    );
}
