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

use banger_proto::agent::{IdentityNet, IdentityRequest, ReplyBody, SshHostKey};

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
    ssh_host_keys(root, request.ssh_host_key.as_ref(), &mut report);
    let killed = execs.kill_all();
    report
        .done
        .push(format!("session ({killed} old execs killed)"));
    Ok(report)
}

/// New MAC, address and default route on the interface (ioctls, no programs started:
/// see `banger_sys::guest_net`), then a gratuitous ARP so neighbours forget the
/// snapshot's MAC for this address.
fn network(net: &IdentityNet, report: &mut Report) {
    let config = match ipv4_config(net) {
        Ok(config) => config,
        Err(error) => {
            report.warnings.push(error);
            return;
        }
    };
    if let Err(error) = banger_sys::guest_net::configure_ipv4(&config) {
        report
            .warnings
            .push(format!("cannot configure {}: {error}", net.interface));
        return;
    }
    report.done.push("network".into());
    let ip = config.address.to_string();
    // arping sends at once, then waits a second for replies nobody sends to an
    // unsolicited ARP: it is not waited for (a thread reaps it).
    match spawn(&["arping", "-U", "-c", "1", "-I", &net.interface, &ip]) {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
            report.done.push("gratuitous arp".into());
        }
        Err(error) => report.warnings.push(error),
    }
}

/// The request's text fields as the ioctls take them.
fn ipv4_config(net: &IdentityNet) -> Result<banger_sys::guest_net::Ipv4Config, String> {
    let bad = |what: &str| format!("bad {what} in the identity request: {net:?}");
    let mac = banger_sys::guest_net::parse_mac(&net.mac).ok_or_else(|| bad("MAC"))?;
    let (address, prefix) = net.address.split_once('/').ok_or_else(|| bad("address"))?;
    let prefix_len = prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| bad("prefix length"))?;
    Ok(banger_sys::guest_net::Ipv4Config {
        interface: net.interface.clone(),
        mac,
        address: address.parse().map_err(|_| bad("address"))?,
        prefix_len,
        gateway: net.gateway.parse().map_err(|_| bad("gateway"))?,
    })
}

/// A new `/etc/machine-id` when the image has one: a non-empty file, or an empty one in
/// a guest systemd already booted (a template's, emptied before it was saved, see the
/// daemon's `template.rs`). An empty file in a guest without systemd is left alone.
fn machine_id(root: &Path, report: &mut Report) {
    let path = root.join("etc/machine-id");
    let Ok(current) = fs::read_to_string(&path) else {
        return;
    };
    if current.trim().is_empty() && !root.join("run/systemd/system").is_dir() {
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

/// Replaces the ssh host keys the image has. OpenSSH's are all removed and one ed25519
/// key put in their place: the one the host made for this clone when the request
/// carries it, else one made here (`ssh-keygen -t ed25519`, a fraction of a second; an
/// RSA key takes about 8 s under TCG, so none is made: sshd serves the keys that exist).
/// sshd is then told to reload (SIGHUP to the pid in `/run/sshd.pid`: it re-executes
/// itself with the new keys; else systemd's `try-restart`). Dropbear's are removed (it
/// makes new ones on first use with `-R`, or banger's host key read does).
fn ssh_host_keys(root: &Path, supplied: Option<&SshHostKey>, report: &mut Report) {
    let ssh_dir = root.join("etc/ssh");
    let openssh = remove_matching(&ssh_dir, "ssh_host_", report);
    let dropbear = remove_matching(&root.join("etc/dropbear"), "dropbear_", report);
    // A template's keys were removed before it was saved: OpenSSH is there when its
    // server config is.
    if openssh > 0 || ssh_dir.join("sshd_config").is_file() {
        let key = ssh_dir.join("ssh_host_ed25519_key");
        let made = match supplied {
            Some(pair) => write_host_key(&key, pair),
            None => run(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &key.to_string_lossy(),
            ]),
        };
        match made {
            Ok(()) => report.done.push("ssh host keys".into()),
            Err(error) => report.warnings.push(error),
        }
        reload_sshd(root, report);
    }
    if dropbear > 0 {
        report.done.push("dropbear host keys".into());
    }
}

/// Writes the private key (0600, created new) and its `.pub` (0644).
fn write_host_key(key: &Path, pair: &SshHostKey) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = |path: &Path, mode: u32, text: &str| {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    };
    let public = std::path::PathBuf::from(format!("{}.pub", key.display()));
    write(key, 0o600, &pair.private)?;
    write(&public, 0o644, &format!("{}\n", pair.public.trim_end()))
}

/// Makes sshd serve the new keys: started when the template builder stopped it (the
/// marker [`SSHD_STOPPED`] says so; `systemctl --no-block`, not waited for, so the
/// request does not wait for sshd), else a running one is told to reload.
fn reload_sshd(root: &Path, report: &mut Report) {
    let marker = root.join(SSHD_STOPPED);
    if marker.exists() {
        let _ = fs::remove_file(&marker);
        match spawn(&["systemctl", "--no-block", "start", "ssh.service"]) {
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(error) => report.warnings.push(format!("cannot start sshd: {error}")),
        }
        return;
    }
    let pid = fs::read_to_string(root.join("run/sshd.pid"))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 1);
    if let Some(pid) = pid
        && nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .is_ok()
    {
        return;
    }
    if root.join("run/systemd/system").exists() {
        // --no-block: the restart must not hold the request (sshd may be starting).
        let _ = run(&["systemctl", "--no-block", "try-restart", "ssh.service"]);
    }
}

/// Left in `/run` by the template builder when it stopped sshd (see the daemon's
/// `template.rs`); every clone of that template starts sshd once its key is in place.
pub const SSHD_STOPPED: &str = "run/banger/sshd-stopped";

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

        // A booted systemd guest's emptied file (a template's) gets a new id.
        fs::create_dir_all(dir.path().join("run/systemd/system")).unwrap();
        machine_id(dir.path(), &mut report);
        let made = fs::read_to_string(dir.path().join("etc/machine-id")).unwrap();
        assert_eq!(made.trim().len(), 32, "{made:?}");
        assert_eq!(report.done, ["machine-id"]);
        report.done.clear();

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
        ssh_host_keys(dir.path(), None, &mut report);
        let mut left: Vec<String> = fs::read_dir(&keys)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["authorized_keys"]);
        assert_eq!(report.done, ["dropbear host keys"]);
    }

    #[test]
    fn a_supplied_host_key_replaces_every_openssh_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("etc/ssh");
        fs::create_dir_all(&ssh).unwrap();
        for name in [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
            "ssh_host_ecdsa_key",
            "ssh_host_ecdsa_key.pub",
            "sshd_config",
        ] {
            fs::write(ssh.join(name), "old").unwrap();
        }
        let pair = SshHostKey {
            private:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nnew\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public: "ssh-ed25519 AAAAnew".into(),
        };
        let mut report = Report::default();
        ssh_host_keys(dir.path(), Some(&pair), &mut report);
        assert_eq!(report.done, ["ssh host keys"], "{:?}", report.warnings);
        let mut left: Vec<String> = fs::read_dir(&ssh)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "ssh_host_ed25519_key",
                "ssh_host_ed25519_key.pub",
                "sshd_config"
            ]
        );
        let private = ssh.join("ssh_host_ed25519_key");
        assert_eq!(fs::read_to_string(&private).unwrap(), pair.private);
        assert_eq!(
            fs::read_to_string(ssh.join("ssh_host_ed25519_key.pub")).unwrap(),
            "ssh-ed25519 AAAAnew\n"
        );
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// A template's keys were removed before it was saved: its clones still get one.
    #[test]
    fn a_host_key_is_written_where_the_template_left_none() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("etc/ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::write(ssh.join("sshd_config"), "Port 22\n").unwrap();
        let pair = SshHostKey {
            private: "private\n".into(),
            public: "ssh-ed25519 AAAAclone".into(),
        };
        let mut report = Report::default();
        ssh_host_keys(dir.path(), Some(&pair), &mut report);
        assert_eq!(report.done, ["ssh host keys"], "{:?}", report.warnings);
        assert_eq!(
            fs::read_to_string(ssh.join("ssh_host_ed25519_key.pub")).unwrap(),
            "ssh-ed25519 AAAAclone\n"
        );

        // No OpenSSH at all: nothing is written.
        let bare = tempfile::tempdir().unwrap();
        fs::create_dir_all(bare.path().join("etc")).unwrap();
        let mut report = Report::default();
        ssh_host_keys(bare.path(), Some(&pair), &mut report);
        assert!(report.done.is_empty());
        assert!(!bare.path().join("etc/ssh").exists());
    }

    #[test]
    fn identity_addresses_are_parsed_or_refused() {
        let net = IdentityNet {
            interface: "eth0".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            address: "172.30.0.7/24".into(),
            gateway: "172.30.0.1".into(),
        };
        let config = ipv4_config(&net).unwrap();
        assert_eq!(config.address, std::net::Ipv4Addr::new(172, 30, 0, 7));
        assert_eq!(config.prefix_len, 24);
        assert_eq!(config.mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
        for broken in [
            IdentityNet {
                address: "172.30.0.7".into(),
                ..net.clone()
            },
            IdentityNet {
                address: "172.30.0.7/33".into(),
                ..net.clone()
            },
            IdentityNet {
                mac: "52:54".into(),
                ..net.clone()
            },
            IdentityNet {
                gateway: "gw".into(),
                ..net.clone()
            },
        ] {
            assert!(ipv4_config(&broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn a_missing_tool_is_reported_with_its_command() {
        let error = run(&["banger-no-such-tool", "x"]).unwrap_err();
        assert!(error.starts_with("`banger-no-such-tool x`: "), "{error}");
    }
}
