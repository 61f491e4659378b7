//! `cargo xtask bench tty`: the keystroke round trip of `vm exec -it` (the agent's pty,
//! over virtio-serial and the daemon) against `vm ssh` (OpenSSH to the guest's sshd over
//! the guest network), on the same tiny VM in one run. Both sessions run on real
//! terminals (`script(1)`) and stay open; one key is typed into each in turn and timed
//! until the guest's echo of it shows on the terminal. Needs root (the root helper and
//! a network namespace, for ssh); uses the debug build and the e2e image cache.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use banger_e2e::{HostOptions, TerminalSession, TestHost, bin_dir};

use super::{NetnsGuard, median, nix_is_root, percentile, splice_section, warm_tiny_cache};

const KEYS: usize = 40;
const VM: &str = "bench-tty";
const WAIT: Duration = Duration::from_secs(30);

pub(super) fn run(root: &std::path::Path) -> Result<()> {
    crate::build_binaries(root, false)?;
    crate::build_agent(root)?;
    if nix_is_root().is_none() {
        bail!("bench tty needs root (a network namespace and banger-helper, for ssh)");
    }
    warm_tiny_cache()?;
    let ns = format!("bgtty-{}", std::process::id());
    let netns = NetnsGuard::new(&ns)?;
    // The helper refuses a socket directory others can write to (such as /tmp): a
    // private one of the bench's own, root-owned and 0700.
    let helper_dir = tempfile::Builder::new()
        .prefix("banger-bench-tty-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(helper_dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let helper_socket = helper_dir.path().join("helper.sock");
    let helper_log = std::fs::File::create(helper_dir.path().join("helper.log"))?;
    let mut host = TestHost::prepare(HostOptions {
        netns: Some(ns.clone()),
        env: vec![(
            "BANGER_HELPER_SOCKET".into(),
            helper_socket.display().to_string(),
        )],
        ..HostOptions::default()
    })?;
    // Killed however the bench ends: the harness's calls panic on failure, and a helper
    // left running would keep holding whatever it inherited (`flock /work/.vm.lock`'s
    // descriptor, for one).
    let helper = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(bin_dir().join("banger-helper"))
            .args(["--owner-uid", "0", "--state-dir"])
            .arg(host.state_dir())
            .arg("--runtime-dir")
            .arg(host.runtime_dir())
            .arg("--socket")
            .arg(&helper_socket)
            .stdin(Stdio::null())
            .stdout(helper_log.try_clone()?)
            .stderr(helper_log)
            .spawn()
            .context("cannot start banger-helper")?,
    );
    let result = (|| -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&helper_socket).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(helper_dir.path().join("helper.log"))
                    .unwrap_or_default();
                bail!(
                    "banger-helper did not listen on {}: {log}",
                    helper_socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        host.start_daemon()?;
        host.create_vm(VM, &["--image", "tiny"]);
        // Waits for the guest's sshd and records its key.
        host.banger_ok(&["vm", "ssh", VM, "--", "true"]);
        let banger = bin_dir().join("banger");
        let mut exec =
            TerminalSession::spawn(&host, &banger, &["vm", "exec", "-it", VM, "--", "sh"])?;
        let mut ssh = TerminalSession::spawn(&host, &banger, &["vm", "ssh", VM])?;
        for session in [&mut exec, &mut ssh] {
            session.send(b"echo ready-$((1+1))\r")?;
            session.expect("ready-2", WAIT)?;
            // The prompt after the answer.
            session.expect("# ", WAIT).context("no prompt")?;
        }
        let (mut exec_ms, mut ssh_ms) = (Vec::new(), Vec::new());
        for round in 0..KEYS {
            // A distinct key each round, so an echo is never mistaken for an older one.
            let key = [b'a' + (round % 26) as u8];
            let key_text = std::str::from_utf8(&key)?;
            for (session, times) in [(&mut exec, &mut exec_ms), (&mut ssh, &mut ssh_ms)] {
                let started = Instant::now();
                session.send(&key)?;
                session.expect(key_text, WAIT)?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        for session in [&mut exec, &mut ssh] {
            // Ctrl-U drops the typed line; then leave.
            session.send(b"\x15exit\r")?;
        }
        exec.wait(WAIT)?;
        ssh.wait(WAIT)?;
        let accel = host.vm_show(VM)["accelerator"]
            .as_str()
            .unwrap_or("-")
            .to_owned();
        Ok(format!(
            "\n## Keystroke round trip: `vm exec -it` vs `vm ssh` (`cargo xtask bench tty`)\n\n\
Tiny image ({accel}), one VM, both sessions open on real terminals (`script(1)`); {KEYS} keys typed \
into each in turn, each timed from the write to the terminal until the guest's echo of it is \
read back. Debug build, daemon and root helper in a network namespace.\n\n\
| session | median | p90 |\n| --- | --- | --- |\n\
| `banger vm exec -it VM -- sh` (agent pty, virtio-serial, daemon) | {:.1} ms | {:.1} ms |\n\
| `banger vm ssh VM` (OpenSSH to the guest's dropbear, guest network) | {:.1} ms | {:.1} ms |\n",
            median(&mut exec_ms.clone()),
            percentile(&mut exec_ms.clone(), 0.9),
            median(&mut ssh_ms.clone()),
            percentile(&mut ssh_ms.clone(), 0.9),
        ))
    })();
    drop(host);
    drop(helper);
    drop(netns);
    drop(helper_dir);
    let section = result?;
    let path = root.join("BENCHMARKS.md");
    let report = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&path, splice(&report, &section))?;
    eprintln!("bench: wrote the keystroke section of BENCHMARKS.md{section}");
    Ok(())
}

/// A child process killed (and reaped) when dropped, on unwinding too.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replaces this bench's section of the report (or appends it).
fn splice(report: &str, section: &str) -> String {
    splice_section(report, "Keystroke round trip", section)
}
