//! One full lifecycle on the default `debian-bookworm` image, whose guest runs systemd:
//! create (building the image the first time, which takes minutes), systemd as PID 1 and
//! a booted system, a graceful stop through systemd's poweroff, start, delete. The create
//! goes through the API so every stage's time is reported.

use std::time::{Duration, Instant};

use banger_api::methods::{VmCreate, VmCreateParams};
use banger_api::{Event, StageState};
use banger_e2e::{TestHost, exit_code, pid_alive, report_timing, require_vm, text};

const VM: &str = "deb";

/// A first build of the image (debootstrap-like, from Debian packages) plus a systemd
/// boot under TCG on a busy two-core machine.
const CREATE_TIMEOUT: Duration = Duration::from_secs(1100);

/// Time to a stage event, milliseconds since the operation started.
fn stage_ms(stages: &[(String, StageState, u64)], name: &str, state: StageState) -> Option<u64> {
    stages
        .iter()
        .find(|(stage, s, _)| stage == name && *s == state)
        .map(|(_, _, ms)| *ms)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn debian_bookworm_lifecycle() {
    require_vm!();
    let host = TestHost::start().unwrap();

    // create, through the API, recording every stage
    let mut stages = Vec::new();
    let started = Instant::now();
    let created = host.block_on(async {
        let mut client = host.client().await.unwrap();
        let params = VmCreateParams {
            name: Some(VM.into()),
            ..VmCreateParams::default()
        };
        let call = client.call::<VmCreate>(&params, |event| {
            if let Event::Stage {
                stage,
                state,
                elapsed_ms,
                detail,
                ..
            } = event
            {
                eprintln!(
                    "[{:7.1}s] {stage} {state:?} {}",
                    elapsed_ms as f64 / 1000.0,
                    detail.unwrap_or_default()
                );
                stages.push((stage, state, elapsed_ms));
            }
        });
        tokio::time::timeout(CREATE_TIMEOUT, call).await
    });
    let created = match created {
        Ok(Ok(vm)) => vm,
        Ok(Err(err)) => panic!("create failed: {err}"),
        Err(_) => panic!("create did not finish within {}s", CREATE_TIMEOUT.as_secs()),
    };
    report_timing("debian create (total)", started.elapsed());
    assert_eq!(created.image, "debian-bookworm");
    if let Some(root_disk) = stage_ms(&stages, "root disk", StageState::Started) {
        report_timing("debian image+kernel ready (build or cache)", ms(root_disk));
    }
    let boot = stage_ms(&stages, "boot", StageState::Started).expect("a boot stage");
    let ready = stage_ms(&stages, "agent ready", StageState::Done).expect("agent ready");
    report_timing("debian boot-to-ready (create)", ms(ready - boot));

    // systemd runs the guest, and the system finishes booting
    assert_eq!(host.exec_ok(VM, &["cat", "/proc/1/comm"]).trim(), "systemd");
    let out = host.exec(
        VM,
        &["timeout", "300", "systemctl", "is-system-running", "--wait"],
    );
    let status = text(&out.stdout).trim().to_string();
    match status.as_str() {
        "running" => {}
        "degraded" => {
            let failed = host.exec(VM, &["systemctl", "--failed", "--no-legend", "--plain"]);
            eprintln!(
                "DEGRADED: failed units in the debian guest:\n{}",
                text(&failed.stdout)
            );
        }
        other => panic!(
            "systemctl is-system-running --wait said {other:?} (exit {:?}): {}",
            exit_code(&out),
            text(&out.stderr)
        ),
    }
    eprintln!("debian guest system state: {status}");
    let first_boot = host.exec_ok(VM, &["cat", "/proc/sys/kernel/random/boot_id"]);

    // stop: systemd powers the guest off; the VMM exits well before the timeout
    let pid = host.vm_show(VM)["pid"].as_u64().unwrap() as u32;
    let stop_timeout = 120;
    let started = Instant::now();
    host.banger_ok(&["vm", "stop", VM, "--timeout", &stop_timeout.to_string()]);
    let stop_time = started.elapsed();
    report_timing("debian stop", stop_time);
    assert!(!pid_alive(pid), "the VMM exited");
    assert!(
        stop_time < Duration::from_secs(stop_timeout),
        "the stop finished before its timeout"
    );
    let console = host.banger_ok(&["vm", "logs", VM, "--tail", "30"]);
    assert!(
        console.contains("reboot: Power down"),
        "systemd powered the guest off (not a kill at the timeout): {console}"
    );
    assert_eq!(host.vm_show(VM)["state"], "stopped");

    // start again: a new boot that reaches the agent
    let started = Instant::now();
    host.banger_ok(&["vm", "start", VM]);
    report_timing("debian start (boot-to-ready)", started.elapsed());
    assert_eq!(host.exec_ok(VM, &["cat", "/proc/1/comm"]).trim(), "systemd");
    assert_ne!(
        host.exec_ok(VM, &["cat", "/proc/sys/kernel/random/boot_id"]),
        first_boot
    );

    host.banger_ok(&["vm", "delete", VM, "--force"]);
    host.assert_no_vm_left("after deleting the debian VM");
}
