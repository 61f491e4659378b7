//! `banger system install` where systemd really is PID 1: a `debian-bookworm` guest (its
//! init is systemd) gets this build's `banger`, `bangerd`, `banger-helper` and agent, and
//! installs them for an unprivileged owner inside itself. The test then checks, from the
//! guest's own `/proc` and `systemctl`:
//!
//! - both units are active, the helper as root with only the capabilities its unit grants
//!   and the daemon as the owner with none;
//! - the helper refuses a connection from a uid other than the owner's (root's included:
//!   it answers `unauthorized`) and, from the owner, an operation outside its policy;
//!
//! Not here yet: `system uninstall` in this guest fails: the helper's cleanup runs
//! `iptables -t nat -S`, which the guest's iptables cannot initialise ("Failed to
//! initialize nft: Protocol not supported"), and cleanup treats that as an error instead of
//! as nothing to clean. Also not here yet: `system restart` and a `kill -9` of the helper under systemd. In the one
//! run that got that far (a loaded two-core CI machine, three TCG guests at once), the
//! restarted helper did not answer within `system restart`'s 30 s; the cause is not found
//! yet, so those steps are left out rather than made lenient.
//!
//! The guest has no nftables package, so no nftables state can appear in it; the host's
//! supervised-mode test (`crates/banger/tests/system_install.rs`) checks the ruleset.

use std::time::{Duration, Instant};

use banger_e2e::{TestHost, agent_binary, bin_dir, exit_code, note, require_vm, text};

const VM: &str = "sysd";
const DIR: &str = "/opt/banger-build";
const OWNER: &str = "dev";

/// `sh -c SCRIPT` in the guest as root: (exit code, stdout, stderr).
fn sh(host: &TestHost, script: &str) -> (i32, String, String) {
    let out = host.exec(VM, &["sh", "-c", script]);
    (
        exit_code(&out).unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// `sh -c SCRIPT` in the guest, which must exit 0; its stdout.
fn sh_ok(host: &TestHost, script: &str) -> String {
    let (code, out, err) = sh(host, script);
    assert_eq!(
        code, 0,
        "`{script}` exited {code}\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Polls `script` until it exits 0, or fails naming what it waited for.
fn wait_sh(host: &TestHost, script: &str, what: &str, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let (code, out, err) = sh(host, script);
        if code == 0 {
            return out;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: still not true after {timeout:?}\nlast stdout: {out}\nlast stderr: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A field of `/proc/PID/status`, e.g. `Uid` or `CapEff`.
fn proc_status(host: &TestHost, pid: &str, field: &str) -> String {
    let out = sh_ok(host, &format!("cat /proc/{pid}/status"));
    out.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{out}"))
        .trim()
        .to_owned()
}

fn main_pid(host: &TestHost, unit: &str) -> String {
    let pid = sh_ok(
        host,
        &format!("systemctl show -p MainPID --value {unit}.service"),
    );
    let pid = pid.trim().to_owned();
    assert!(pid != "0" && !pid.is_empty(), "{unit} has no main pid");
    pid
}

/// Capability bits, decoded with the guest kernel's numbering.
fn caps(mask_hex: &str) -> Vec<u32> {
    let mask = u64::from_str_radix(mask_hex, 16).unwrap();
    (0..64).filter(|bit| mask & (1 << bit) != 0).collect()
}

const CAP_CHOWN: u32 = 0;
const CAP_NET_ADMIN: u32 = 12;

/// One request line to the helper's socket from `as_user` (perl-base is in every Debian
/// image); the helper's reply line, or the connect error.
fn helper_request(host: &TestHost, as_user: &str, socket: &str, request: &str) -> String {
    let perl = format!(
        "use IO::Socket::UNIX; $SIG{{PIPE}} = 'IGNORE'; \
         my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => '{socket}') \
           or do {{ print \"connect: $!\\n\"; exit 0 }}; \
         print $s '{request}', \"\\n\"; my $r = <$s>; print defined $r ? $r : \"closed\\n\";"
    );
    let script = format!(
        "su -s /bin/sh {as_user} -c {}",
        shell_quote(&format!("perl -e {}", shell_quote(&perl)))
    );
    let (code, out, err) = sh(host, &script);
    assert_eq!(code, 0, "perl client failed: {out} {err}");
    out.trim().to_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `banger ARGS` as the owner, inside the guest.
fn as_owner(host: &TestHost, args: &str) -> (i32, String, String) {
    sh(
        host,
        &format!(
            "su -l {OWNER} -s /bin/sh -c {}",
            shell_quote(&format!("{DIR}/banger {args}"))
        ),
    )
}

#[test]
fn system_install_under_real_systemd_in_a_debian_guest() {
    require_vm!();
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--memory", "1024"]);
    assert_eq!(host.exec_ok(VM, &["cat", "/proc/1/comm"]).trim(), "systemd");

    // this build's binaries into the guest
    let started = Instant::now();
    host.exec_ok(VM, &["mkdir", "-p", DIR]);
    // without debug info: a fifth of the bytes to push through the agent under TCG
    let stripped = tempfile::tempdir().unwrap();
    for name in ["banger", "bangerd", "banger-helper"] {
        let status = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(stripped.path().join(name))
            .arg(bin_dir().join(name))
            .status()
            .unwrap();
        assert!(status.success(), "strip {name}");
    }
    std::fs::copy(agent_binary(), stripped.path().join("banger-agent")).unwrap();
    host.banger_ok(&[
        "vm",
        "cp",
        &format!("{}/.", stripped.path().display()),
        &format!("{VM}:{DIR}"),
    ]);
    note(&format!(
        "copied the binaries in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    sh_ok(
        &host,
        &format!("useradd -m -s /bin/sh {OWNER} && chmod 0755 {DIR}"),
    );
    let uid = sh_ok(&host, &format!("id -u {OWNER}")).trim().to_owned();

    // install: systemd mode is detected, both services start and answer
    let started = Instant::now();
    let (code, out, err) = sh(
        &host,
        &format!(
            "{DIR}/banger system install --owner {OWNER} --from {DIR} --agent {DIR}/banger-agent 2>&1"
        ),
    );
    if code != 0 {
        let (_, journal, _) = sh(
            &host,
            "journalctl --no-pager -n 60 -u banger-helper.service -u bangerd.service",
        );
        panic!("system install exited {code}: {out}{err}\njournal:\n{journal}");
    }
    note(&format!(
        "system install took {:.1}s:\n{out}",
        started.elapsed().as_secs_f64()
    ));
    let status = wait_sh(
        &host,
        "s=$(banger system status --json) && echo \"$s\" && \
         [ \"$(echo \"$s\" | grep -c '\"answers\": true')\" = 2 ]",
        "both services answer in `system status`",
        Duration::from_secs(30),
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["mode"], "systemd", "{status}");
        assert_eq!(service["state"], "active", "{status}");
    }
    sh_ok(
        &host,
        "systemctl is-active banger-helper.service bangerd.service",
    );
    sh_ok(
        &host,
        "systemctl is-enabled banger-helper.service bangerd.service",
    );

    // users and capabilities, as the kernel sees them
    let helper_pid = main_pid(&host, "banger-helper");
    let daemon_pid = main_pid(&host, "bangerd");
    let helper_uid = proc_status(&host, &helper_pid, "Uid");
    let daemon_uid = proc_status(&host, &daemon_pid, "Uid");
    assert!(
        helper_uid.split_whitespace().all(|u| u == "0"),
        "helper uids: {helper_uid}"
    );
    assert!(
        daemon_uid.split_whitespace().all(|u| u == uid),
        "daemon uids: {daemon_uid}"
    );
    let helper_eff = caps(&proc_status(&host, &helper_pid, "CapEff"));
    let helper_bnd = caps(&proc_status(&host, &helper_pid, "CapBnd"));
    let daemon_eff = caps(&proc_status(&host, &daemon_pid, "CapEff"));
    let daemon_bnd = caps(&proc_status(&host, &daemon_pid, "CapBnd"));
    note(&format!(
        "helper CapEff {helper_eff:?} CapBnd {helper_bnd:?}; daemon CapEff {daemon_eff:?} CapBnd {daemon_bnd:?}"
    ));
    assert_eq!(helper_eff, vec![CAP_CHOWN, CAP_NET_ADMIN]);
    assert_eq!(helper_bnd, vec![CAP_CHOWN, CAP_NET_ADMIN]);
    assert!(
        daemon_eff.is_empty(),
        "daemon has capabilities {daemon_eff:?}"
    );
    assert_eq!(proc_status(&host, &helper_pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(&host, &daemon_pid, "NoNewPrivs"), "1");

    // the owner's CLI reaches the daemon
    let (code, out, err) = as_owner(&host, "ping");
    assert_eq!(code, 0, "ping as the owner: {out} {err}");

    // the helper: another uid cannot connect, root is refused by uid, the owner gets
    // an operation outside the policy refused
    let metadata: serde_json::Value =
        serde_json::from_str(&sh_ok(&host, "cat /etc/banger/install.json")).unwrap();
    let socket = metadata["paths"]["helper_socket"]
        .as_str()
        .unwrap()
        .to_owned();
    let socket = socket.as_str();
    sh_ok(&host, "useradd -M -s /bin/sh eve");
    let eve = helper_request(&host, "eve", socket, r#"{"op":"hello"}"#);
    assert!(eve.starts_with("connect:"), "another user connected: {eve}");
    let root = helper_request(&host, "root", socket, r#"{"op":"hello"}"#);
    assert!(
        root.contains(r#""code":"unauthorized""#),
        "root (not the owner) got: {root}"
    );
    let hello = helper_request(&host, OWNER, socket, r#"{"op":"hello"}"#);
    assert!(hello.contains("\"version\""), "the owner's hello: {hello}");
    let forbidden = helper_request(&host, OWNER, socket, r#"{"op":"delete_tap","name":"lo"}"#);
    assert!(
        forbidden.contains(r#""code":"invalid_name""#),
        "deleting a non-banger link was not refused: {forbidden}"
    );
    sh_ok(&host, "ip link show lo >/dev/null");

    host.banger_ok(&["vm", "delete", "--force", VM]);
    host.assert_no_vm_left("after the systemd install test");
}
