//! Saving and restoring QEMU guests (see [`crate::warm`]): the extra command-line
//! arguments of a warm launch (a pure function, table-tested) and the QMP exchanges of
//! a save (`stop`, `migrate` to a `file:` URI) and of a restore (`-incoming defer`, then
//! `migrate-incoming`).
//!
//! RAM is always the backend object `microvm.ram`: that is the name of the RAM block a
//! normally booted microvm has, so a guest booted with anonymous memory can be saved into
//! a stream and loaded by a QEMU whose RAM is a file, and the other way round.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::VmmError;
use crate::qemu::qmp::{QmpClient, QmpError};
use crate::warm::{SnapshotReport, SnapshotRequest, WarmLaunch};

/// The id of the RAM backend object (see the module comment).
pub const RAM_BACKEND_ID: &str = "microvm.ram";

/// QEMU throttles migration to 128 MiB/s by default; a save to a local file should not be.
const MAX_BANDWIDTH: u64 = 100 << 30;

/// How long a save or a load may take. A stream of a few GiB loads in seconds; this only
/// bounds a wedged QEMU.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Pause between `query-migrate` polls.
const POLL: Duration = Duration::from_millis(5);

/// Arguments appended to the usual command line for `warm` (`memory_mib` sizes the
/// backend). Later `-machine` options add to the first one.
pub fn warm_args(warm: &WarmLaunch, memory_mib: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(memory) = &warm.memory {
        // A private mapping opens the file read-only (`readonly=on`) while the guest's
        // RAM stays writable (`rom=off`, copy-on-write): the file is 0400 and the VMM's
        // confinement allows it only to be read. Without `readonly=on` QEMU opens it
        // read-write and fails with EACCES as anyone but root.
        let mode = if memory.shared {
            "share=on"
        } else {
            "share=off,readonly=on,rom=off"
        };
        let mut object = OsString::from(format!(
            "memory-backend-file,id={RAM_BACKEND_ID},size={memory_mib}M,{mode},mem-path="
        ));
        object.push(super::cmdline::escape_opt(memory.path.as_os_str()));
        args.push("-object".into());
        args.push(object);
        args.push("-machine".into());
        args.push(format!("memory-backend={RAM_BACKEND_ID}").into());
    }
    if warm.incoming.is_some() {
        args.push("-incoming".into());
        args.push("defer".into());
        if warm.paused {
            args.push("-S".into());
        }
    }
    args
}

/// The `file:` migration URI for `path`. QEMU reads options after a comma in it, so a
/// path with a comma is refused rather than misread.
pub fn file_uri(path: &Path) -> Result<String, VmmError> {
    let text = path.to_str().filter(|text| !text.contains(','));
    match text {
        Some(text) => Ok(format!("file:{text}")),
        None => Err(VmmError::Prepare {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a snapshot path must be UTF-8 without commas",
            ),
        }),
    }
}

fn qmp(command: &str) -> impl FnOnce(QmpError) -> VmmError + '_ {
    move |source| VmmError::Qmp {
        command: command.to_string(),
        source,
    }
}

async fn set_capabilities(client: &mut QmpClient, ignore_shared: bool) -> Result<(), VmmError> {
    if ignore_shared {
        let arguments = json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]});
        client
            .execute("migrate-set-capabilities", Some(arguments))
            .await
            .map_err(qmp("migrate-set-capabilities"))?;
    }
    Ok(())
}

/// Polls `query-migrate` until the migration completes; `failed` or `cancelled` is an
/// error carrying QEMU's description.
async fn wait_migration(client: &mut QmpClient, command: &str) -> Result<Value, VmmError> {
    let started = Instant::now();
    loop {
        let status = client
            .execute("query-migrate", None)
            .await
            .map_err(qmp("query-migrate"))?;
        match status.get("status").and_then(Value::as_str) {
            Some("completed") => return Ok(status),
            Some(state @ ("failed" | "cancelled")) => {
                let desc = status
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or(state)
                    .to_string();
                return Err(VmmError::Qmp {
                    command: command.to_string(),
                    source: QmpError::Command {
                        class: state.to_string(),
                        desc,
                    },
                });
            }
            _ => {}
        }
        if started.elapsed() > MIGRATION_TIMEOUT {
            return Err(VmmError::Timeout {
                what: format!("`{command}`"),
                waited: MIGRATION_TIMEOUT,
                stderr_tail: status.to_string(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The name the state file's descriptor has in QEMU for one `migrate`.
const SAVE_FD_NAME: &str = "banger-save";

/// Pauses the guest and writes its state to `request.state_file`. The daemon creates the
/// file (0600, so QEMU's own creation mode never applies) and hands QEMU the open
/// descriptor (`getfd`, then `migrate` to `fd:`): a confined QEMU reaches no path outside
/// its own files (see `crate::confine`), and needs none for a save. The guest stays
/// paused: the caller copies its disk, then resumes it ([`resume`]) or stops it.
pub async fn save(socket: &Path, request: &SnapshotRequest) -> Result<SnapshotReport, VmmError> {
    use std::os::fd::AsFd as _;
    let state_file = create_private(&request.state_file)?;
    let mut client = QmpClient::connect(socket).await.map_err(qmp("connect"))?;
    client
        .execute_with_fd("getfd", json!({"fdname": SAVE_FD_NAME}), state_file.as_fd())
        .await
        .map_err(qmp("getfd"))?;
    drop(state_file);
    let uri = format!("fd:{SAVE_FD_NAME}");
    let started = Instant::now();
    client.execute("stop", None).await.map_err(qmp("stop"))?;
    set_capabilities(&mut client, request.ignore_shared).await?;
    client
        .execute(
            "migrate-set-parameters",
            Some(json!({"max-bandwidth": MAX_BANDWIDTH})),
        )
        .await
        .map_err(qmp("migrate-set-parameters"))?;
    client
        .execute("migrate", Some(json!({"uri": uri})))
        .await
        .map_err(qmp("migrate"))?;
    let status = wait_migration(&mut client, "migrate").await?;
    let took = started.elapsed();
    let downtime = status
        .get("downtime")
        .and_then(Value::as_u64)
        .map(Duration::from_millis);
    let state_bytes = std::fs::metadata(&request.state_file)
        .map(|meta| meta.len())
        .unwrap_or(0);
    Ok(SnapshotReport {
        took,
        downtime,
        state_bytes,
    })
}

/// Stops the guest's vCPUs (QMP `stop`; a stopped guest stays stopped).
pub async fn pause(socket: &Path) -> Result<(), VmmError> {
    let mut client = QmpClient::connect(socket).await.map_err(qmp("connect"))?;
    client.execute("stop", None).await.map_err(qmp("stop"))?;
    Ok(())
}

/// Lets a paused guest run again (after [`save`]; QEMU reactivates its disks).
pub async fn resume(socket: &Path) -> Result<(), VmmError> {
    let mut client = QmpClient::connect(socket).await.map_err(qmp("connect"))?;
    client.execute("cont", None).await.map_err(qmp("cont"))?;
    Ok(())
}

/// Loads `state` into a QEMU started with `-incoming defer`; returns once the guest runs
/// (or, with `paused`, once the load completed).
pub async fn load(
    socket: &Path,
    state: &Path,
    ignore_shared: bool,
    paused: bool,
) -> Result<(), VmmError> {
    let uri = file_uri(state)?;
    let mut client = QmpClient::connect(socket).await.map_err(qmp("connect"))?;
    set_capabilities(&mut client, ignore_shared).await?;
    client
        .execute("migrate-incoming", Some(json!({"uri": uri})))
        .await
        .map_err(qmp("migrate-incoming"))?;
    wait_migration(&mut client, "migrate-incoming").await?;
    let started = Instant::now();
    loop {
        let status = client.query_status().await.map_err(qmp("query-status"))?;
        if status.running || (paused && status.status == "paused") {
            return Ok(());
        }
        // The state records whether the saved guest was running; one saved paused (a
        // snapshot re-saved without running it) loads paused and is started here.
        if status.status == "paused" {
            client.execute("cont", None).await.map_err(qmp("cont"))?;
            continue;
        }
        if started.elapsed() > MIGRATION_TIMEOUT {
            return Err(VmmError::Timeout {
                what: "the restored guest to run".into(),
                waited: MIGRATION_TIMEOUT,
                stderr_tail: format!("status {}", status.status),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates (or truncates) `path` with mode 0600, open for writing.
fn create_private(path: &Path) -> Result<std::fs::File, VmmError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| VmmError::Prepare {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::MemoryFile;

    fn render(args: &[OsString]) -> String {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn warm_args_table() {
        let private = |path: &str| MemoryFile {
            path: path.into(),
            shared: false,
        };
        let cases = [
            (WarmLaunch::default(), ""),
            (
                WarmLaunch {
                    memory: Some(MemoryFile {
                        path: "/s/snap/mem".into(),
                        shared: true,
                    }),
                    ..WarmLaunch::default()
                },
                "-object memory-backend-file,id=microvm.ram,size=512M,share=on,mem-path=/s/snap/mem \
                 -machine memory-backend=microvm.ram",
            ),
            (
                WarmLaunch {
                    memory: Some(private("/s/a,b/mem")),
                    incoming: Some("/s/a/state".into()),
                    ignore_shared: true,
                    ..WarmLaunch::default()
                },
                "-object memory-backend-file,id=microvm.ram,size=512M,share=off,readonly=on,rom=off,mem-path=/s/a,,b/mem \
                 -machine memory-backend=microvm.ram -incoming defer",
            ),
            (
                WarmLaunch {
                    incoming: Some("/s/a/state".into()),
                    paused: true,
                    ..WarmLaunch::default()
                },
                "-incoming defer -S",
            ),
        ];
        for (warm, expected) in cases {
            assert_eq!(render(&warm_args(&warm, 512)), expected, "{warm:?}");
        }
    }

    #[test]
    fn file_uris() {
        assert_eq!(
            file_uri(Path::new("/s/x/state")).unwrap(),
            "file:/s/x/state"
        );
        assert!(file_uri(Path::new("/s/a,b/state")).is_err());
    }
}
