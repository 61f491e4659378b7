//! supervise: the services where systemd is not PID 1. `banger system supervise SERVICE`
//! (hidden, started detached by `system install`/`restart`, as root) runs one service's
//! binary from the install metadata and keeps it running: the child's pid in
//! `<run>/<name>.pid`, its own in `<run>/<name>.supervisor.pid`, the child's output
//! appended to `<log dir>/<name>.log`, a restart after every exit (backoff from 0.5 s to
//! 10 s, reset after 30 s of uptime). SIGTERM/SIGINT stop it: the child gets SIGTERM
//! (SIGKILL 10 s later), the pid files go. bangerd runs as the owner (uid, gid, the
//! recorded supplementary groups, nothing inherited from root); its VMMs lead their own
//! sessions, so a daemon restart leaves them running for the next daemon to reattach.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use banger_model::system::{InstallMetadata, Service, SystemLayout};
use banger_sys::service::{RunAs, detach_as};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);
/// How long a service has to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A pid file's number, if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    banger_sys::process::parse_proc_stat(&stat).is_some_and(|s| !s.has_exited())
}

/// Whether `pid` is a supervisor of `service` (guards against a recycled pid).
pub fn is_supervisor(pid: i32, service: Service) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"supervise" && w[1] == service_arg(service).as_bytes())
    })
}

/// The word naming a service on the supervise command line.
pub fn service_arg(service: Service) -> &'static str {
    match service {
        Service::Helper => "helper",
        Service::Daemon => "daemon",
    }
}

fn write_pid(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

fn note(log: &mut std::fs::File, service: Service, text: &str) {
    let now = jiff::Timestamp::now();
    let _ = writeln!(log, "{now} supervisor[{}]: {text}", service.name());
}

/// Opens (creating) the service's log for appending: root's 0600 for the helper, the
/// owner's group may read the daemon's (0640).
pub fn open_log(
    layout: &SystemLayout,
    metadata: &InstallMetadata,
    service: Service,
) -> anyhow::Result<std::fs::File> {
    let path = layout.log_file(service);
    let mode = match service {
        Service::Helper => 0o600,
        Service::Daemon => 0o640,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if service == Service::Daemon {
        std::os::unix::fs::fchown(&file, Some(0), Some(metadata.owner.gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

fn child_command(
    metadata: &InstallMetadata,
    service: Service,
    log: &std::fs::File,
) -> anyhow::Result<Command> {
    let mut cmd = match service {
        Service::Helper => {
            let mut cmd = Command::new(&metadata.paths.helper);
            cmd.args(metadata.helper_args());
            cmd.env_clear().env("PATH", banger_exec::CLEAN_PATH);
            cmd.current_dir("/");
            detach_as(&mut cmd, None);
            cmd
        }
        Service::Daemon => {
            let mut cmd = Command::new(&metadata.paths.bangerd);
            cmd.env_clear().envs(metadata.daemon_env());
            cmd.current_dir("/");
            detach_as(
                &mut cmd,
                Some(RunAs {
                    uid: metadata.owner.uid,
                    gid: metadata.owner.gid,
                    groups: metadata.owner.groups.clone(),
                }),
            );
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    Ok(cmd)
}

/// The supervisor itself (`banger system supervise SERVICE`). Returns when stopped.
pub fn supervise(layout: &SystemLayout, service: Service) -> anyhow::Result<()> {
    let metadata = InstallMetadata::read(layout)?;
    let mut log = open_log(layout, &metadata, service)?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    // Blocked before any thread exists, so every thread inherits the mask and only the
    // waiting thread takes them; children start with an empty mask (std resets it).
    signals.thread_block().context("cannot block signals")?;
    write_pid(&layout.supervisor_pid_file(service), std::process::id())?;
    let stopping = Arc::new(AtomicBool::new(false));
    let child_pid = Arc::new(AtomicI32::new(0));
    {
        let (stopping, child_pid) = (stopping.clone(), child_pid.clone());
        std::thread::spawn(move || {
            if signals.wait().is_ok() {
                stopping.store(true, Ordering::SeqCst);
                let pid = child_pid.load(Ordering::SeqCst);
                if pid > 0 {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    let deadline = Instant::now() + STOP_GRACE;
                    while Instant::now() < deadline && alive(pid) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if alive(pid) && child_pid.load(Ordering::SeqCst) == pid {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        });
    }
    let mut backoff = FIRST_BACKOFF;
    note(&mut log, service, "starting");
    while !stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        let mut child = match child_command(&metadata, service, &log)?.spawn() {
            Ok(child) => child,
            Err(error) => {
                note(&mut log, service, &format!("cannot start: {error}"));
                sleep_unless(&stopping, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let pid = child.id();
        child_pid.store(pid as i32, Ordering::SeqCst);
        let _ = write_pid(&layout.pid_file(service), pid);
        note(&mut log, service, &format!("started pid {pid}"));
        if stopping.load(Ordering::SeqCst) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let status = child.wait();
        child_pid.store(0, Ordering::SeqCst);
        let _ = std::fs::remove_file(layout.pid_file(service));
        let shown = match status {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        };
        if stopping.load(Ordering::SeqCst) {
            note(&mut log, service, &format!("pid {pid} stopped ({shown})"));
            break;
        }
        if started.elapsed() > HEALTHY_UPTIME {
            backoff = FIRST_BACKOFF;
        }
        note(
            &mut log,
            service,
            &format!(
                "pid {pid} exited ({shown}); restarting in {} ms",
                backoff.as_millis()
            ),
        );
        sleep_unless(&stopping, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let _ = std::fs::remove_file(layout.supervisor_pid_file(service));
    Ok(())
}

fn sleep_unless(stopping: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline && !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a detached supervisor for `service` from the installed `banger`.
pub fn start(
    layout: &SystemLayout,
    metadata: &InstallMetadata,
    service: Service,
) -> anyhow::Result<()> {
    let log = open_log(layout, metadata, service)?;
    let mut cmd = Command::new(&metadata.paths.banger);
    cmd.args(["system", "supervise", service_arg(service)])
        .env_clear()
        .env("PATH", banger_exec::CLEAN_PATH)
        .env(
            banger_model::system::SYSTEM_ROOT_ENV,
            layout.root().as_os_str(),
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    detach_as(&mut cmd, None);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", metadata.paths.banger.display()))?;
    // The supervisor reparents to init when this process exits; it is never waited for.
    drop(child);
    Ok(())
}

/// Stops `service`'s supervisor (and so the service), waiting for both to be gone. A
/// service process left without its supervisor is stopped too.
pub fn stop(layout: &SystemLayout, service: Service) -> anyhow::Result<bool> {
    let mut stopped = false;
    let supervisor = read_pid(&layout.supervisor_pid_file(service))
        .filter(|&pid| alive(pid) && is_supervisor(pid, service));
    let child = read_pid(&layout.pid_file(service)).filter(|&pid| alive(pid));
    if let Some(pid) = supervisor {
        kill(Pid::from_raw(pid), Signal::SIGTERM)
            .with_context(|| format!("cannot signal supervisor pid {pid}"))?;
        wait_gone(pid, STOP_GRACE + Duration::from_secs(5));
        stopped = true;
    }
    if let Some(pid) = child.filter(|&pid| alive(pid)) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if !wait_gone(pid, STOP_GRACE) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(2));
        }
        stopped = true;
    }
    let _ = std::fs::remove_file(layout.supervisor_pid_file(service));
    let _ = std::fs::remove_file(layout.pid_file(service));
    Ok(stopped)
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// A supervised service as `system status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedState {
    pub supervisor: Option<i32>,
    pub pid: Option<i32>,
}

pub fn state(layout: &SystemLayout, service: Service) -> SupervisedState {
    SupervisedState {
        supervisor: read_pid(&layout.supervisor_pid_file(service))
            .filter(|&pid| alive(pid) && is_supervisor(pid, service)),
        pid: read_pid(&layout.pid_file(service)).filter(|&pid| alive(pid)),
    }
}
