//! The real-guest half of the reliability suite (`cargo xtask reliability` reads the
//! figures each test writes to `target/reliability/guests/`):
//! - N `vm run --rm` at once, each with its own output and exit code;
//! - `vm delete --force` racing `vm start` of the same VM;
//! - the state directory (a small tmpfs) filling up in the middle of a create;
//! - the real daemon killed (SIGKILL, by itself at the named point: `BANGER_CRASH_AT`)
//!   at every point of a delete and of a stop, with the root helper and guest networking
//!   on, then restarted and its reconcile's leftovers counted.
//!
//! Every case counts what it leaves behind: VMM processes no running VM owns, taps and
//! per-guest nft rules no running VM owns (and any interface or rule beyond those there
//! before), VM directories no row owns, rows in a transient state. The target is 0.

// Test code: observations go to stderr.
#![allow(clippy::print_stderr)]

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use banger_api::methods::{VmCreate, VmCreateParams};
use banger_api::{Event, StageState};
use banger_e2e::{
    Figures, HostOptions, NetLab, NetState, TestHost, Tmpfs, exit_code, note, require_vm, tail,
    text, wait_until,
};
use serde_json::{Value, json};

/// How many `vm run` at once: four tiny guests fit two cores within the vm profile's
/// timeouts (the daemon's ready timeout is 300 s; these take seconds each).
const PARALLEL_RUNS: usize = 4;

/// Rounds of delete racing start.
const RACE_ROUNDS: usize = 4;

/// Tiny image and its kernel in the shared cache, pulled outside any lab (the lab's
/// namespace has no route out).
fn warm_cache() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let host = TestHost::start().expect("a daemon outside the lab");
        let image = host.banger_json(&["image", "pull", "tiny"]);
        let kernel = image["kernel"]
            .as_str()
            .expect("the image names its kernel");
        host.banger_ok(&["kernel", "pull", kernel]);
    });
}

/// What root and the lab's tools a networked test needs.
macro_rules! require_net {
    () => {
        require_vm!(Root, Tool("ip"), Tool("nft"))
    };
}

/// Leftovers of one case, by kind.
#[derive(Debug, Default, Clone)]
struct Orphans {
    processes: Vec<u32>,
    taps: Vec<String>,
    rules: Vec<String>,
    links: Vec<String>,
    files: Vec<String>,
    rows: Vec<String>,
}

impl Orphans {
    fn total(&self) -> usize {
        self.processes.len()
            + self.taps.len()
            + self.rules.len()
            + self.links.len()
            + self.files.len()
            + self.rows.len()
    }

    fn json(&self) -> Value {
        json!({
            "processes": self.processes.len(),
            "taps": self.taps.len(),
            "rules": self.rules.len(),
            "links": self.links.len(),
            "files": self.files.len(),
            "rows": self.rows.len(),
        })
    }
}

/// The bridge the helper makes for the daemon (banger's default).
const BRIDGE: &str = "banger0";

const TRANSIENT: &[&str] = &["creating", "starting", "stopping", "deleting"];

/// Counts what nothing owns: a running VM owns its VMM, its tap (`bgt-` + its id's first
/// 8 characters) and the rules for its address; a row owns its directories. `base` is
/// the lab before the case (the bridge, base rules); `lab` is `None` without networking.
fn orphans(host: &TestHost, lab: Option<(&NetLab, &NetState)>) -> Orphans {
    let vms = host.vm_list();
    let running: Vec<&Value> = vms.iter().filter(|vm| vm["state"] == "running").collect();
    let ids: Vec<String> = vms
        .iter()
        .filter_map(|vm| vm["id"].as_str().map(str::to_string))
        .collect();
    let mut found = Orphans {
        processes: host
            .vmm_pids()
            .into_iter()
            .filter(|pid| {
                !running
                    .iter()
                    .any(|vm| vm["pid"].as_u64() == Some(u64::from(*pid)))
            })
            .collect(),
        files: host
            .vm_dirs()
            .into_iter()
            .filter(|dir| {
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                !name.is_some_and(|name| ids.contains(&name))
            })
            .map(|dir| dir.display().to_string())
            .collect(),
        rows: vms
            .iter()
            .filter(|vm| TRANSIENT.iter().any(|s| vm["state"] == *s))
            .map(|vm| format!("{}={}", vm["name"], vm["state"]))
            .collect(),
        ..Orphans::default()
    };
    if let Some((lab, base)) = lab {
        let now = lab.state();
        let owned_taps: Vec<String> = running
            .iter()
            .filter_map(|vm| vm["id"].as_str())
            .map(|id| format!("bgt-{}", &id[..8.min(id.len())]))
            .collect();
        let addresses: Vec<String> = running
            .iter()
            .filter_map(|vm| vm["address"].as_str())
            .map(str::to_string)
            .collect();
        found.taps = now
            .taps
            .iter()
            .filter(|t| !owned_taps.contains(t) && !base.taps.contains(t))
            .cloned()
            .collect();
        found.rules = now
            .rule_guests
            .iter()
            .filter(|guest| {
                let address = guest.trim_start_matches("policy ").replace('_', ".");
                !addresses.contains(&address) && !base.rule_guests.contains(guest)
            })
            .cloned()
            .collect();
        // The bridge is made with the first VM and kept for the helper's life, with its
        // base rules (which name no guest): it is no VM's leftover.
        found.links = now
            .links
            .iter()
            .filter(|l| !base.links.contains(l) && !owned_taps.contains(l) && l.as_str() != BRIDGE)
            .cloned()
            .collect();
    }
    found
}

/// The VM's row, if listed.
fn row(host: &TestHost, name: &str) -> Option<Value> {
    host.vm_list().into_iter().find(|vm| vm["name"] == name)
}

/// Finishes a test: writes its figures, then fails naming every mishandled case.
fn conclude(figures: &Figures, host: &TestHost) {
    figures.write();
    let bad = figures.mishandled();
    assert!(
        bad.is_empty(),
        "mishandled: {bad:#?}\ndaemon log tail:\n{}",
        tail(&host.daemon_log(), 30)
    );
}

#[test]
fn parallel_vm_runs_each_exit_with_their_own_code_and_leave_nothing() -> Result<()> {
    require_net!();
    warm_cache();
    let (lab, host) = NetLab::with_host()?;
    let base = lab.state();
    let mut figures = Figures::new(
        "parallel_runs",
        &format!(
            "{PARALLEL_RUNS} parallel `vm run --rm` (half with --nat), each its own output and exit code"
        ),
    );
    let started = Instant::now();
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..PARALLEL_RUNS)
            .map(|i| {
                let host = &host;
                scope.spawn(move || {
                    let script = format!("echo run-{i}-$(hostname); exit {}", 10 + i);
                    let mut args = vec!["vm", "run", "--rm", "--image", "tiny"];
                    if i % 2 == 1 {
                        args.push("--nat");
                    }
                    args.extend(["--", "sh", "-c", &script]);
                    host.banger(&args)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("vm run thread"))
            .collect()
    });
    banger_e2e::report_timing(
        &format!("{PARALLEL_RUNS} parallel vm run --rm"),
        started.elapsed(),
    );
    let mut hostnames = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let stdout = text(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("run-{i}-")))
            .map(str::to_string);
        let code = exit_code(out);
        let handled = code == Some(10 + i as i32) && line.is_some();
        if let Some(name) = &line {
            hostnames.push(name.clone());
        }
        figures.case(
            &format!("run {i}{}", if i % 2 == 1 { " --nat" } else { "" }),
            &format!(
                "exit {} (want {}), printed {}{}",
                code.map_or("by a signal".to_string(), |c| c.to_string()),
                10 + i,
                line.as_deref()
                    .map_or("nothing of its own".to_string(), |h| format!(
                        "`run-{i}-{h}`"
                    )),
                if handled {
                    String::new()
                } else {
                    format!("; stderr: {}", tail(&text(&out.stderr), 3))
                }
            ),
            handled,
            json!({}),
        );
    }
    hostnames.sort();
    hostnames.dedup();
    let left = orphans(&host, Some((&lab, &base)));
    let rows = host.vm_names();
    figures.case(
        "after all runs",
        &format!(
            "{} distinct guests; rows left {}; leftovers {}",
            hostnames.len(),
            rows.len(),
            left.total()
        ),
        left.total() == 0 && rows.is_empty() && hostnames.len() == PARALLEL_RUNS,
        left.json(),
    );
    conclude(&figures, &host);
    Ok(())
}

#[test]
fn delete_racing_start_ends_consistent_and_leaves_nothing() -> Result<()> {
    require_net!();
    warm_cache();
    let (lab, host) = NetLab::with_host()?;
    let base = lab.state();
    let mut figures = Figures::new(
        "delete_races_start",
        "`vm delete --force` racing `vm start` of a stopped --nat VM",
    );
    for round in 0..RACE_ROUNDS {
        host.create_vm("race", &["--image", "tiny", "--nat"]);
        host.banger_ok(&["vm", "stop", "race"]);
        // Rounds 0 and 1 release both at once (delete spawned first, then start first);
        // round 2 deletes once the start has the VM booting; round 3 starts once the
        // delete has begun (or is done).
        let barrier = std::sync::Barrier::new(2);
        let (start, delete) = std::thread::scope(|scope| {
            let host = &host;
            let barrier = &barrier;
            let start = || {
                if round == 3 {
                    wait_until("the delete begins", Duration::from_secs(30), || {
                        match row(host, "race") {
                            Some(vm) if vm["state"] == "stopped" => Err(vm.to_string()),
                            _ => Ok(()),
                        }
                    });
                } else if round != 2 {
                    barrier.wait();
                }
                host.banger(&["vm", "start", "race"])
            };
            let delete = || {
                if round == 2 {
                    wait_until("the start begins", Duration::from_secs(30), || {
                        match row(host, "race") {
                            Some(vm) if vm["state"] == "stopped" => Err(vm.to_string()),
                            _ => Ok(()),
                        }
                    });
                } else if round != 3 {
                    barrier.wait();
                }
                host.banger(&["vm", "delete", "--force", "race"])
            };
            if round % 2 == 0 {
                let d = scope.spawn(delete);
                let s = scope.spawn(start);
                (s.join().unwrap(), d.join().unwrap())
            } else {
                let s = scope.spawn(start);
                let d = scope.spawn(delete);
                (s.join().unwrap(), d.join().unwrap())
            }
        });
        let start_err = text(&start.stderr);
        let delete_err = text(&delete.stderr);
        let gone = row(&host, "race").is_none();
        // Consistent: the delete succeeded and the VM is gone; the start either ran
        // first (then the delete took the running VM) or failed saying the VM is gone
        // or being deleted.
        let start_clear = start.status.success()
            || ["was deleted", "no VM is named", "being deleted"]
                .iter()
                .any(|s| start_err.contains(s));
        let outcome = format!(
            "start {}; delete {}; VM {}",
            if start.status.success() {
                "ok".to_string()
            } else {
                format!("refused: {}", start_err.trim().lines().next().unwrap_or(""))
            },
            if delete.status.success() {
                "ok".to_string()
            } else {
                format!("failed: {}", delete_err.trim())
            },
            if gone { "gone" } else { "still listed" }
        );
        note(&format!("OUTCOME race round {round}: {outcome}"));
        if !gone {
            host.banger_ok(&["vm", "delete", "--force", "race"]);
        }
        let left = orphans(&host, Some((&lab, &base)));
        figures.case(
            &format!(
                "round {round} ({})",
                match round {
                    0 => "released together, delete spawned first",
                    1 => "released together, start spawned first",
                    2 => "delete once the start is under way",
                    _ => "start once the delete is under way",
                }
            ),
            &outcome,
            gone && delete.status.success() && start_clear && left.total() == 0,
            left.json(),
        );
    }
    conclude(&figures, &host);
    Ok(())
}

/// Room for a 1 GiB sparse root disk (the free-space check wants all of it) and the
/// database; only what is written takes memory.
const TMPFS_SIZE: &str = "1200m";

#[test]
fn a_state_dir_filling_up_mid_create_fails_clearly_and_keeps_the_database() {
    require_vm!(Root, Tool("sqlite3"));
    warm_cache();
    let mut host = TestHost::prepare(HostOptions::default()).unwrap();
    let tmpfs = Tmpfs::mount(&host.state_dir(), TMPFS_SIZE);
    host.start_daemon().unwrap();
    let mut figures = Figures::new(
        "full_mid_create",
        "state directory (a small tmpfs) filled to the last block in the middle of `vm create`",
    );
    let points = [
        ("reserve name", StageState::Done),
        ("root disk", StageState::Started),
        ("prepare guest", StageState::Started),
    ];
    let mut space_errors = 0;
    for (i, (stage, state)) in points.into_iter().enumerate() {
        // A name per point: a row one case leaves must not fail the next.
        let name = format!("filling{i}");
        let params = VmCreateParams {
            name: Some(name.clone()),
            image: Some("tiny".into()),
            disk_mib: Some(1024),
            ..VmCreateParams::default()
        };
        let mut fired = false;
        let result = host.block_on(async {
            let mut client = host.client().await.unwrap();
            client
                .call::<VmCreate>(&params, |event| {
                    if let Event::Stage {
                        stage: s,
                        state: st,
                        ..
                    } = &event
                        && !fired
                        && s == stage
                        && *st == state
                    {
                        fired = true;
                        tmpfs.fill_while_written();
                    }
                })
                .await
        });
        assert!(fired, "{stage} {state:?} never came: {result:?}");
        // While full: the daemon answers, and nothing of the failed VM is half made.
        let listed = host.vm_list();
        let outcome;
        let mut handled;
        match &result {
            Err(error) => {
                let message = error.to_string();
                let names_space = message.to_lowercase().contains("space");
                if names_space {
                    space_errors += 1;
                }
                handled = names_space && listed.is_empty();
                // The line that says why (a tool's output may come first).
                let why = message
                    .lines()
                    .find(|l| l.to_lowercase().contains("space"))
                    .or_else(|| message.lines().next())
                    .unwrap_or("");
                outcome = format!(
                    "refused: {}; rows while full {:?}",
                    why.trim(),
                    listed
                        .iter()
                        .map(|vm| format!("{}={}", vm["name"], vm["state"]))
                        .collect::<Vec<_>>()
                );
            }
            Ok(vm) => {
                // Finished anyway (what was left to write fit): it must be whole.
                tmpfs.free();
                let answers = host.exec(&name, &["echo", "ok"]);
                handled = answers.status.success() && text(&answers.stdout) == "ok\n";
                outcome = format!("created ({}) and answering: {handled}", vm.state);
            }
        }
        tmpfs.free();
        let left = orphans(&host, None);
        let rows_left = host.vm_names();
        handled &= left.total() == 0 && (result.is_ok() || rows_left.is_empty());
        // The database is intact and a create works once space is back.
        let db = host.state_dir().join("banger.db");
        let check = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("PRAGMA integrity_check;")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(std::process::Child::wait_with_output)
            .expect("sqlite3");
        let integrity = text(&check.stdout).trim().to_string();
        handled &= integrity == "ok";
        if result.is_ok() {
            host.banger_ok(&["vm", "delete", "--force", &name]);
        }
        let after = host.banger(&[
            "vm", "create", "--name", "after", "--image", "tiny", "--disk", "1G",
        ]);
        handled &= after.status.success();
        host.banger(&["vm", "delete", "--force", "after"]);
        let left_after = orphans(&host, None);
        handled &= left_after.total() == 0 && host.vm_names().is_empty();
        note(&format!(
            "OUTCOME full at {stage} {state:?}: {outcome}; integrity {integrity}; next create ok: {}",
            after.status.success()
        ));
        figures.case(
            &format!("full at `{stage}` {state:?}"),
            &format!(
                "{outcome}; integrity_check {integrity}; create after freeing: {}",
                if after.status.success() {
                    "ok"
                } else {
                    "failed"
                }
            ),
            handled,
            left.json(),
        );
    }
    figures.write();
    assert!(
        space_errors > 0,
        "no fill point made the create fail for lack of space: the test tested nothing"
    );
    conclude(&figures, &host);
    host.kill_daemon(15).unwrap();
    drop(tmpfs);
}

/// Kills the daemon at each of `points` of `op` (`delete` or `stop`) on a running --nat
/// VM, restarts it, lets it reconcile and counts what is left; then uses the survivor.
fn crash_at_points(op: &str, points: &[&str]) -> Result<()> {
    warm_cache();
    let (lab, mut host) = NetLab::with_host()?;
    let base = lab.state();
    let mut figures = Figures::new(
        &format!("crash_{op}_real"),
        &format!("real daemon killed (SIGKILL) at each {op} point, helper and --nat on"),
    );
    for point in points {
        host.create_vm("victim", &["--image", "tiny", "--nat"]);
        let held = lab.state();
        assert_eq!(held.taps.len(), base.taps.len() + 1, "the VM has its tap");
        // The daemon that will die at the point (the VM is reattached).
        host.kill_daemon(15)?;
        host.set_env("BANGER_CRASH_AT", Some(point));
        host.start_daemon()?;
        let verb: Vec<&str> = match op {
            "delete" => vec!["vm", "delete", "--force", "victim"],
            _ => vec!["vm", "stop", "victim"],
        };
        let out = host.banger(&verb);
        let status = host.wait_daemon_exit(Duration::from_secs(60));
        let killed = status.is_some_and(|s| s.signal() == Some(9));
        assert!(
            killed,
            "the daemon did not die at {point:?} ({status:?}); {} said {}\n{}",
            verb.join(" "),
            text(&out.stderr),
            tail(&host.daemon_log(), 20)
        );
        let before_restart = lab.state();
        host.set_env("BANGER_CRASH_AT", None);
        let restarted = Instant::now();
        host.start_daemon()?;
        // A stop resumed by the new daemon shows `stopping` until it is done.
        wait_until("no VM is stopping", Duration::from_secs(90), || {
            match row(&host, "victim") {
                Some(vm) if vm["state"] == "stopping" => Err(vm.to_string()),
                _ => Ok(()),
            }
        });
        let settled = restarted.elapsed();
        let left = orphans(&host, Some((&lab, &base)));
        let after = row(&host, "victim");
        let state = after.as_ref().map_or("gone".to_string(), |vm| {
            vm["state"].as_str().unwrap_or("?").to_string()
        });
        // What survived is used: a stopped VM starts and answers, then goes.
        let mut usable = true;
        let expected = if op == "delete" { "gone" } else { "stopped" };
        if after.is_some() {
            if state == "stopped" {
                host.banger_ok(&["vm", "start", "victim"]);
                usable = host.exec_ok("victim", &["echo", "up"]) == "up\n";
            }
            host.banger_ok(&["vm", "delete", "--force", "victim"]);
        }
        let after_use = orphans(&host, Some((&lab, &base)));
        let outcome = format!(
            "{state} {:.1}s after the restart (taps {} / rules {} before it); then {}",
            settled.as_secs_f64(),
            before_restart.taps.len() - base.taps.len(),
            before_restart.rule_guests.len() - base.rule_guests.len(),
            if op == "delete" {
                "nothing to use".to_string()
            } else {
                format!("restarted and answering: {usable}")
            }
        );
        note(&format!(
            "OUTCOME {op} killed at {point:?}: {outcome}; left {left:?}"
        ));
        figures.case(
            point,
            &outcome,
            state == expected && usable && left.total() == 0 && after_use.total() == 0,
            left.json(),
        );
    }
    conclude(&figures, &host);
    Ok(())
}

#[test]
fn daemon_killed_at_each_delete_point_leaves_no_tap_rule_process_file_or_row() -> Result<()> {
    require_net!();
    crash_at_points("delete", banger_vm::fault::DELETE_POINTS)
}

#[test]
fn daemon_killed_at_each_stop_point_leaves_no_tap_rule_process_file_or_row() -> Result<()> {
    require_net!();
    crash_at_points("stop", banger_vm::fault::STOP_POINTS)
}
