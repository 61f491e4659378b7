//! ops: what `system install|status|restart|uninstall` do, in order, below one
//! [`SystemLayout`] root. Install copies the binaries into root-owned paths (a temp file
//! and a rename, so a running binary is never overwritten), creates the runtime layout,
//! writes the metadata, (re)starts both services and waits until each answers. Nothing
//! here touches the owner's VMs, images or database; uninstall removes them only with
//! `--purge`.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use banger_model::system::{
    InstallMetadata, InstalledNetwork, InstalledPaths, METADATA_FORMAT, MetadataError, Owner,
    Service, ServiceMode, SystemLayout,
};
use serde::Serialize;

use super::{supervise, units};

/// How long a started service has to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What install was asked to do.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    pub owner: Option<String>,
    /// Where the new binaries are; default: beside this `banger`.
    pub from: Option<PathBuf>,
    pub agent: Option<PathBuf>,
    pub mode: Option<ServiceMode>,
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    pub dns_port: Option<u16>,
}

/// Which mode applies: systemd when it is PID 1 and the install is the real system.
pub fn detect_mode(layout: &SystemLayout) -> ServiceMode {
    if layout.is_system_root() && Path::new("/run/systemd/system").is_dir() {
        ServiceMode::Systemd
    } else {
        ServiceMode::Supervised
    }
}

/// Refuses unless this process is root, with the command to run instead.
pub fn require_root(action: &str) -> Result<(), crate::errors::CliError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "$USER".into());
    let owner = if action == "install" {
        format!(" --owner {user}")
    } else {
        String::new()
    };
    Err(crate::errors::CliError::Failed {
        message: format!("`banger system {action}` must run as root"),
        hint: Some(format!("run: sudo banger system {action}{owner}")),
    })
}

fn lookup_owner(name: &str) -> anyhow::Result<Owner> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("cannot look up user {name:?}"))?
        .with_context(|| format!("no user named {name:?}"))?;
    let cname = std::ffi::CString::new(name)?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    groups.retain(|&g| g != user.gid.as_raw());
    groups.sort_unstable();
    groups.dedup();
    Ok(Owner {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir,
    })
}

/// The owner: `--owner`, else the user who ran sudo, else root.
fn choose_owner(
    requested: Option<&str>,
    previous: Option<&InstallMetadata>,
) -> anyhow::Result<Owner> {
    let name = requested
        .map(str::to_owned)
        .or_else(|| previous.map(|m| m.owner.name.clone()))
        .or_else(|| std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "root".to_owned());
    lookup_owner(&name)
}

/// A directory root owns that nobody else may write: created 0755 if missing.
fn root_dir(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        root_dir(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::os::unix::fs::lchown(path, Some(0), Some(0))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(meta) => {
            if !meta.is_dir() {
                bail!(
                    "{} is not a directory (a symlink?); refusing to install there",
                    path.display()
                );
            }
            if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                bail!(
                    "{} is not root-owned or is writable by others (uid {}, mode {:o}); \
                     root must not run binaries from it",
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                );
            }
            Ok(())
        }
    }
}

/// The owner's private directory (0700), refusing one someone else controls.
fn owner_dir(path: &Path, owner: &Owner) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(meta) if !meta.is_dir() || meta.uid() != owner.uid => bail!(
            "{} exists and is not a directory of {} (uid {}); refusing to use it",
            path.display(),
            owner.name,
            meta.uid()
        ),
        Ok(_) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
    }
}

/// Copies `from` to `to` (root:root 0755) through a temp file and a rename.
fn install_binary(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from == to {
        return Ok(());
    }
    let tmp = to.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::os::unix::fs::lchown(&tmp, Some(0), Some(0))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot install {}", to.display()))?;
    Ok(())
}

fn source_dir(plan: &InstallPlan) -> anyhow::Result<PathBuf> {
    match &plan.from {
        Some(dir) => Ok(dir.clone()),
        None => std::env::current_exe()
            .context("cannot find this banger binary")?
            .parent()
            .map(Path::to_path_buf)
            .context("this banger binary has no directory"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One progress line on stderr.
fn step(text: &str) {
    #[expect(clippy::print_stderr, reason = "install progress goes to stderr")]
    {
        eprintln!("==> {text}");
    }
}

/// `system install`.
pub async fn install(layout: &SystemLayout, plan: &InstallPlan) -> anyhow::Result<InstallMetadata> {
    let previous = match InstallMetadata::read(layout) {
        Ok(metadata) => Some(metadata),
        Err(MetadataError::NotInstalled { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    let owner = choose_owner(plan.owner.as_deref(), previous.as_ref())?;
    let mode = plan
        .mode
        .or(previous.as_ref().map(|m| m.mode))
        .unwrap_or_else(|| detect_mode(layout));
    if mode == ServiceMode::Systemd && !Path::new("/run/systemd/system").is_dir() {
        bail!("systemd is not running as PID 1 here; use --mode supervised");
    }
    // Below a test root the owner's directories are the root's too, so a test never
    // touches the owner's real VMs and images.
    let test_root = (!layout.is_system_root()).then(|| layout.root().join("owner"));
    let dirs = banger_model::dirs::Dirs::resolve(
        |key| match (&test_root, key) {
            (Some(base), "BANGER_STATE_DIR") => Some(base.join("state").display().to_string()),
            (Some(base), "BANGER_CACHE_DIR") => Some(base.join("cache").display().to_string()),
            (Some(base), "BANGER_CONFIG_DIR") => Some(base.join("config").display().to_string()),
            (_, "HOME") => Some(owner.home.display().to_string()),
            _ => None,
        },
        owner.uid,
    )?;
    let runtime_dir = layout.owner_runtime_dir(owner.uid);
    let network = InstalledNetwork {
        bridge: plan
            .bridge
            .clone()
            .or(previous.as_ref().map(|m| m.network.bridge.clone()))
            .unwrap_or_else(|| "banger0".into()),
        subnet: plan
            .subnet
            .clone()
            .or(previous.as_ref().map(|m| m.network.subnet.clone()))
            .unwrap_or_else(|| "172.30.0.0/24".into()),
        dns_port: plan
            .dns_port
            .or(previous.as_ref().map(|m| m.network.dns_port))
            .unwrap_or(42069),
    };
    let from = source_dir(plan)?;
    let exe = std::env::current_exe().context("cannot find this banger binary")?;
    let sources = [
        (exe, layout.banger()),
        (from.join("bangerd"), layout.bangerd()),
        (from.join("banger-helper"), layout.helper()),
    ];
    for (source, _) in &sources[1..] {
        if !source.is_file() {
            bail!(
                "{} is missing; build it first (cargo build --release -p bangerd -p banger-helper) \
                 or name the directory with --from",
                source.display()
            );
        }
    }
    let agent_source = plan
        .agent
        .clone()
        .or_else(|| Some(from.join("banger-agent")).filter(|p| p.is_file()));
    let agent = match &agent_source {
        Some(_) => Some(layout.agent()),
        None => previous.as_ref().and_then(|m| m.paths.agent.clone()),
    };

    // Stop what runs before its binaries change; VMMs keep running (own sessions).
    if let Some(previous) = &previous {
        step(&format!(
            "stopping the running services ({})",
            previous.mode.as_str()
        ));
        for service in [Service::Daemon, Service::Helper] {
            stop_service(layout, previous.mode, service).await?;
        }
    }

    step(&format!(
        "installing binaries to {} and {}",
        layout.bin_dir().display(),
        layout.lib_dir().display()
    ));
    for dir in [
        layout.bin_dir(),
        layout.lib_dir(),
        layout.etc_dir(),
        layout.log_dir(),
        layout.run_dir(),
    ] {
        root_dir(&dir)?;
    }
    for (source, target) in &sources {
        install_binary(source, target)?;
    }
    if let Some(source) = &agent_source {
        install_binary(source, &layout.agent())?;
    }
    owner_dir(&runtime_dir, &owner)?;
    // The daemon's unit can write only these, so they must exist before it starts.
    for dir in [&dirs.state, &dirs.cache, &dirs.config] {
        super::owner_dirs::ensure_owner_tree(dir, &owner)?;
    }

    let metadata = InstallMetadata {
        format: METADATA_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode,
        paths: InstalledPaths {
            banger: layout.banger(),
            bangerd: layout.bangerd(),
            helper: layout.helper(),
            agent,
            helper_socket: layout.helper_socket(),
            daemon_socket: runtime_dir.join("bangerd.sock"),
            runtime_dir,
            state_dir: dirs.state,
            cache_dir: dirs.cache,
            config_dir: dirs.config,
            log_dir: layout.log_dir(),
        },
        owner,
        network,
        installed_at: previous.as_ref().map_or_else(now, |m| m.installed_at),
        updated_at: now(),
    };
    write_metadata(layout, &metadata)?;
    start_services(layout, &metadata).await?;
    Ok(metadata)
}

fn write_metadata(layout: &SystemLayout, metadata: &InstallMetadata) -> anyhow::Result<()> {
    let path = layout.metadata();
    let tmp = path.with_extension("json.new");
    std::fs::write(&tmp, metadata.to_text())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::os::unix::fs::lchown(&tmp, Some(0), Some(0))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    let out = banger_exec::run(
        &banger_exec::Cmd::new("systemctl")
            .args(args)
            .timeout(Duration::from_secs(60)),
    )
    .await?;
    Ok(out.stdout_text())
}

/// Starts (or restarts) both services and waits until each answers.
pub async fn start_services(
    layout: &SystemLayout,
    metadata: &InstallMetadata,
) -> anyhow::Result<()> {
    match metadata.mode {
        ServiceMode::Systemd => {
            for service in Service::ALL {
                let path = layout.unit_file(service);
                std::fs::write(&path, units::unit(metadata, service))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
            systemctl(&["daemon-reload"]).await?;
        }
        ServiceMode::Supervised => {}
    }
    for service in Service::ALL {
        step(&format!(
            "starting {} ({})",
            service.name(),
            metadata.mode.as_str()
        ));
        match metadata.mode {
            ServiceMode::Systemd => {
                systemctl(&["enable", &service.unit_name()]).await?;
                systemctl(&["restart", &service.unit_name()]).await?;
            }
            ServiceMode::Supervised => {
                supervise::stop(layout, service)?;
                supervise::start(layout, metadata, service)?;
            }
        }
        wait_answering(metadata, service).await.with_context(|| {
            format!(
                "{} did not answer (see {})",
                service.name(),
                match metadata.mode {
                    ServiceMode::Systemd => format!("journalctl -u {}", service.unit_name()),
                    ServiceMode::Supervised => layout.log_file(service).display().to_string(),
                }
            )
        })?;
    }
    Ok(())
}

async fn wait_answering(metadata: &InstallMetadata, service: Service) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match answers(metadata, service).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Whether the service answers on its socket: the helper replies to `hello` (or refuses
/// this uid, which is also an answer); the daemon accepts a connection and replies.
pub async fn answers(metadata: &InstallMetadata, service: Service) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let socket = match service {
        Service::Helper => &metadata.paths.helper_socket,
        Service::Daemon => &metadata.paths.daemon_socket,
    };
    let talk = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("nothing listens on {}", socket.display()))?;
        let request: &[u8] = match service {
            Service::Helper => b"{\"op\":\"hello\"}\n",
            Service::Daemon => b"{\"v\":1,\"id\":1,\"method\":\"ping\",\"params\":{}}\n",
        };
        // The helper answers a uid it refuses (root's, for one) at once and hangs up, so
        // the write may meet a closed socket; its answer is still there to read.
        let _ = stream.write_all(request).await;
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await?;
        if line.trim().is_empty() {
            bail!(
                "{} closed the connection without answering",
                socket.display()
            );
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "no answer on {} within 3 s",
                socket.display()
            ))
        })
}

async fn stop_service(
    layout: &SystemLayout,
    mode: ServiceMode,
    service: Service,
) -> anyhow::Result<()> {
    match mode {
        ServiceMode::Systemd => {
            let _ = systemctl(&["stop", &service.unit_name()]).await;
        }
        ServiceMode::Supervised => {
            supervise::stop(layout, service)?;
        }
    }
    Ok(())
}

/// `system restart`: both services, helper first; VMs keep running and the new daemon
/// reattaches them.
pub async fn restart(layout: &SystemLayout) -> anyhow::Result<InstallMetadata> {
    let metadata = InstallMetadata::read(layout)?;
    for service in [Service::Daemon, Service::Helper] {
        stop_service(layout, metadata.mode, service).await?;
    }
    start_services(layout, &metadata).await?;
    Ok(metadata)
}

/// One service in `system status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: &'static str,
    pub mode: &'static str,
    /// `running`, `restarting` (supervisor up, process not), `stopped`, `failed`...
    pub state: String,
    pub pid: Option<i32>,
    pub answers: bool,
    /// Why it does not answer (null when it does).
    pub answer_error: Option<String>,
    pub version: String,
    pub socket: PathBuf,
    pub user: String,
    pub log: String,
}

/// `system status`.
pub async fn status(
    layout: &SystemLayout,
) -> anyhow::Result<(InstallMetadata, Vec<ServiceStatus>)> {
    let metadata = InstallMetadata::read(layout)?;
    let mut rows = Vec::new();
    for service in Service::ALL {
        let (state, pid, log) = match metadata.mode {
            ServiceMode::Supervised => {
                let s = supervise::state(layout, service);
                let state = match (s.supervisor, s.pid) {
                    (Some(_), Some(_)) => "running",
                    (Some(_), None) => "restarting",
                    (None, Some(_)) => "unsupervised",
                    (None, None) => "stopped",
                };
                (
                    state.to_owned(),
                    s.pid,
                    layout.log_file(service).display().to_string(),
                )
            }
            ServiceMode::Systemd => {
                let text = systemctl(&["show", "-p", "ActiveState,MainPID", &service.unit_name()])
                    .await
                    .unwrap_or_default();
                let field = |key: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{key}=")))
                        .unwrap_or("")
                        .to_owned()
                };
                let pid = field("MainPID").parse().ok().filter(|&p: &i32| p > 0);
                (
                    field("ActiveState"),
                    pid,
                    format!("journalctl -u {}", service.unit_name()),
                )
            }
        };
        let binary = layout.binary(service);
        let version = banger_exec::run(&banger_exec::Cmd::new(&binary).arg("--version"))
            .await
            .map(|out| out.stdout_text().trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        let answer = answers(&metadata, service).await;
        rows.push(ServiceStatus {
            service: service.name(),
            mode: metadata.mode.as_str(),
            state,
            pid,
            answers: answer.is_ok(),
            answer_error: answer.err().map(|error| format!("{error:#}")),
            version,
            socket: match service {
                Service::Helper => metadata.paths.helper_socket.clone(),
                Service::Daemon => metadata.paths.daemon_socket.clone(),
            },
            user: match service {
                Service::Helper => "root".to_owned(),
                Service::Daemon => metadata.owner.name.clone(),
            },
            log,
        });
    }
    Ok((metadata, rows))
}

/// What uninstall removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UninstallReport {
    pub removed: Vec<PathBuf>,
    pub network: Option<serde_json::Value>,
    pub kept: Vec<PathBuf>,
}

/// The owner's data `--purge` deletes.
pub fn purge_targets(metadata: &InstallMetadata) -> Vec<PathBuf> {
    [
        &metadata.paths.state_dir,
        &metadata.paths.cache_dir,
        &metadata.paths.config_dir,
    ]
    .into_iter()
    .filter(|p| p.exists())
    .cloned()
    .collect()
}

/// `system uninstall`: services, the network (through `banger-helper cleanup`, before the
/// helper binary goes), binaries, metadata, runtime and log directories; the owner's data
/// only with `purge`.
pub async fn uninstall(layout: &SystemLayout, purge: bool) -> anyhow::Result<UninstallReport> {
    let metadata = InstallMetadata::read(layout)?;
    let mut report = UninstallReport::default();
    step("stopping the services");
    for service in [Service::Daemon, Service::Helper] {
        match metadata.mode {
            ServiceMode::Systemd => {
                let _ = systemctl(&["disable", "--now", &service.unit_name()]).await;
                let unit = layout.unit_file(service);
                if std::fs::remove_file(&unit).is_ok() {
                    report.removed.push(unit);
                }
            }
            ServiceMode::Supervised => {
                supervise::stop(layout, service)?;
            }
        }
    }
    if metadata.mode == ServiceMode::Systemd {
        let _ = systemctl(&["daemon-reload"]).await;
    }
    stop_vmms(&metadata);
    step(&format!(
        "removing bridge {}, its taps, NAT rules and .vm routing",
        metadata.network.bridge
    ));
    if metadata.paths.helper.is_file() {
        let out = banger_exec::run(&banger_exec::Cmd::new(&metadata.paths.helper).args([
            "cleanup",
            "--bridge",
            &metadata.network.bridge,
            "--subnet",
            &metadata.network.subnet,
        ]))
        .await
        .context("banger-helper cleanup failed")?;
        report.network = serde_json::from_str(out.stdout_text().trim()).ok();
    }
    step("removing binaries and banger's system files");
    let mut files = vec![
        metadata.paths.banger.clone(),
        metadata.paths.bangerd.clone(),
        metadata.paths.helper.clone(),
    ];
    files.extend(metadata.paths.agent.clone());
    for file in files {
        if std::fs::remove_file(&file).is_ok() {
            report.removed.push(file);
        }
    }
    for dir in [
        layout.lib_dir(),
        layout.run_dir(),
        metadata.paths.runtime_dir.clone(),
        metadata.paths.log_dir.clone(),
        layout.etc_dir(),
    ] {
        if dir.exists() && std::fs::remove_dir_all(&dir).is_ok() {
            report.removed.push(dir);
        }
    }
    for dir in purge_targets(&metadata) {
        if purge {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
            report.removed.push(dir);
        } else {
            report.kept.push(dir);
        }
    }
    Ok(report)
}

/// Kills the VMMs of the owner's VMs: once the daemon is gone nobody would stop them. A
/// VMM is recognised by its per-VM handle file under the state directory.
fn stop_vmms(metadata: &InstallMetadata) {
    let vms = metadata.paths.state_dir.join("vms");
    let Ok(entries) = std::fs::read_dir(&vms) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("handle.json")) else {
            continue;
        };
        let Ok(handle) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let pid = handle.get("pid").and_then(serde_json::Value::as_u64);
        let start = handle.get("start_time").and_then(serde_json::Value::as_u64);
        if let (Some(pid), Some(start)) = (pid, start)
            && let Ok(pid32) = u32::try_from(pid)
            && banger_sys::process::is_same_process_alive(pid32, start)
        {
            step(&format!(
                "stopping VMM pid {pid} ({})",
                entry.path().display()
            ));
            let _ = banger_sys::process::send_signal(pid32, nix::libc::SIGKILL);
        }
    }
}
