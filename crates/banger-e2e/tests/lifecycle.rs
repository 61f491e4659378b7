//! The whole life of one tiny VM, checked from inside the guest where it matters: create,
//! exec (hostname, boot id), stop, start, restart (a new boot id seen by the guest), kill
//! with a signal, and delete (no row, no directory, no VMM process).

use std::time::Instant;

use banger_e2e::{TestHost, exit_code, pid_alive, report_timing, require_vm, text};

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
