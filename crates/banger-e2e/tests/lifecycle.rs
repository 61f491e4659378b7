//! The whole life of one tiny VM, checked from inside the guest where it matters: create,
//! exec (hostname, boot id), stop, start, restart (a new boot id seen by the guest), kill
//! with a signal, and delete (no row, no directory, no VMM process); and `vm stats
//! --watch` refreshing on a running one until Ctrl-C.

use std::io::BufRead as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banger_e2e::{TestHost, exit_code, pid_alive, report_timing, require_vm, text, wait_until};

const VM: &str = "life";

/// The guest's boot id, read inside the guest.
fn guest_boot_id(host: &TestHost) -> String {
    host.exec_ok(VM, &["cat", "/proc/sys/kernel/random/boot_id"])
        .trim()
        .to_string()
}

fn field(vm: &serde_json::Value, key: &str) -> String {
    vm[key].as_str().unwrap_or_default().to_string()
}

#[test]
fn tiny_vm_lifecycle() {
    require_vm!();
    let host = TestHost::start().unwrap();

    // create + exec
    let created = host.create_vm(VM, &["--image", "tiny"]);
    let vm_dir = field(&created, "dir");
    assert!(std::path::Path::new(&vm_dir).is_dir(), "{created}");
    let uname = host.exec_ok(VM, &["uname", "-a"]);
    assert!(
        uname.split_whitespace().nth(1) == Some(VM),
        "uname -a names the host `{VM}`: {uname}"
    );
    assert_eq!(host.exec_ok(VM, &["hostname"]).trim(), VM);
    let first_boot = guest_boot_id(&host);
    assert_eq!(
        field(&host.vm_show(VM), "boot_id"),
        first_boot,
        "vm show reports the guest's boot id"
    );
    let first_pid = host.vm_show(VM)["pid"]
        .as_u64()
        .expect("a running VM has a pid") as u32;
    assert!(pid_alive(first_pid));
    assert_eq!(host.vmm_pids(), vec![first_pid]);

    // stats and logs of a running VM
    // `vm stats --json` is an array, also for one VM; CPU time is in seconds.
    let all = host.banger_json(&["vm", "stats", VM]);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let stats = &all[0];
    assert_eq!(stats["state"], "running", "{stats}");
    assert!(stats["vmm_rss_bytes"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(
        stats["vmm_cpu_secs"].as_f64().unwrap_or(0.0) > 0.0,
        "{stats}"
    );
    assert!(
        stats["cpu_percent"].is_null(),
        "no --watch, no CPU use: {stats}"
    );
    assert_eq!(stats["disk_size_bytes"].as_u64(), Some(4 << 30), "{stats}");
    let logs = host.banger_ok(&["vm", "logs", VM]);
    assert!(
        logs.contains("Linux version"),
        "the serial log has the boot: {logs}"
    );
    let last_lines = host.banger_ok(&["vm", "logs", VM, "--tail", "3"]);
    assert!(last_lines.lines().count() <= 3, "{last_lines}");

    // stop
    let started = Instant::now();
    host.banger_ok(&["vm", "stop", VM]);
    report_timing("stop tiny", started.elapsed());
    let stopped = host.vm_show(VM);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        stopped["pid"].is_null(),
        "a stopped VM has no pid: {stopped}"
    );
    assert!(!pid_alive(first_pid), "the VMM exited");
    assert!(host.vmm_pids().is_empty());
    let console = host.banger_ok(&["vm", "logs", VM, "--tail", "20"]);
    assert!(
        console.contains("reboot: Power down"),
        "stop powers the guest off cleanly: {console}"
    );
    let refused = host.exec(VM, &["true"]);
    assert_eq!(exit_code(&refused), Some(1), "exec on a stopped VM fails");

    // start: a new boot
    let started = Instant::now();
    host.banger_ok(&["vm", "start", VM]);
    report_timing("start tiny", started.elapsed());
    assert_eq!(host.vm_show(VM)["state"], "running");
    let second_boot = guest_boot_id(&host);
    assert_ne!(second_boot, first_boot, "start boots the guest anew");

    // restart: the guest itself reports a new boot id, and vm show agrees
    let started = Instant::now();
    host.banger_ok(&["vm", "restart", VM]);
    report_timing("restart tiny", started.elapsed());
    let third_boot = guest_boot_id(&host);
    assert_ne!(third_boot, second_boot, "restart reboots the guest");
    assert_eq!(field(&host.vm_show(VM), "boot_id"), third_boot);

    // kill --signal KILL: stopped (not error), the reason names the signal
    let pid = host.vm_show(VM)["pid"].as_u64().unwrap() as u32;
    host.banger_ok(&["vm", "kill", VM, "--signal", "KILL"]);
    let killed = host.vm_show(VM);
    assert_eq!(killed["state"], "stopped", "{killed}");
    let reason = field(&killed, "last_error");
    assert!(
        reason.contains("KILL"),
        "last_error names the signal: {killed}"
    );
    assert!(!pid_alive(pid));
    assert!(host.vmm_pids().is_empty());

    // delete: refused while running without --force; then nothing is left
    host.banger_ok(&["vm", "start", VM]);
    let refused = host.banger(&["vm", "delete", VM]);
    assert_eq!(exit_code(&refused), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("--force"),
        "the refusal says how: {}",
        text(&refused.stderr)
    );
    assert_eq!(host.vm_show(VM)["state"], "running");
    host.banger_ok(&["vm", "delete", VM, "--force"]);
    assert!(host.vm_names().is_empty());
    assert!(!std::path::Path::new(&vm_dir).exists(), "{vm_dir} removed");
    host.assert_no_vm_left("after delete --force");
    let gone = host.banger(&["vm", "show", VM]);
    assert_eq!(exit_code(&gone), Some(1));
}

#[test]
fn stopped_vm_deletes_without_force() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm("brief", &["--image", "tiny"]);
    host.banger_ok(&["vm", "stop", "brief", "--timeout", "30"]);
    host.banger_ok(&["vm", "delete", "brief"]);
    host.assert_no_vm_left("after delete of a stopped VM");
}

/// The refreshes in `vm stats --watch` output read so far: each is the table's header
/// line (split into words) and the rows that followed it.
fn refreshes(lines: &[String]) -> Vec<(Vec<&str>, Vec<Vec<&str>>)> {
    let mut found: Vec<(Vec<&str>, Vec<Vec<&str>>)> = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"NAME") {
            found.push((words, Vec::new()));
        } else if let Some((_, rows)) = found.last_mut() {
            rows.push(words);
        }
    }
    found
}

/// The `vm stats --watch` process, killed if the test fails before it ends.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `vm stats --watch 1` on a running VM, its stdout a pipe as in a script: every refresh
/// is the table with the VM's row (running, with the VMM's memory); from the second on
/// it has the CPU use since the last one. SIGINT (Ctrl-C) ends it with status 0.
#[test]
fn stats_watch_refreshes_until_interrupted() {
    const WATCHED: &str = "watched";
    require_vm!();
    let host = TestHost::start().unwrap();
    host.banger_ok(&["vm", "create", "--image", "tiny", "--name", WATCHED]);
    let mut watcher = Watcher(host.spawn_banger(&["vm", "stats", "--watch", "1"]));
    let stdout = watcher.0.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let started = Instant::now();
    wait_until(
        "vm stats --watch showed two refreshes with the VM",
        Duration::from_secs(60),
        || {
            lines.extend(receiver.try_iter());
            let seen = refreshes(&lines);
            let complete = seen.iter().filter(|(_, rows)| !rows.is_empty()).count();
            if complete >= 2 {
                Ok(())
            } else {
                Err(lines.join("\n"))
            }
        },
    );
    report_timing("vm stats --watch 1: two refreshes", started.elapsed());
    let output = lines.join("\n");
    let seen = refreshes(&lines);
    for (index, (header, rows)) in seen.iter().take(2).enumerate() {
        assert_eq!(
            rows.len(),
            1,
            "refresh {index}: one running VM, one row:\n{output}"
        );
        let row = &rows[0];
        assert_eq!(row.first(), Some(&WATCHED), "refresh {index}:\n{output}");
        assert_eq!(row.get(1), Some(&"running"), "refresh {index}:\n{output}");
        assert!(
            row.get(2).is_some_and(|memory| memory.ends_with("iB")),
            "refresh {index} shows the VMM's memory:\n{output}"
        );
        // NAME STATE MEMORY CPU TIME [CPU] DISK USED DISK SIZE
        let cpu_column = header.len() == 10;
        assert_eq!(cpu_column, index > 0, "refresh {index}'s header:\n{output}");
        if cpu_column {
            assert!(
                row.get(4).is_some_and(|cpu| cpu.ends_with('%')),
                "refresh {index} has the CPU use since the last one:\n{output}"
            );
        }
    }
    let pid = watcher.0.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("cannot run kill");
    assert!(signalled.success());
    let status = wait_until(
        "vm stats --watch exits on SIGINT",
        Duration::from_secs(10),
        || match watcher.0.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".into()),
            Err(error) => Err(error.to_string()),
        },
    );
    assert!(status.success(), "vm stats --watch after SIGINT: {status}");
    host.banger_ok(&["vm", "delete", "--force", WATCHED]);
}
