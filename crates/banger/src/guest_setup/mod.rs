//! What the owner's side puts into a guest once it is up (after `vm create`, `vm run`'s
//! create and `vm start`): the `[[file_sync]]` files, the git identity and, with
//! `--host-ca`, the host's extra CA certificates. Everything is read here, on the user's
//! side, as the user (like `vm cp`), and goes to the guest through the daemon's copy and
//! exec methods; the daemon never reads the user's home for it.

pub mod host_ca;
pub mod identity;
pub mod sync_plan;

use std::path::{Path, PathBuf};

use banger_api::methods::{
    CopySourceKind, VmCopyIn, VmCopyInParams, VmExec, VmExecParams, VmPathParams, VmStat,
};
use banger_api::{Event, OutputStream};

use crate::config::Settings;
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::render;

/// What goes into the guest, read and checked on the host before any VM exists: a
/// refused `[[file_sync]]` source or a missing CA certificate fails the command first.
#[derive(Debug, Default)]
pub struct Prepared {
    sync: Option<sync_plan::SyncPlan>,
    identity: Option<identity::Identity>,
    ca: Option<(PathBuf, Vec<(PathBuf, String)>)>,
}

/// Reads and checks what the settings ask for. `repo` is the workspace PATH when there
/// is one (git resolves the identity there, as for the user's commits in it).
pub async fn prepare(
    ctx: &Ctx,
    settings: &Settings,
    repo: Option<&Path>,
) -> Result<Prepared, CliError> {
    let home = ctx.env("HOME").map(PathBuf::from);
    let mut prepared = Prepared::default();
    if !settings.file_sync.value.is_empty() {
        let Some(home) = &home else {
            return Err(CliError::failed(
                "file_sync: HOME is not set, so there is no home to copy from",
                None,
            ));
        };
        let plan = sync_plan::plan(home, &settings.file_sync.value).map_err(|err| {
            CliError::failed(
                err.to_string(),
                Some("file_sync sources must be inside your home (symlinks are followed)"),
            )
        })?;
        prepared.sync = Some(plan);
    }
    if settings.git_identity.value {
        let cwd = repo
            .map(Path::to_path_buf)
            .or(home.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        let found = identity::host_identity(ctx, &cwd).await;
        prepared.identity = (!found.is_empty()).then_some(found);
    }
    if settings.host_ca.value.enabled {
        let path = settings.host_ca.value.path.clone();
        let entries = host_ca::collect(&path).map_err(|message| {
            CliError::failed(
                format!("--host-ca: {message}"),
                Some(
                    "point host_ca_path (or --host-ca=PATH) at a CA certificate or a directory of *.crt",
                ),
            )
        })?;
        prepared.ca = Some((path, entries));
    }
    Ok(prepared)
}

/// Puts what [`prepare`] found into the running guest `vm`.
pub async fn apply(daemon: &mut Daemon, vm: &str, prepared: &Prepared) -> Result<(), CliError> {
    if let Some(plan) = &prepared.sync {
        for parent in &plan.parents {
            exec(
                daemon,
                vm,
                vec!["mkdir".into(), "-p".into(), parent.clone()],
                "file_sync",
            )
            .await?;
        }
        copy_in(daemon, vm, plan.entries.clone()).await?;
        render::note(&format!("synced {}", plan.synced.join(", ")));
        for left in &plan.left_out {
            render::note(&format!("file_sync left out {left}"));
        }
    }
    if let Some(found) = &prepared.identity {
        let existing = daemon
            .ask::<VmStat>(&VmPathParams {
                vm: vm.to_string(),
                path: identity::GUEST_CONFIG.to_string(),
            })
            .await?;
        if existing.kind.is_some() {
            exec(daemon, vm, identity::guest_argv(found), "git identity").await?;
        } else {
            let block = identity::config_block(found);
            let name = identity::GUEST_CONFIG.trim_start_matches('/');
            copy_in_bytes(daemon, vm, &[(name, 0o644, block.as_bytes())]).await?;
        }
        let email = found.email.as_ref().map(|e| format!("<{e}>"));
        let who = [found.name.as_deref(), email.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        render::note(&format!("git identity: {who}"));
    }
    if let Some((path, entries)) = &prepared.ca {
        exec(
            daemon,
            vm,
            vec!["mkdir".into(), "-p".into(), host_ca::GUEST_DIR.into()],
            "--host-ca",
        )
        .await?;
        copy_in(daemon, vm, entries.clone()).await?;
        exec(daemon, vm, host_ca::guest_argv(), "--host-ca").await?;
        let count = entries.len();
        render::note(&format!(
            "trusting {count} CA certificate{} from {}",
            if count == 1 { "" } else { "s" },
            path.display()
        ));
    }
    Ok(())
}

/// Runs `argv` in the guest; a non-zero exit fails with its stderr.
async fn exec(
    daemon: &mut Daemon,
    vm: &str,
    argv: Vec<String>,
    what: &str,
) -> Result<(), CliError> {
    let mut stderr = Vec::new();
    let params = VmExecParams {
        vm: vm.to_string(),
        argv,
        env: Vec::new(),
        cwd: None,
        stdin: false,
        tty: None,
        user: None,
    };
    let output = daemon
        .call::<VmExec>(&params, &mut |event| {
            if let Event::Output {
                stream: OutputStream::Stderr,
                data,
            } = event
            {
                stderr.extend_from_slice(&data);
            }
        })
        .await?;
    if output.exit_code != 0 {
        return Err(CliError::failed(
            format!(
                "{what}: the guest command failed (exit {}): {}",
                output.exit_code,
                String::from_utf8_lossy(&stderr).trim()
            ),
            None,
        ));
    }
    Ok(())
}

/// Streams `entries` (host files) as one tar, unpacked at the guest's `/`.
async fn copy_in(
    daemon: &mut Daemon,
    vm: &str,
    entries: Vec<(PathBuf, String)>,
) -> Result<(), CliError> {
    stream_tar(daemon, vm, move |writer| {
        banger_tar::pack_entries(&entries, writer)
    })
    .await
}

/// Streams `files` (`(guest path below /, mode, contents)`) as one tar, unpacked at the
/// guest's `/`: no process starts in the guest.
async fn copy_in_bytes(
    daemon: &mut Daemon,
    vm: &str,
    files: &[(&str, u32, &[u8])],
) -> Result<(), CliError> {
    let mut stream = Vec::new();
    banger_tar::pack_bytes(files, &mut stream)
        .map_err(|error| CliError::Local(anyhow::Error::new(error)))?;
    stream_tar(daemon, vm, move |mut writer| {
        use std::io::Write as _;
        writer
            .write_all(&stream)
            .and_then(|()| writer.flush())
            .map(|()| banger_tar::TarSummary::default())
            .map_err(banger_tar::TarError::Stream)
    })
    .await
}

/// Runs `pack` on a thread writing into `vm.copy_in`'s input, unpacked at the guest's `/`.
async fn stream_tar(
    daemon: &mut Daemon,
    vm: &str,
    pack: impl FnOnce(
        std::io::BufWriter<std::fs::File>,
    ) -> Result<banger_tar::TarSummary, banger_tar::TarError>
    + Send
    + 'static,
) -> Result<(), CliError> {
    let local = |err: std::io::Error| CliError::Local(anyhow::Error::new(err));
    let (sender, receiver) = tokio::net::unix::pipe::pipe().map_err(local)?;
    let writer = std::fs::File::from(sender.into_blocking_fd().map_err(local)?);
    let packer = std::thread::spawn(move || pack(std::io::BufWriter::new(writer)));
    let params = VmCopyInParams {
        vm: vm.to_string(),
        dst: "/".to_string(),
        source: CopySourceKind::Contents,
    };
    let result = daemon
        .call_with_input::<VmCopyIn, _>(&params, receiver, &mut |_| {})
        .await;
    let packed = packer
        .join()
        .map_err(|_| local(std::io::Error::other("the tar packer panicked")))?;
    match (result, packed) {
        (Err(refused), _) => Err(refused),
        (_, Err(error)) => Err(CliError::Local(
            anyhow::Error::new(error).context("cannot read a file to copy"),
        )),
        (Ok(_), Ok(_)) => Ok(()),
    }
}
