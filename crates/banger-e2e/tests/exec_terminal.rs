//! `vm exec` as Docker users expect it, on a real tiny guest: `-it` on a real terminal
//! (script(1)): keys typed, Ctrl-C reaching the foreground job and not the session, a
//! window resize, the exit code; the shell exit codes 127 and 126; a missing `-w`
//! directory named as the cause; `-e`, `--env-file`, `-i`, `-u`; and `vm exec` on a VM
//! that is still booting, which waits for it.

use std::time::Duration;

use banger_e2e::{TerminalSession, TestHost, bin_dir, exit_code, require_vm, text, wait_until};

const VM: &str = "tty";
const SHORT: Duration = Duration::from_secs(20);

#[test]
fn exec_it_runs_an_interactive_shell_on_a_guest_terminal() {
    require_vm!();
    let host = TestHost::start().unwrap();

    // A VM that is still booting is waited for, with a stage line, not refused.
    let mut create = host.spawn_banger(&["vm", "create", "--image", "tiny", "--name", VM]);
    wait_until("the VM is booting", SHORT, || {
        match host.vm_list().iter().find(|vm| vm["name"] == VM) {
            Some(vm) if vm["state"] == "creating" || vm["state"] == "starting" => Ok(()),
            Some(vm) => Err(format!("state {}", vm["state"])),
            None => Err("not listed yet".into()),
        }
    });
    let early = host.banger(&["vm", "exec", VM, "--", "echo", "booted"]);
    assert_eq!(exit_code(&early), Some(0), "{}", text(&early.stderr));
    assert_eq!(text(&early.stdout), "booted\n");
    assert!(
        text(&early.stderr).contains(&format!("waiting for {VM} to boot")),
        "stage line: {}",
        text(&early.stderr)
    );
    assert!(create.wait().unwrap().success());

    let banger = bin_dir().join("banger");
    let mut session =
        TerminalSession::spawn(&host, &banger, &["vm", "exec", "-it", VM, "--", "sh"]).unwrap();
    // The shell is interactive: it answers what is typed, on a terminal.
    session.send(b"echo sum-$((6*7))\r").unwrap();
    session.expect("sum-42", SHORT).unwrap();
    session.send(b"test -t 0 && echo tty-$((1+2))\r").unwrap();
    session.expect("tty-3", SHORT).unwrap();

    // Ctrl-C interrupts the foreground job; the shell (and the session) stay: the next
    // line runs long before the sleep would have ended.
    session.send(b"sleep 1000\r").unwrap();
    // The Ctrl-C is typed once `sleep` is the terminal's foreground job (its process
    // group is the terminal's, fields 5 and 8 of its stat), not while the shell still
    // reads the line.
    wait_until(
        "sleep is the guest terminal's foreground job",
        SHORT,
        || {
            let out = host.exec(
                VM,
                &[
                    "sh",
                    "-c",
                    "p=$(pidof sleep) && set -- $(cat /proc/$p/stat) && [ \"$5\" = \"$8\" ] \
                 || { echo \"no foreground sleep: ${p:-none} $*\"; exit 1; }",
                ],
            );
            match exit_code(&out) {
                Some(0) => Ok(()),
                _ => Err(format!("{}{}", text(&out.stdout), text(&out.stderr))),
            }
        },
    );
    session.send(b"\x03").unwrap();
    session.send(b"echo after-$((1+1))\r").unwrap();
    session.expect("after-2", SHORT).unwrap();

    // A resize of the user's terminal reaches the guest's.
    let device = session.device().unwrap();
    let resized = std::process::Command::new("stty")
        .args([
            "-F",
            &device.display().to_string(),
            "rows",
            "33",
            "cols",
            "111",
        ])
        .status()
        .unwrap();
    assert!(resized.success());
    wait_until("the guest terminal has the new size", SHORT, || {
        session.send(b"stty size | tr ' ' x\r").unwrap();
        session
            .expect("33x111", Duration::from_secs(5))
            .map(drop)
            .map_err(|error| error.to_string())
    });

    // The exit code of the session is the shell's.
    session.send(b"exit 7\r").unwrap();
    assert_eq!(session.wait(SHORT).unwrap(), Some(7));
}

#[test]
fn exec_follows_the_shell_exit_codes_and_docker_options() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);

    // Not found: 127; found but not executable: 126; each says why on stderr.
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["no-such-command"],
            127,
            "no-such-command: command not found",
        ),
        (
            &["/no/such/file"],
            127,
            "/no/such/file: no such file or directory",
        ),
        (&["/"], 126, "/: permission denied"),
    ];
    for (argv, code, message) in cases {
        let out = host.exec(VM, argv);
        assert_eq!(
            exit_code(&out),
            Some(*code),
            "{argv:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{argv:?}: {}",
            text(&out.stderr)
        );
    }

    // A missing working directory is the cause named, not the command.
    let out = host.banger(&["vm", "exec", "-w", "/nonexistent", VM, "--", "pwd"]);
    assert_eq!(exit_code(&out), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the working directory /nonexistent does not exist in the guest"),
        "{stderr}"
    );
    assert!(!stderr.contains("\"pwd\""), "{stderr}");

    // -e wins over --env-file; a bare name in the file takes banger's own value.
    let env_file = host.root().join("vars.env");
    std::fs::write(&env_file, "# settings\nA=from-file\nB=file\nHOME\n").unwrap();
    let out = host.banger_ok(&[
        "vm",
        "exec",
        "--env-file",
        &env_file.display().to_string(),
        "-e",
        "B=flag",
        VM,
        "--",
        "sh",
        "-c",
        "printf '%s|%s|%s' \"$A\" \"$B\" \"$HOME\"",
    ]);
    let host_home = host.root().join("home").display().to_string();
    assert_eq!(out, format!("from-file|flag|{host_home}"));

    // -i streams stdin to the command.
    let out = host.banger_with_input(
        &["vm", "exec", "-i", VM, "--", "wc", "-c"],
        &[b'x'; 100_000],
    );
    assert_eq!(exit_code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "100000");

    // -u runs as another user (a uid without a passwd entry too, as Docker does).
    let out = host.banger_ok(&[
        "vm",
        "exec",
        "-u",
        "4242",
        VM,
        "--",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    assert_eq!(out, "4242\n4242\n");
    let out = host.banger(&["vm", "exec", "-u", "nosuchuser", VM, "--", "true"]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("no user \"nosuchuser\""),
        "{}",
        text(&out.stderr)
    );
}
