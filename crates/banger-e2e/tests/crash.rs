//! Crashes on real guests. (a) The daemon is SIGKILLed in the middle of `vm create`, at
//! several stages (the create is driven through the API so the kill lands right when a
//! given event arrives); after a restart the VM either exists and answers, or nothing of
//! it is left: never an orphan row, directory or VMM. (b) The VMM is killed behind the
//! daemon's back: the VM becomes `stopped` with a reason and starts again. (c) The daemon
//! dies while a VM runs: the restarted daemon reattaches the same VMM. (d) The daemon dies
//! mid-stop: the VM shows `stopping` (not `running`) until the resumed stop is done.

use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::methods::{VmCreate, VmCreateParams};
use banger_api::{ClientError, Event, StageState};
use banger_e2e::{TestHost, note, pid_alive, report_timing, require_vm, text, wait_until};

const VM: &str = "crash";

/// When to kill the daemon during a create.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// As soon as the operation has an id.
    OpStarted,
    /// When the named stage reports this state.
    Stage(&'static str, StageState),
}

impl KillPoint {
    fn matches(self, event: &Event) -> bool {
        match (self, event) {
            (KillPoint::OpStarted, Event::OpStarted { .. }) => true,
            (
                KillPoint::Stage(name, state),
                Event::Stage {
                    stage, state: s, ..
                },
            ) => stage == name && *s == state,
            _ => false,
        }
    }
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// Makes sure the tiny image and its kernel are pulled, so the create under test goes
/// through the same stages (no download or build) every time.
fn warm_cache(host: &TestHost) {
    host.banger_ok(&["image", "pull", "tiny"]);
    host.banger_ok(&["kernel", "pull", "debian-6.1-cloud"]);
}

/// Kills the daemon at `point` of a `vm create`, restarts it, and checks that the VM is
/// either complete and usable or entirely gone.
fn crash_create_at(point: KillPoint) {
    require_vm!();
    let mut host = TestHost::start().unwrap();
    warm_cache(&host);
    let daemon = host.daemon_pid().unwrap();
    let params = VmCreateParams {
        name: Some(VM.into()),
        image: Some("tiny".into()),
        ..VmCreateParams::default()
    };
    let mut fired = false;
    let mut events = Vec::new();
    let result = host.block_on(async {
        let mut client = host.client().await.unwrap();
        client
            .call::<VmCreate>(&params, |event| {
                events.push(format!("{event:?}"));
                if !fired && point.matches(&event) {
                    fired = true;
                    sigkill(daemon);
                }
            })
            .await
    });
    assert!(fired, "{point:?} never happened; events: {events:#?}");
    assert!(
        matches!(result, Err(ClientError::Closed | ClientError::Io(_))),
        "the create was cut short by the kill: {result:?}"
    );
    host.kill_daemon(9).unwrap();
    host.start_daemon().unwrap();

    let names = host.vm_names();
    if names.is_empty() {
        host.assert_no_vm_files(&format!("killed at {point:?}, VM gone"));
        note(&format!("OUTCOME {point:?}: no VM, nothing left"));
        return;
    }
    assert_eq!(names, vec![VM.to_string()], "killed at {point:?}");
    // The VM survived the crash: it must be whole. Its guest may still be booting, so
    // exec is retried until it answers.
    let vm = host.vm_show(VM);
    assert_eq!(vm["state"], "running", "killed at {point:?}: {vm}");
    let pid = vm["pid"].as_u64().expect("running VM has a pid") as u32;
    assert_eq!(host.vmm_pids(), vec![pid], "exactly the VM's own VMM runs");
    let started = Instant::now();
    let hostname = wait_until(
        "the reattached guest answers exec",
        Duration::from_secs(180),
        || {
            let out = host.exec(VM, &["hostname"]);
            if out.status.success() {
                Ok(text(&out.stdout))
            } else {
                Err(text(&out.stderr))
            }
        },
    );
    assert_eq!(hostname.trim(), VM);
    note(&format!(
        "OUTCOME {point:?}: VM kept and answering ({:.1}s after restart)",
        started.elapsed().as_secs_f64()
    ));
    host.banger_ok(&["vm", "delete", VM, "--force"]);
    host.assert_no_vm_left(&format!("killed at {point:?}, after delete"));
}

#[test]
fn daemon_killed_right_after_op_started() {
    crash_create_at(KillPoint::OpStarted);
}

#[test]
fn daemon_killed_after_name_reserved() {
    crash_create_at(KillPoint::Stage("reserve name", StageState::Done));
}

#[test]
fn daemon_killed_during_root_disk() {
    crash_create_at(KillPoint::Stage("root disk", StageState::Started));
}

#[test]
fn daemon_killed_during_prepare_guest() {
    crash_create_at(KillPoint::Stage("prepare guest", StageState::Started));
}

#[test]
fn daemon_killed_when_boot_starts() {
    crash_create_at(KillPoint::Stage("boot", StageState::Started));
}

#[test]
fn daemon_killed_while_waiting_for_the_agent() {
    crash_create_at(KillPoint::Stage("agent ready", StageState::Started));
}

#[test]
fn vmm_killed_behind_the_daemons_back() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);
    let pid = host.vm_show(VM)["pid"].as_u64().unwrap() as u32;
    sigkill(pid);

    let started = Instant::now();
    let vm = wait_until("the VM is marked stopped", Duration::from_secs(60), || {
        let vm = host.vm_show(VM);
        if vm["state"] == "stopped" {
            Ok(vm)
        } else {
            Err(vm.to_string())
        }
    });
    report_timing("VMM death noticed", started.elapsed());
    let reason = vm["last_error"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "a VM that died says why: {vm}");
    assert!(vm["pid"].is_null(), "{vm}");
    assert!(!pid_alive(pid));
    assert!(host.vmm_pids().is_empty());

    host.banger_ok(&["vm", "start", VM]);
    let vm = host.vm_show(VM);
    assert_eq!(vm["state"], "running", "{vm}");
    assert!(
        vm["last_error"].is_null(),
        "a fresh start clears the reason: {vm}"
    );
    assert_eq!(host.exec_ok(VM, &["echo", "back"]), "back\n");
}

#[test]
fn daemon_restart_reattaches_running_vms() {
    require_vm!();
    let mut host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);
    let before = host.vm_show(VM);
    let pid = before["pid"].as_u64().unwrap() as u32;
    let boot_id = host.exec_ok(VM, &["cat", "/proc/sys/kernel/random/boot_id"]);

    for signal in [9, 15] {
        host.kill_daemon(signal).unwrap();
        assert!(
            pid_alive(pid),
            "the VMM outlives the daemon (signal {signal})"
        );
        host.start_daemon().unwrap();

        let after = host.vm_show(VM);
        assert_eq!(after["state"], "running", "signal {signal}: {after}");
        assert_eq!(after["pid"].as_u64(), Some(u64::from(pid)), "same VMM");
        assert_eq!(after["id"], before["id"]);
        assert_eq!(
            host.exec_ok(VM, &["cat", "/proc/sys/kernel/random/boot_id"]),
            boot_id,
            "the guest was not rebooted (signal {signal})"
        );
        assert_eq!(host.vmm_pids(), vec![pid]);
    }

    // Lifecycle verbs work on the reattached VM, first thing after a restart.
    host.kill_daemon(9).unwrap();
    host.start_daemon().unwrap();
    let started = Instant::now();
    host.banger_ok(&["vm", "stop", VM]);
    report_timing("stop right after reattach", started.elapsed());
    assert_eq!(host.vm_show(VM)["state"], "stopped");
    assert!(!pid_alive(pid));
    let console = host.banger_ok(&["vm", "logs", VM, "--tail", "20"]);
    assert!(
        console.contains("reboot: Power down"),
        "the reattached guest was powered off, not killed at the timeout: {console}"
    );
    host.banger_ok(&["vm", "start", VM]);
    assert_eq!(host.exec_ok(VM, &["echo", "ok"]), "ok\n");
}

/// The daemon dies in the middle of `vm stop` while the guest is still up (it is frozen
/// with SIGSTOP, so the stop cannot finish before the kill). After the restart the VM
/// says `stopping`, not `running`, while its stop is finished in the background; then it
/// is `stopped` and its VMM is gone.
#[test]
fn daemon_killed_mid_stop_shows_stopping_until_the_guest_is_down() {
    require_vm!();
    let mut host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);
    let pid = host.vm_show(VM)["pid"].as_u64().unwrap() as u32;
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} {pid}");
    };
    signal("STOP");
    let mut stop = host.spawn_banger(&["vm", "stop", VM, "--timeout", "60"]);
    wait_until("the VM is stopping", Duration::from_secs(30), || {
        let vm = host.vm_show(VM);
        if vm["state"] == "stopping" {
            Ok(())
        } else {
            Err(vm.to_string())
        }
    });
    host.kill_daemon(9).unwrap();
    let _ = stop.wait();
    host.start_daemon().unwrap();

    let vm = host.vm_show(VM);
    assert_eq!(vm["state"], "stopping", "right after the restart: {vm}");
    assert_eq!(vm["pid"].as_u64(), Some(u64::from(pid)), "{vm}");
    signal("CONT");
    let started = Instant::now();
    let vm = wait_until("the resumed stop finishes", Duration::from_secs(90), || {
        let vm = host.vm_show(VM);
        match vm["state"].as_str() {
            Some("stopped") => Ok(vm),
            Some("stopping") => Err(vm.to_string()),
            _ => panic!("a VM being stopped became {vm}"),
        }
    });
    report_timing("resumed stop after restart", started.elapsed());
    assert!(vm["pid"].is_null(), "{vm}");
    assert!(!pid_alive(pid), "the VMM still runs");
    assert!(host.vmm_pids().is_empty());
}
