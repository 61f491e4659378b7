//! The CLI's lifecycle ergonomics on real tiny guests: a destructive command refuses a
//! prefix without a terminal, `--all` stops, starts and deletes every VM at once (each
//! progress line naming its VM), stopping a stopped VM succeeds, and `vm logs -f` ends
//! when its VM is deleted, with `\n` line ends.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banger_e2e::{TestHost, exit_code, require_vm, text, wait_until};

const SHORT: Duration = Duration::from_secs(20);

#[test]
fn all_flags_idempotence_and_the_destructive_prefix_refusal() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm("ea-victim", &["--image", "tiny"]);
    host.create_vm("ea-other", &["--image", "tiny"]);

    // `ea-v` finds ea-victim for a read-only command, never for a delete or a kill.
    assert_eq!(host.vm_show("ea-v")["name"], "ea-victim");
    let refused: [&[&str]; 2] = [
        &["vm", "delete", "--force", "ea-v"],
        &["vm", "kill", "ea-v"],
    ];
    for args in refused {
        let out = host.banger(args);
        assert_eq!(exit_code(&out), Some(1), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("\"ea-v\" is only a prefix of \"ea-victim\""),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(host.vm_names(), ["ea-other", "ea-victim"]);
    assert_eq!(host.vm_show("ea-victim")["state"], "running");

    // --all stops both at once; each progress line names its VM.
    let out = host.banger(&["vm", "stop", "--all"]);
    host.expect_success(&["vm", "stop", "--all"], &out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ea-victim: stopped"), "{stdout}");
    assert!(stdout.contains("ea-other: stopped"), "{stdout}");
    for vm in host.vm_list() {
        assert_eq!(vm["state"], "stopped", "{vm}");
    }

    // Stopping a stopped VM is not an error.
    let again = host.banger_ok(&["vm", "stop", "ea-victim"]);
    assert_eq!(again, "ea-victim: already stopped\n");

    let out = host.banger(&["vm", "start", "--all"]);
    host.expect_success(&["vm", "start", "--all"], &out);
    let stderr = text(&out.stderr);
    for vm in ["ea-victim", "ea-other"] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("{vm}: ["))),
            "progress names {vm}: {stderr}"
        );
    }
    assert_eq!(
        host.exec_ok("ea-other", &["echo", "up"]),
        "up\n",
        "started for real"
    );
    let started = host.banger_ok(&["vm", "start", "ea-other"]);
    assert!(
        started.starts_with("ea-other: already running"),
        "{started}"
    );

    let deleted = host.banger_json(&["vm", "delete", "--all", "--force"]);
    assert_eq!(deleted.as_array().map(Vec::len), Some(2), "{deleted}");
    assert!(host.vm_names().is_empty());
    host.assert_no_vm_left("after delete --all");
}

#[test]
fn logs_follow_ends_when_the_vm_is_deleted() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm("follow", &["--image", "tiny"]);
    let mut logs = host.spawn_banger(&["vm", "logs", "-f", "follow"]);
    let mut follower = logs.stdout.take().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let printed = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = follower.read(&mut buffer) {
                if count == 0 {
                    return;
                }
                printed.lock().unwrap().extend_from_slice(&buffer[..count]);
            }
        })
    };
    // The follower has caught up with the boot log (it printed at least what a plain
    // `vm logs` prints now) before the VM goes.
    let so_far = host.banger_ok(&["vm", "logs", "follow"]).len();
    wait_until("vm logs -f caught up with the boot log", SHORT, || {
        let have = printed.lock().unwrap().len();
        if have >= so_far && so_far > 0 {
            Ok(())
        } else {
            Err(format!("{have} of {so_far} bytes printed"))
        }
    });
    host.banger_ok(&["vm", "delete", "--force", "follow"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = logs.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = logs.kill();
            panic!("vm logs -f still running 10 s after its VM was deleted");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let stdout = printed.lock().unwrap().clone();
    assert!(status.success(), "vm logs -f: {status}");
    assert!(!stdout.is_empty(), "the boot log was printed");
    assert!(
        !stdout.windows(2).any(|w| w == b"\r\n"),
        "line ends are \\n only"
    );
}
