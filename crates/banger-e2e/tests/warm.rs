//! Warm starts on real tiny guests: a running VM is snapshotted (and keeps running), two
//! forks of the snapshot run at once and are different machines (hostname, address, MAC,
//! machine-id, ssh host key, `/dev/urandom`), reachable on their new addresses, with the
//! clock set from the host; each fork's disk passes `e2fsck` holding only its own
//! writes; the snapshot's files are owner-only and unchanged by the forks; delete is
//! refused while forks run and removes every file after.
//!
//! The daemon and the root helper run in a network namespace made for the test (forks
//! need real taps and leases to show distinct addresses and MACs). Needs root, plus what
//! every VM test needs; otherwise the skip is recorded (`banger_requires`), and fails under `CI=true`.

// Test code: skips and measurements go to stderr, and the lab's tools run directly.
#![allow(clippy::print_stderr, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use banger_e2e::{NetLab, TestHost, exit_code, require_vm, text};

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What makes one machine itself, as read inside the guest.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    hostname: String,
    mac: String,
    address: String,
    machine_id: String,
    host_key: String,
    urandom: String,
}

const HOST_KEY: &str = "/etc/dropbear/dropbear_ed25519_host_key";

fn identity(host: &TestHost, vm: &str) -> Identity {
    let sh = |script: &str| host.exec_ok(vm, &["sh", "-c", script]).trim().to_string();
    Identity {
        hostname: sh("hostname"),
        mac: sh("cat /sys/class/net/eth0/address"),
        address: sh("ip -4 addr show dev eth0 | sed -n 's/.*inet \\([0-9./]*\\).*/\\1/p'"),
        // The tiny image has none of its own (the fork test writes one into its source).
        machine_id: sh("cat /etc/machine-id 2>/dev/null || true"),
        host_key: sh(&format!("dropbearkey -y -f {HOST_KEY} | grep ^ssh-")),
        urandom: sh("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"),
    }
}

#[test]
fn forks_of_one_snapshot_are_distinct_machines_on_private_disks() -> Result<()> {
    require_vm!(Root);
    // The shared cache is filled from the host's namespace (the lab has no uplink).
    {
        let outside = TestHost::start()?;
        let image = outside.banger_json(&["image", "pull", "tiny"]);
        let kernel = image["kernel"].as_str().unwrap_or_default().to_string();
        outside.banger_ok(&["kernel", "pull", &kernel]);
    }
    let mut lab = NetLab::new()?;
    let mut host = TestHost::prepare(lab.host_options())?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    let started = Instant::now();

    host.create_vm("src", &["--image", "tiny"]);
    // Make the source something the forks must not inherit: a machine-id, a host key,
    // and a clock one hour behind (a restored clock is frozen at the snapshot).
    host.exec_ok(
        "src",
        &[
            "sh",
            "-c",
            &format!(
                "echo 0123456789abcdef0123456789abcdef > /etc/machine-id; \
                 [ -s {HOST_KEY} ] || dropbearkey -t ed25519 -f {HOST_KEY} >/dev/null 2>&1; \
                 echo src > /root/src.txt; sync; date -s @{} >/dev/null",
                host_now() - 3600
            ),
        ],
    );
    let source = identity(&host, "src");
    let src_address = host.vm_show("src")["address"].as_str().unwrap().to_string();
    host.banger_ok(&["vm", "ports", "src"]);
    assert!(
        lab.ssh_banner(&src_address),
        "the source's sshd answers on {src_address}"
    );

    let snap = host.banger_json(&["vm", "snapshot", "src", "--name", "base"]);
    assert_eq!(snap["state"], "ready", "{snap}");
    let dir = PathBuf::from(snap["dir"].as_str().unwrap());
    assert!(dir.starts_with(host.state_dir()), "{}", dir.display());
    assert_eq!(mode(&dir), 0o700);
    let files = ["state", "mem", "disk.ext4"];
    for file in files {
        assert_eq!(
            mode(&dir.join(file)),
            0o400,
            "{file} is owner-only, read-only"
        );
    }
    let before: Vec<String> = files.iter().map(|f| sha256(&dir.join(f))).collect();
    // The source keeps running.
    assert_eq!(host.exec_ok("src", &["cat", "/root/src.txt"]), "src\n");

    let fork_started = Instant::now();
    let forks = host.banger_json(&["vm", "fork", "base", "--name", "c", "-n", "2"]);
    banger_e2e::report_timing("vm fork -n 2 (tiny)", fork_started.elapsed());
    let names: Vec<&str> = forks
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c-1", "c-2"]);

    let refused = host.banger(&["vm", "snapshot", "delete", "base"]);
    assert_ne!(exit_code(&refused), Some(0));
    assert!(
        text(&refused.stderr).contains("c-1"),
        "delete names the running forks: {}",
        text(&refused.stderr)
    );

    let mut seen = vec![source];
    for name in ["c-1", "c-2"] {
        let show = host.vm_show(name);
        assert_eq!(show["state"], "running");
        assert_eq!(show["forked_from"]["snapshot"], "base");
        assert_eq!(show["forked_from"]["shares_boot_id"], true);
        // `vm ports` waits for the host key read, so the fork's new key exists.
        host.banger_ok(&["vm", "ports", name]);
        let id = identity(&host, name);
        assert_eq!(id.hostname, name);
        let address = show["address"].as_str().unwrap();
        assert_eq!(id.address.split('/').next(), Some(address), "{id:?}");
        if !lab.ssh_banner(address) {
            let inside = host.exec(
                name,
                &["sh", "-c", "ip addr; ip route; ip neigh; cat /proc/net/arp"],
            );
            let log = host.daemon_log();
            let notes: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("identity") || l.contains("new identity"))
                .collect();
            panic!(
                "{name} 's sshd does not answer on {address}:\n{}\n{}",
                text(&inside.stdout),
                notes.join("\n")
            );
        }
        let guest_time: i64 = host.exec_ok(name, &["date", "+%s"]).trim().parse()?;
        assert!(
            (guest_time - host_now()).abs() <= 10,
            "{name}'s clock is the host's: {guest_time} vs {}",
            host_now()
        );
        assert_eq!(id.machine_id.len(), 32, "{id:?}");
        assert!(id.host_key.starts_with("ssh-ed25519 "), "{id:?}");
        for other in &seen {
            assert_ne!(id.hostname, other.hostname);
            assert_ne!(id.mac, other.mac, "MAC of {name}");
            assert_ne!(id.address, other.address, "address of {name}");
            assert_ne!(id.machine_id, other.machine_id, "machine-id of {name}");
            assert_ne!(id.host_key, other.host_key, "host key of {name}");
            assert_ne!(id.urandom, other.urandom, "/dev/urandom of {name}");
        }
        host.exec_ok(
            name,
            &[
                "sh",
                "-c",
                &format!("head -c 4000000 /dev/urandom > /root/{name}.bin; echo {name} > /root/{name}.txt; sync"),
            ],
        );
        seen.push(id);
    }

    let mut disks = Vec::new();
    for name in ["c-1", "c-2"] {
        let show = host.vm_show(name);
        host.banger_ok(&["vm", "stop", name, "--timeout", "5"]);
        disks.push((
            name,
            PathBuf::from(show["dir"].as_str().unwrap()).join("root.ext4"),
        ));
    }
    for (name, disk) in &disks {
        run(Command::new("e2fsck").args(["-fn"]).arg(disk))
            .with_context(|| format!("e2fsck of {name}'s disk"))?;
        let listing = run(Command::new("debugfs")
            .args(["-R", "ls -p /root"])
            .arg(disk))?;
        let other = if *name == "c-1" { "c-2" } else { "c-1" };
        assert!(listing.contains(&format!("/{name}.txt/")), "{listing}");
        assert!(listing.contains("/src.txt/"), "{listing}");
        assert!(
            !listing.contains(other),
            "{name}'s disk holds {other}'s files: {listing}"
        );
    }
    let after: Vec<String> = files.iter().map(|f| sha256(&dir.join(f))).collect();
    assert_eq!(before, after, "the snapshot's files are unchanged");

    // Stopped forks do not hold the snapshot.
    host.banger_ok(&["vm", "snapshot", "delete", "base"]);
    assert!(!dir.exists(), "the snapshot's files are gone");
    assert_eq!(
        host.banger_json(&["vm", "snapshot", "list"]),
        serde_json::json!([])
    );
    for name in ["c-1", "c-2", "src"] {
        host.banger_ok(&["vm", "delete", "--force", name]);
    }
    banger_e2e::report_timing("warm e2e (tiny)", started.elapsed());
    drop(host);
    drop(lab);
    Ok(())
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// Runs `call` through the API and SIGKILLs the daemon when stage `stage` starts;
/// returns whether it did.
fn kill_at_stage<M: banger_api::Method>(host: &TestHost, params: &M::Params, stage: &str) -> bool
where
    M::Params: Sync,
{
    let daemon = host.daemon_pid().unwrap();
    let mut fired = false;
    let _ = host.block_on(async {
        let mut client = host.client().await.unwrap();
        client
            .call::<M>(params, |event| {
                if !fired
                    && matches!(&event, banger_api::Event::Stage { stage: s, state: banger_api::StageState::Started, .. } if s == stage)
                {
                    fired = true;
                    sigkill(daemon);
                }
            })
            .await
    });
    fired
}

/// The daemon SIGKILLed mid-snapshot (while the source is paused, and while the memory
/// is converted) and mid-fork (while the fork is restored): after a restart no snapshot,
/// file, fork or VMM is left half-made, and the source VM runs and answers.
#[test]
fn daemon_killed_mid_snapshot_or_mid_fork_leaves_nothing_half_made() {
    require_vm!();
    let mut host = TestHost::start().unwrap();
    host.create_vm("src", &["--image", "tiny"]);
    let snapshots = host.state_dir().join("snapshots");
    for stage in ["pause and save", "save memory"] {
        let params = banger_api::methods::VmSnapshotParams {
            vm: "src".into(),
            name: Some("cut".into()),
        };
        assert!(
            kill_at_stage::<banger_api::methods::VmSnapshot>(&host, &params, stage),
            "stage {stage} never started"
        );
        host.kill_daemon(9).unwrap();
        host.start_daemon().unwrap();
        assert_eq!(
            host.banger_json(&["vm", "snapshot", "list"]),
            serde_json::json!([]),
            "killed at {stage}"
        );
        let left: Vec<_> = std::fs::read_dir(&snapshots)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "killed at {stage}: {left:?} left");
        let src = host.vm_show("src");
        assert_eq!(src["state"], "running", "killed at {stage}: {src}");
        let pid = src["pid"].as_u64().unwrap() as u32;
        assert_eq!(
            host.vmm_pids(),
            vec![pid],
            "killed at {stage}: only the source's VMM runs"
        );
        let hostname = banger_e2e::wait_until(
            "the source answers after the restart",
            Duration::from_secs(60),
            || {
                let out = host.exec("src", &["hostname"]);
                if out.status.success() {
                    Ok(text(&out.stdout))
                } else {
                    Err(text(&out.stderr))
                }
            },
        );
        assert_eq!(hostname.trim(), "src", "killed at {stage}");
    }

    host.banger_ok(&["vm", "snapshot", "src", "--name", "base"]);
    let params = banger_api::methods::VmForkParams {
        source: "base".into(),
        name: Some("k".into()),
        count: Some(1),
    };
    assert!(kill_at_stage::<banger_api::methods::VmFork>(
        &host, &params, "restore"
    ));
    host.kill_daemon(9).unwrap();
    host.start_daemon().unwrap();
    assert_eq!(
        host.vm_names(),
        vec!["src".to_string()],
        "the cut fork is gone"
    );
    let src_pid = host.vm_show("src")["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        host.vmm_pids(),
        vec![src_pid],
        "no VMM of the cut fork is left"
    );
    let src_id = host.vm_show("src")["id"].as_str().unwrap().to_string();
    for dir in host.vm_dirs() {
        assert!(
            dir.ends_with(&src_id),
            "only the source's directories are left: {}",
            dir.display()
        );
    }
    let list = host.banger_json(&["vm", "snapshot", "list"]);
    assert_eq!(list[0]["name"], "base");
    assert_eq!(list[0]["state"], "ready");
    // The snapshot still forks.
    let forks = host.banger_json(&["vm", "fork", "base", "--name", "k"]);
    assert_eq!(forks[0]["state"], "running");
    assert_eq!(host.exec_ok("k", &["hostname"]).trim(), "k");
    for vm in ["k", "src"] {
        host.banger_ok(&["vm", "delete", "--force", vm]);
    }
    host.banger_ok(&["vm", "snapshot", "delete", "base"]);
    host.assert_no_vm_left("after the crash test");
}

/// The ready warm templates, as `vm snapshot list` shows them.
fn templates(host: &TestHost) -> Vec<serde_json::Value> {
    host.banger_json(&["vm", "snapshot", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["template_key"].is_string() && s["state"] == "ready")
        .collect()
}

/// Waits (bounded) until a ready template of tiny with `memory_mib` exists, and returns it.
fn wait_for_template(host: &TestHost, memory_mib: u64) -> serde_json::Value {
    wait_for_image_template(host, "tiny", Some(memory_mib), Duration::from_secs(240))
}

/// Waits (bounded) until a ready template of `image` (with `memory_mib`, when given)
/// exists, and returns it.
fn wait_for_image_template(
    host: &TestHost,
    image: &str,
    memory_mib: Option<u64>,
    bound: Duration,
) -> serde_json::Value {
    banger_e2e::wait_until(&format!("a warm template of {image}"), bound, || {
        templates(host)
            .into_iter()
            .find(|t| {
                t["image"] == image && memory_mib.is_none_or(|m| t["memory_bytes"] == m << 20)
            })
            .ok_or_else(|| "none yet".to_string())
    })
}

/// The stage line of `vm run`/`vm create` that says how the guest started.
fn start_stage(stderr: &[u8]) -> String {
    text(stderr)
        .lines()
        .find(|line| line.contains("warm start ... done"))
        .unwrap_or_default()
        .to_string()
}

/// `image` and its kernel pulled into the shared cache from the host's namespace, then
/// a lab (helper in a network namespace) and a daemon in it with warm templates on.
fn templates_lab(image: &str) -> Result<(NetLab, TestHost)> {
    {
        let outside = TestHost::start()?;
        let pulled = outside.banger_json(&["image", "pull", image]);
        let kernel = pulled["kernel"].as_str().unwrap_or_default().to_string();
        outside.banger_ok(&["kernel", "pull", &kernel]);
    }
    let mut lab = NetLab::new()?;
    let mut options = lab.host_options();
    options
        .env
        .push(("BANGER_WARM_TEMPLATES".into(), "1".into()));
    let mut host = TestHost::prepare(options)?;
    lab.start_helper(&host)?;
    host.start_daemon()?;
    Ok((lab, host))
}

/// Warm templates on tiny: after the first cold `vm run`, a template appears in the
/// background (owner-only files under the state dir, the builder VM never listed); the
/// next runs restore from it (the stage says so) and are distinct machines; `--cold`
/// boots; other memory gets a template of its own; `image warm --off` deletes them.
#[test]
fn vm_run_restores_from_a_warm_template_made_after_the_first_cold_boot() -> Result<()> {
    require_vm!(Root);
    let (lab, host) = templates_lab("tiny")?;
    host.banger_ok(&["image", "warm", "tiny"]);

    let started = Instant::now();
    let cold = host.banger(&["vm", "run", "--rm", "--image", "tiny", "--", "true"]);
    host.expect_success(&["vm", "run"], &cold);
    banger_e2e::report_timing("vm run --rm -- true, first (cold)", started.elapsed());
    let stage = start_stage(&cold.stderr);
    assert!(stage.contains("cold"), "first run is cold: {stage:?}");

    let template = wait_for_template(&host, 512);
    assert!(
        host.vm_list().is_empty(),
        "the builder is never listed, and gone"
    );
    let dir = PathBuf::from(template["dir"].as_str().unwrap());
    assert!(dir.starts_with(host.state_dir()), "{}", dir.display());
    assert_eq!(mode(&dir), 0o700);
    for file in ["state", "mem", "disk.ext4"] {
        assert_eq!(mode(&dir.join(file)), 0o400, "{file}");
    }
    // The builder's host key was never read: the template holds none.
    let keys = run(Command::new("debugfs")
        .args(["-R", "ls -p /etc/dropbear"])
        .arg(dir.join("disk.ext4")))?;
    assert!(!keys.contains("_host_key"), "{keys}");

    // One copy of its disk is kept ready beside it, so a restore need not copy it.
    let spare = dir.join("spare.ext4");
    banger_e2e::wait_until("the template's spare disk", Duration::from_secs(60), || {
        spare.exists().then_some(()).ok_or("not yet".to_string())
    });
    assert_eq!(mode(&spare), 0o600);

    let mut hostnames = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        let warm = host.banger(&[
            "vm",
            "run",
            "--rm",
            "--image",
            "tiny",
            "--",
            "cat",
            "/etc/hostname",
        ]);
        host.expect_success(&["vm", "run"], &warm);
        banger_e2e::report_timing("vm run --rm -- cat /etc/hostname (warm)", started.elapsed());
        let stage = start_stage(&warm.stderr);
        assert!(
            stage.contains("from template") && stage.contains(template["name"].as_str().unwrap()),
            "restored from the template: {stage:?}\n{}",
            text(&warm.stderr)
        );
        if round == 0 {
            assert!(
                text(&warm.stderr).contains("spare copy"),
                "the first warm run took the spare: {}",
                text(&warm.stderr)
            );
        }
        hostnames.push(text(&warm.stdout).trim().to_string());
    }
    assert_ne!(hostnames[0], hostnames[1], "{hostnames:?}");

    // Two at once from one template are distinct machines.
    host.create_vm("wa", &["--image", "tiny"]);
    host.create_vm("wb", &["--image", "tiny"]);
    let mut seen: Vec<Identity> = Vec::new();
    for name in ["wa", "wb"] {
        let show = host.vm_show(name);
        assert_eq!(show["started_from"], "template", "{show}");
        host.banger_ok(&["vm", "ports", name]);
        // dropbear makes its host key on the first connection: connect before reading it.
        assert!(lab.ssh_banner(show["address"].as_str().unwrap()), "{name}");
        let id = identity(&host, name);
        assert_eq!(id.hostname, name);
        assert_eq!(
            id.address.split('/').next(),
            show["address"].as_str(),
            "{id:?}"
        );
        for other in &seen {
            assert_ne!(id.mac, other.mac);
            assert_ne!(id.address, other.address);
            assert_ne!(id.host_key, other.host_key);
            assert_ne!(id.urandom, other.urandom);
        }
        let guest_time: i64 = host.exec_ok(name, &["date", "+%s"]).trim().parse()?;
        assert!((guest_time - host_now()).abs() <= 10, "{name}'s clock");
        seen.push(id);
    }
    // A template in use by running VMs is kept.
    let busy = host.banger(&[
        "vm",
        "snapshot",
        "delete",
        template["name"].as_str().unwrap(),
    ]);
    assert_ne!(exit_code(&busy), Some(0));

    // --cold boots.
    let forced = host.banger(&[
        "vm", "run", "--rm", "--cold", "--image", "tiny", "--", "true",
    ]);
    host.expect_success(&["vm", "run", "--cold"], &forced);
    assert!(start_stage(&forced.stderr).contains("cold: --cold"));
    host.create_vm("wc", &["--image", "tiny", "--cold"]);
    assert_eq!(host.vm_show("wc")["started_from"], "cold");

    // Other memory: no match, a cold boot, then a template of its own.
    let other = host.banger(&[
        "vm", "run", "--rm", "--image", "tiny", "--memory", "384MiB", "--", "true",
    ]);
    host.expect_success(&["vm", "run", "--memory"], &other);
    assert!(
        start_stage(&other.stderr).contains("cold"),
        "{}",
        text(&other.stderr)
    );
    let bigger = wait_for_template(&host, 384);
    assert_ne!(bigger["template_key"], template["template_key"]);
    let again = host.banger(&[
        "vm", "run", "--rm", "--image", "tiny", "--memory", "384MiB", "--", "true",
    ]);
    host.expect_success(&["vm", "run", "--memory"], &again);
    assert!(start_stage(&again.stderr).contains("from template"));

    // The image cache prune keeps current templates; `--off` deletes them.
    host.banger_ok(&["image", "cache", "prune"]);
    assert_eq!(templates(&host).len(), 2);
    for name in ["wa", "wb", "wc"] {
        host.banger_ok(&["vm", "delete", "--force", name]);
    }
    host.banger_ok(&["image", "warm", "tiny", "--off"]);
    assert!(templates(&host).is_empty());
    assert!(!dir.exists(), "the template's files are gone");

    // A VM with a workspace disk boots cold, and its snapshot is refused, clearly.
    let repo = tempfile::tempdir()?;
    banger_e2e::git(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join("a.txt"), "a\n")?;
    banger_e2e::git(repo.path(), &["add", "."]);
    banger_e2e::git(repo.path(), &["commit", "-qm", "a"]);
    // `vm create` takes no PATH: `vm run -d PATH` makes a VM with a workspace disk.
    let ws = host.banger(&[
        "vm",
        "run",
        "-d",
        "--image",
        "tiny",
        "--name",
        "ws",
        repo.path().to_str().unwrap(),
    ]);
    host.expect_success(&["vm", "run", "-d", "PATH"], &ws);
    assert!(
        start_stage(&ws.stderr).contains("workspace"),
        "{}",
        text(&ws.stderr)
    );
    let refused = host.banger(&["vm", "snapshot", "ws"]);
    assert_ne!(exit_code(&refused), Some(0));
    assert!(
        text(&refused.stderr).contains("workspace disk"),
        "{}",
        text(&refused.stderr)
    );
    host.banger_ok(&["vm", "delete", "--force", "ws"]);
    drop(host);
    drop(lab);
    Ok(())
}

/// The lines `debugfs -R "ls -p DIR"` lists, by name (its `/name/` field).
fn disk_names(disk: &Path, dir: &str) -> Result<Vec<String>> {
    let listing = run(Command::new("debugfs")
        .args(["-R", &format!("ls -p {dir}")])
        .arg(disk))?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split('/').nth(5))
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
        .map(str::to_string)
        .collect())
}

/// Warm templates of a systemd guest (`debian-bookworm`) hold none of their builder's
/// identity: on the template's disk no ssh host key and an empty `/etc/machine-id`, and
/// in its memory no OpenSSH private key file's text and no running sshd (the scrub
/// stopped it). Each clone then has its own: a 32-hex machine-id, sshd running with the
/// key the host made for it, which is the one `vm ssh` (strict host key checking against
/// banger's known_hosts) accepts.
#[test]
fn debian_templates_hold_no_builder_identity_and_clones_serve_their_own() -> Result<()> {
    require_vm!(Root);
    let (lab, host) = templates_lab("debian-bookworm")?;
    let cold = host.banger(&[
        "vm",
        "run",
        "--rm",
        "--image",
        "debian-bookworm",
        "--",
        "true",
    ]);
    host.expect_success(&["vm", "run"], &cold);
    let template =
        wait_for_image_template(&host, "debian-bookworm", None, Duration::from_secs(400));
    let dir = PathBuf::from(template["dir"].as_str().unwrap());
    let disk = dir.join("disk.ext4");
    let ssh_files = disk_names(&disk, "/etc/ssh")?;
    assert!(
        ssh_files.iter().any(|f| f == "sshd_config"),
        "the listing is read: {ssh_files:?}"
    );
    assert!(
        !ssh_files.iter().any(|f| f.starts_with("ssh_host_")),
        "the template's disk holds no host key: {ssh_files:?}"
    );
    let machine_id = run(Command::new("debugfs")
        .args(["-R", "cat /etc/machine-id"])
        .arg(&disk))?;
    assert_eq!(machine_id.trim(), "", "the template's machine-id is empty");
    let memory = std::fs::read(dir.join("mem"))?;
    let pem = b"-----BEGIN OPENSSH PRIVATE KEY-----";
    assert!(
        !memory.windows(pem.len()).any(|w| w == pem),
        "the template's memory holds an OpenSSH private key file's text"
    );
    drop(memory);

    let mut ids = Vec::new();
    for name in ["da", "db"] {
        let started = Instant::now();
        host.create_vm(name, &["--image", "debian-bookworm"]);
        banger_e2e::report_timing(
            &format!("vm create {name} (warm debian)"),
            started.elapsed(),
        );
        assert_eq!(host.vm_show(name)["started_from"], "template");
        let over_ssh = host.banger_ok(&["vm", "ssh", name, "--", "cat", "/etc/machine-id"]);
        let id = over_ssh.trim().to_string();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}'s machine-id: {id:?}"
        );
        assert_eq!(host.exec_ok(name, &["cat", "/etc/machine-id"]).trim(), id);
        let active = host.exec_ok(name, &["systemctl", "is-active", "ssh.service"]);
        assert_eq!(active.trim(), "active");
        let key = host.exec_ok(name, &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]);
        ids.push((
            id,
            key.split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        ));
    }
    assert_ne!(ids[0].0, ids[1].0, "machine-ids: {ids:?}");
    assert_ne!(ids[0].1, ids[1].1, "host keys: {ids:?}");
    for name in ["da", "db"] {
        host.banger_ok(&["vm", "delete", "--force", name]);
    }
    // The default image always has templates; this one goes with the test's state.
    host.banger_ok(&[
        "vm",
        "snapshot",
        "delete",
        template["name"].as_str().unwrap(),
    ]);
    drop(host);
    drop(lab);
    Ok(())
}
