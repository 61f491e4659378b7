//! `banger system install` where systemd really is PID 1: a `debian-bookworm` guest (its
//! init is systemd) gets this build's `banger`, `bangerd`, `banger-helper` and agent, and
//! installs them for an unprivileged owner inside itself. The test then checks, from the
//! guest's own `/proc` and `systemctl`:
//!
//! - both units are active, the helper as root with only the capabilities its unit grants
//!   and the daemon as the owner with none;
//! - the helper refuses a connection from a uid other than the owner's (root's included:
//!   it answers `unauthorized`) and, from the owner, an operation outside its policy;
//! - `system restart` gives both units new main pids within its own 30 s answer wait
//!   (8.4 s and 14.6 s in two runs here), both answer in `system status --json`, the owner's CLI pings
//!   the daemon, and the new daemon's startup reached the helper (its journal, read by the
//!   unit's invocation id). The restarted helper's first bind succeeds (no `cannot listen`
//!   in its journal, `NRestarts=0`): it used to fail, because the socket its predecessor
//!   left is the owner's, mode 0600, and the helper is root without CAP_DAC_OVERRIDE, so
//!   its liveness probe (a connect) got EACCES and every start exited until `system
//!   restart`'s wait ran out; the probe now asks `/proc/net/unix` on EACCES;
//! - `kill -9` of the helper's main pid: systemd starts a new one (new pid, active), whose
//!   socket is the owner's 0600 again and answers the owner's `hello`; the daemon keeps
//!   answering, and a daemon started afterwards reaches the new helper;
//! - `system uninstall` exits 0 and names the guest's iptables (which cannot initialise:
//!   "Failed to initialize nft: Protocol not supported") as holding nothing; afterwards
//!   no banger unit file or loaded unit, no process running a banger service binary, no
//!   bridge or tap, nothing of banger's in the netfilter state the guest can list, no
//!   resolver file naming banger (the `.vm` routing is resolved's per-link state, gone
//!   with the bridge), and none of the installed binaries, `/etc/banger`, `/run/banger*`
//!   or `/var/log/banger`; `system status` says it is not installed.
//!
//! This guest's kernel has no bridge driver (nor `/lib/modules` to load one), so the
//! daemon's startup ends in the helper's refusal of `ensure_bridge`; that refusal comes
//! only after the daemon's `hello` matched the helper's bridge and pool, so it still
//! shows the daemon reached the helper. The bridge checks of uninstall therefore check
//! only that none is left.
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
    let bridge = metadata["network"]["bridge"].as_str().unwrap().to_owned();
    assert_daemon_uses_helper(&host, "after install");

    restart_changes_both_pids(&host, &helper_pid, &daemon_pid);
    killed_helper_is_restarted_by_systemd(&host, socket, &uid);
    uninstall_leaves_nothing(&host, &bridge);

    host.banger_ok(&["vm", "delete", "--force", VM]);
    host.assert_no_vm_left("after the systemd install test");
}

/// The journal of `unit`'s current run (its invocation id), as plain messages.
fn journal_of_current_run(host: &TestHost, unit: &str) -> String {
    let invocation = sh_ok(
        host,
        &format!("systemctl show -p InvocationID --value {unit}.service"),
    );
    let (_, out, _) = sh(
        host,
        &format!(
            "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={}",
            invocation.trim()
        ),
    );
    out
}

/// What the daemon's startup says when it reached the helper: networking on, or (in this
/// guest, whose kernel has no bridge driver and no `/lib/modules` to load one from) the
/// helper's own refusal of `ensure_bridge`, which it sends only after the daemon's
/// `hello` matched its bridge and pool.
const REACHED_HELPER: &[&str] = &[
    "guest networking is on",
    "cannot create the bridge: banger-helper refused ensure_bridge",
];

/// The daemon's current run (its unit's invocation) talked to the helper at startup; a
/// helper that did not answer shows as `guest networking is off` with the connect error.
fn assert_daemon_uses_helper(host: &TestHost, when: &str) {
    let started = Instant::now();
    loop {
        let journal = journal_of_current_run(host, "bangerd");
        if REACHED_HELPER.iter().any(|line| journal.contains(line)) {
            return;
        }
        assert!(
            !journal.contains("guest networking is off")
                && started.elapsed() < Duration::from_secs(30),
            "{when}: the daemon did not reach the helper:\n{journal}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Both services answer in `system status --json`; the parsed status.
fn both_answer(host: &TestHost, what: &str) -> serde_json::Value {
    let status = wait_sh(
        host,
        "s=$(banger system status --json) && echo \"$s\" && \
         [ \"$(echo \"$s\" | grep -c '\"answers\": true')\" = 2 ]",
        what,
        Duration::from_secs(30),
    );
    serde_json::from_str(&status).unwrap()
}

/// `system restart`: both units get new main pids, both answer, the new daemon found the
/// helper, and the restarted helper did not fail its first bind (it used to: the socket
/// its predecessor left is the owner's, mode 0600, and root without CAP_DAC_OVERRIDE
/// cannot connect to it to see whether it is live).
fn restart_changes_both_pids(host: &TestHost, helper_pid: &str, daemon_pid: &str) {
    let started = Instant::now();
    let (code, out, err) = sh(host, "banger system restart 2>&1");
    let took = started.elapsed();
    if code != 0 {
        let (_, journal, _) = sh(
            host,
            "journalctl --no-pager -n 60 -u banger-helper.service -u bangerd.service",
        );
        panic!("system restart exited {code}: {out}{err}\njournal:\n{journal}");
    }
    note(&format!("system restart took {:.1}s", took.as_secs_f64()));
    let new_helper = main_pid(host, "banger-helper");
    let new_daemon = main_pid(host, "bangerd");
    assert_ne!(new_helper, helper_pid, "the helper was not restarted");
    assert_ne!(new_daemon, daemon_pid, "the daemon was not restarted");
    both_answer(host, "both services answer after `system restart`");
    let (code, out, err) = as_owner(host, "ping");
    assert_eq!(code, 0, "ping as the owner after restart: {out} {err}");
    let helper_journal = journal_of_current_run(host, "banger-helper");
    assert!(
        !helper_journal.contains("cannot listen"),
        "the restarted helper failed to bind:\n{helper_journal}"
    );
    let restarts = sh_ok(
        host,
        "systemctl show -p NRestarts --value banger-helper.service",
    );
    assert_eq!(
        restarts.trim(),
        "0",
        "the helper crash-looped before answering"
    );
    assert_daemon_uses_helper(host, "after system restart");
}

/// `kill -9` of the helper: systemd starts a new one (Restart=always), which replaces
/// its predecessor's socket (the owner's again, 0600), answers, and serves a daemon that
/// starts against it.
fn killed_helper_is_restarted_by_systemd(host: &TestHost, socket: &str, uid: &str) {
    let killed = main_pid(host, "banger-helper");
    sh_ok(host, &format!("kill -9 {killed}"));
    let started = Instant::now();
    let pid = wait_sh(
        host,
        &format!(
            "p=$(systemctl show -p MainPID --value banger-helper.service) && \
             [ \"$p\" != 0 ] && [ \"$p\" != {killed} ] && \
             systemctl is-active -q banger-helper.service && echo $p"
        ),
        "systemd restarts the killed helper",
        Duration::from_secs(30),
    );
    note(&format!(
        "helper pid {killed} killed; pid {} active after {:.1}s",
        pid.trim(),
        started.elapsed().as_secs_f64()
    ));
    both_answer(host, "the restarted helper answers");
    assert_eq!(
        sh_ok(host, &format!("stat -c '%u %a %F' {socket}")).trim(),
        format!("{uid} 600 socket"),
        "the restarted helper's socket"
    );
    let hello = helper_request(host, OWNER, socket, r#"{"op":"hello"}"#);
    assert!(hello.contains("\"version\""), "the owner's hello: {hello}");
    // the daemon keeps running through the helper's crash, and one started now finds
    // the new helper
    let (code, out, err) = as_owner(host, "ping");
    assert_eq!(
        code, 0,
        "ping as the owner after the helper crash: {out} {err}"
    );
    sh_ok(host, "systemctl restart bangerd.service");
    assert_daemon_uses_helper(host, "a daemon started after the helper crash");
}

/// `system uninstall`: no unit, banger process, bridge, netfilter state of banger,
/// resolver routing or binary is left.
fn uninstall_leaves_nothing(host: &TestHost, bridge: &str) {
    let started = Instant::now();
    let out = sh_ok(host, "banger system uninstall 2>&1");
    note(&format!(
        "system uninstall took {:.1}s:\n{out}",
        started.elapsed().as_secs_f64()
    ));
    assert!(
        out.contains("removed /etc/systemd/system/banger-helper.service")
            && out.contains("removed /etc/systemd/system/bangerd.service"),
        "{out}"
    );
    // the guest's iptables-nft cannot initialise (no nf_tables in its kernel): cleanup
    // names it as holding nothing instead of failing on it
    assert!(
        out.contains("network: iptables nat POSTROUTING cannot work on this host"),
        "{out}"
    );
    let units = sh_ok(
        host,
        "ls /etc/systemd/system /etc/systemd/system/*.wants | grep -e banger-helper -e bangerd || true",
    );
    assert_eq!(units.trim(), "", "unit files left");
    let loaded = sh_ok(
        host,
        "systemctl list-units --all --no-legend --plain banger-helper.service bangerd.service",
    );
    assert_eq!(loaded.trim(), "", "units still loaded");
    // by executable: a banger service binary (installed, or the copy in DIR)
    let processes = wait_sh(
        host,
        "left=$(for p in /proc/[0-9]*; do e=$(readlink $p/exe 2>/dev/null) || continue; \
           case \"$e\" in */banger-helper*|*/bangerd*|*/bin/banger|*/bin/banger\\ *) \
             echo \"${p#/proc/}: $e\";; esac; \
         done); [ -z \"$left\" ] || { echo \"$left\"; exit 1; }",
        "no banger service process left",
        Duration::from_secs(10),
    );
    assert_eq!(processes.trim(), "");
    let (code, out, err) = sh(host, &format!("ip link show {bridge}"));
    assert_ne!(code, 0, "the bridge is left: {out}{err}");
    let links = sh_ok(host, "ip -o link show");
    assert!(!links.contains("bgt-"), "taps left: {links}");
    // netfilter: whatever of it can run in this guest holds nothing of banger's
    let netfilter = sh_ok(
        host,
        "if command -v nft >/dev/null; then nft list ruleset 2>&1; fi; \
         for t in nat filter; do iptables -w -t $t -S 2>&1; done; true",
    );
    note(&format!("netfilter after uninstall:\n{netfilter}"));
    assert!(
        !netfilter.contains("banger"),
        "netfilter state left:\n{netfilter}"
    );
    // `.vm` routing is per-link resolved state (gone with the bridge); no resolver file
    let resolver = sh_ok(
        host,
        "grep -rls banger /etc/systemd/resolved.conf.d /etc/resolv.conf /etc/dnsmasq.d \
           /etc/NetworkManager/dnsmasq.d 2>/dev/null || true",
    );
    assert_eq!(resolver.trim(), "", "resolver configuration left");
    let files = sh_ok(
        host,
        "for f in /usr/local/bin/banger /usr/local/bin/bangerd /usr/local/lib/banger \
           /etc/banger /run/banger /run/banger-$(id -u dev) /var/log/banger; do [ -e $f ] && echo $f; done; true",
    );
    assert_eq!(files.trim(), "", "installed files left");
    let (code, out, err) = sh(host, &format!("{DIR}/banger system status"));
    assert!(
        code != 0 && (out + &err).contains("not installed"),
        "system status after uninstall: {code}"
    );
}
