//! `vm exec` and `vm run` on a real tiny guest: exit codes pass through, argv arrives
//! byte for byte without a shell, stdout and stderr stay separate, large output is not
//! truncated, `vm run --rm` exits with the command's code and leaves no VM, and Ctrl-C
//! stops the guest command (and `vm run --rm` still cleans up).

use banger_e2e::{TestHost, exit_code, require_vm, text, wait_until};

const VM: &str = "exec";

#[test]
fn exec_passes_exit_codes_argv_and_streams_through() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);

    // Exit codes, including a command killed by a signal (128 + 9).
    let cases: &[(&[&str], i32)] = &[
        (&["true"], 0),
        (&["false"], 1),
        (&["sh", "-c", "exit 42"], 42),
        (&["sh", "-c", "kill -9 $$"], 137),
    ];
    for (argv, expected) in cases {
        let out = host.exec(VM, argv);
        assert_eq!(
            exit_code(&out),
            Some(*expected),
            "{argv:?}: stderr {}",
            text(&out.stderr)
        );
    }
    // A command that does not exist is the guest's failure, not a banger crash.
    let missing = host.exec(VM, &["/no/such/command"]);
    assert_ne!(exit_code(&missing), Some(0));

    // argv arrives intact: spaces, quotes, `$`, a newline, an empty argument, UTF-8, and
    // something that looks like an option. No shell ever sees them.
    let args = [
        "a b",
        "it's",
        "$HOME",
        "x\ny",
        "",
        "ünï\tcode",
        "--not-an-option",
    ];
    let mut argv = vec!["printf", "[%s]\\n"];
    argv.extend_from_slice(&args);
    let out = host.exec(VM, &argv);
    assert_eq!(exit_code(&out), Some(0), "{}", text(&out.stderr));
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out.stdout, expected.as_bytes(), "exact bytes of printf");

    // stdout and stderr stay separate.
    let out = host.exec(
        VM,
        &["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"],
    );
    assert_eq!(exit_code(&out), Some(0));
    assert_eq!(text(&out.stdout), "to-out\nmore-out\n");
    assert_eq!(text(&out.stderr), "to-err\n");

    // Large output streams through without loss or reordering.
    let out = host.exec(VM, &["seq", "1", "100000"]);
    assert_eq!(exit_code(&out), Some(0));
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    assert!(
        out.stdout == expected.as_bytes(),
        "seq output differs: {} bytes received, {} expected",
        out.stdout.len(),
        expected.len()
    );

    // Environment and working directory reach the command.
    let out = host.banger_ok(&[
        "vm",
        "exec",
        VM,
        "-e",
        "GREETING=hello world",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "printf '%s|%s' \"$GREETING\" \"$PWD\"",
    ]);
    assert_eq!(out, "hello world|/tmp");
}

#[test]
fn run_rm_exits_with_the_command_code_and_leaves_no_vm() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let started = std::time::Instant::now();
    let out = host.banger(&[
        "vm",
        "run",
        "--image",
        "tiny",
        "--rm",
        "--",
        "sh",
        "-c",
        "echo ran; exit 42",
    ]);
    banger_e2e::report_timing("vm run --rm (tiny)", started.elapsed());
    assert_eq!(exit_code(&out), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
    host.assert_no_vm_left("after vm run --rm");
}

/// Starts `banger args...`, waits until the guest command printed `started`, then sends
/// the CLI SIGINT (what Ctrl-C does) and returns its exit status and stderr.
fn interrupt_after_start(host: &TestHost, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead as _, Read as _};
    let mut child = host.spawn_banger(args);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the guest's output");
    assert_eq!(line, "started\n", "banger {}", args.join(" "));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = child.wait().expect("wait for banger");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

#[test]
fn ctrl_c_stops_the_guest_command_and_run_rm_cleans_up() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);

    // `vm exec`: Ctrl-C ends the CLI, and the daemon stops the command in the guest.
    let (status, stderr) = interrupt_after_start(
        &host,
        &[
            "vm",
            "exec",
            VM,
            "--",
            "sh",
            "-c",
            "echo $$ > /tmp/long.pid; echo started; exec sleep 1000",
        ],
    );
    assert!(!status.success(), "{stderr}");
    wait_until(
        "the guest command is gone after the interrupted `vm exec`",
        std::time::Duration::from_secs(10),
        || {
            let probe = host.exec(VM, &["sh", "-c", "kill -0 $(cat /tmp/long.pid)"]);
            match exit_code(&probe) {
                Some(0) => Err("the guest process is still alive".to_string()),
                _ => Ok(()),
            }
        },
    );

    // `vm run --rm`: Ctrl-C mid-command exits 130 and deletes the VM it made.
    let (status, stderr) = interrupt_after_start(
        &host,
        &[
            "vm",
            "run",
            "--image",
            "tiny",
            "--rm",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ],
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(host.vm_names(), [VM], "only the first VM is left");
}
