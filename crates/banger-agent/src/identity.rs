//! identity: the `identity` request, which makes a guest restored from a snapshot a
//! machine of its own before anything else runs in it. The order matters: the clock
//! first (so file times and certificates are right), then the RNG (so the machine-id and
//! host keys generated afterwards differ between clones), then names and addresses. A
//! step the image has no use for (no machine-id, no ssh host keys) is skipped; a step
//! that fails because a tool is missing is a warning, while the clock, RNG and hostname
//! must succeed.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use banger_proto::agent::{IdentityNet, IdentityRequest, ReplyBody};

use crate::exec::{DEFAULT_PATH, ExecRegistry};

/// The outcome so far: steps done and warnings.
#[derive(Debug, Default)]
struct Report {
    done: Vec<String>,
    warnings: Vec<String>,
}

/// Runs every fix-up; `root` is `/` (tests point file steps elsewhere).
pub fn apply(request: &IdentityRequest, execs: &ExecRegistry, root: &Path) -> ReplyBody {
    match apply_steps(request, execs, root) {
        Ok(report) => ReplyBody::IdentityOk {
            done: report.done,
            warnings: report.warnings,
        },
        Err(message) => ReplyBody::Error { message },
    }
}

fn apply_steps(
    request: &IdentityRequest,
    execs: &ExecRegistry,
    root: &Path,
) -> Result<Report, String> {
    let mut report = Report::default();
    banger_sys::guest::set_realtime(u128::from(request.unix_nanos))
        .map_err(|error| format!("cannot set the clock: {error}"))?;
    report.done.push("clock".into());
    banger_sys::guest::reseed_rng(&request.seed)
        .map_err(|error| format!("cannot reseed the kernel RNG: {error}"))?;
    report.done.push("rng".into());
    banger_sys::guest::set_hostname(&request.hostname)
        .map_err(|error| format!("cannot set the hostname: {error}"))?;
    if let Err(error) = fs::write(root.join("etc/hostname"), format!("{}\n", request.hostname)) {
        report
            .warnings
            .push(format!("cannot write /etc/hostname: {error}"));
    }
    report.done.push("hostname".into());
    if let Some(net) = &request.net {
        network(net, &mut report);
    }
    machine_id(root, &mut report);
    ssh_host_keys(root, &mut report);
    let killed = execs.kill_all();
    report
        .done
        .push(format!("session ({killed} old execs killed)"));
    Ok(report)
}

/// New MAC, address and default route on the interface, then a gratuitous ARP so
/// neighbours forget the snapshot's MAC for this address.
fn network(net: &IdentityNet, report: &mut Report) {
    let interface = net.interface.as_str();
    let steps: [&[&str]; 5] = [
        &["ip", "link", "set", "dev", interface, "address", &net.mac],
        &["ip", "addr", "flush", "dev", interface],
        &["ip", "addr", "add", &net.address, "dev", interface],
        &["ip", "link", "set", "dev", interface, "up"],
        &[
            "ip",
            "route",
            "replace",
            "default",
            "via",
            &net.gateway,
            "dev",
            interface,
        ],
    ];
    for argv in steps {
        if let Err(error) = run(argv) {
            report.warnings.push(error);
            return;
        }
    }
    report.done.push("network".into());
    let ip = net.address.split('/').next().unwrap_or_default();
    // arping sends at once, then waits a second for replies nobody sends to an
    // unsolicited ARP: it is not waited for (a thread reaps it).
    match spawn(&["arping", "-U", "-c", "1", "-I", interface, ip]) {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
            report.done.push("gratuitous arp".into());
        }
        Err(error) => report.warnings.push(error),
    }
}

/// A new `/etc/machine-id` when the image has a non-empty one (an empty file means
/// "generate at boot", which already happened for this guest's snapshot).
fn machine_id(root: &Path, report: &mut Report) {
    let path = root.join("etc/machine-id");
    let current = fs::read_to_string(&path).unwrap_or_default();
    if current.trim().is_empty() {
        return;
    }
    let result = random_hex(16).and_then(|id| fs::write(&path, format!("{id}\n")));
    match result {
        Ok(()) => report.done.push("machine-id".into()),
        Err(error) => report
            .warnings
            .push(format!("cannot write {}: {error}", path.display())),
    }
}

/// Replaces the ssh host keys the image has. OpenSSH's are all removed and an ed25519
/// key made (`ssh-keygen -t ed25519`, a fraction of a second; an RSA key takes about 8 s
/// under TCG, so none is made: sshd serves the keys that exist), then sshd restarted.
/// Dropbear's are removed (it makes new ones on first use with `-R`, or banger's host
/// key read does).
fn ssh_host_keys(root: &Path, report: &mut Report) {
    let ssh_dir = root.join("etc/ssh");
    let openssh = remove_matching(&ssh_dir, "ssh_host_", report);
    let dropbear = remove_matching(&root.join("etc/dropbear"), "dropbear_", report);
    if openssh > 0 {
        let key = ssh_dir.join("ssh_host_ed25519_key");
        let key = key.to_string_lossy();
        match run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", &key]) {
            Ok(()) => report.done.push("ssh host keys".into()),
            Err(error) => report.warnings.push(error),
        }
        if Path::new("/run/systemd/system").exists() {
            // --no-block: the restart must not hold the request (sshd may be starting).
            let _ = run(&["systemctl", "--no-block", "try-restart", "ssh.service"]);
        }
    }
    if dropbear > 0 {
        report.done.push("dropbear host keys".into());
    }
}

/// Removes the files of `dir` whose name starts with `prefix` and contains `_key`;
/// returns how many.
fn remove_matching(dir: &Path, prefix: &str, report: &mut Report) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.contains("_key") {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) => report
                    .warnings
                    .push(format!("cannot remove {}: {error}", entry.path().display())),
            }
        }
    }
    removed
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Starts a tool with the agent's PATH, its stdout discarded and stderr piped.
fn spawn(argv: &[&str]) -> Result<std::process::Child, String> {
    Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("`{}`: {error}", argv.join(" ")))
}

/// Runs a tool with the agent's PATH; an error names the command and its stderr.
fn run(argv: &[&str]) -> Result<(), String> {
    let shown = argv.join(" ");
    let child = spawn(argv)?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("`{shown}`: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_is_replaced_only_when_the_image_has_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        let mut report = Report::default();
        machine_id(dir.path(), &mut report);
        assert!(report.done.is_empty(), "no machine-id: nothing to do");

        fs::write(dir.path().join("etc/machine-id"), "").unwrap();
        machine_id(dir.path(), &mut report);
        assert!(
            report.done.is_empty(),
            "an empty machine-id is generated at boot"
        );

        let old = "2511ecaf2511ecaf2511ecaf2511ecaf\n";
        fs::write(dir.path().join("etc/machine-id"), old).unwrap();
        machine_id(dir.path(), &mut report);
        let new = fs::read_to_string(dir.path().join("etc/machine-id")).unwrap();
        assert_ne!(new, old);
        assert_eq!(new.trim().len(), 32);
        assert!(new.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(report.done, ["machine-id"]);
    }

    #[test]
    fn dropbear_keys_are_removed_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("etc/dropbear");
        fs::create_dir_all(&keys).unwrap();
        for name in [
            "dropbear_ed25519_host_key",
            "dropbear_rsa_host_key",
            "authorized_keys",
        ] {
            fs::write(keys.join(name), "x").unwrap();
        }
        let mut report = Report::default();
        ssh_host_keys(dir.path(), &mut report);
        let mut left: Vec<String> = fs::read_dir(&keys)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["authorized_keys"]);
        assert_eq!(report.done, ["dropbear host keys"]);
    }

    #[test]
    fn a_missing_tool_is_reported_with_its_command() {
        let error = run(&["banger-no-such-tool", "x"]).unwrap_err();
        assert!(error.starts_with("`banger-no-such-tool x`: "), "{error}");
    }
}
