//! Offline preparation of a VM's root disk, with no mount and no root: `e2fsck -fy`, then
//! one `debugfs -w` script that writes the hostname, `/etc/hosts`, `/etc/resolv.conf` (for
//! `--nat` guests), ssh authorized keys, the guest agent and (on systemd guests) its unit
//! and enablement link.
//!
//! `debugfs` exits 0 even when a request fails, so every line it writes to stderr is
//! checked: only the expected "not found" from `rm` of an absent file and "already exists"
//! from `mkdir` of a present directory are accepted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};

/// How the guest starts its services; decides how the agent is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSystem {
    /// systemd: the agent gets a unit, enabled by a symlink.
    Systemd,
    /// busybox init: the image's `rcS` starts `/usr/local/sbin/banger-agent` if present.
    Busybox,
}

/// What to write into a guest's disk before boot.
#[derive(Debug, Clone)]
pub struct GuestPatch {
    pub hostname: String,
    /// Lines for `/root/.ssh/authorized_keys`, if any.
    pub authorized_keys: Option<String>,
    /// Host path of the static agent binary.
    pub agent_binary: PathBuf,
    pub init: InitSystem,
    /// Contents for `/etc/resolv.conf`, if banger should write one.
    pub resolv_conf: Option<String>,
}

/// Why the disk could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("e2fsck could not repair the root disk {}", disk.display())]
    Fsck {
        disk: PathBuf,
        #[source]
        source: ExecError,
    },
    #[error("debugfs failed on {}", disk.display())]
    Debugfs {
        disk: PathBuf,
        #[source]
        source: ExecError,
    },
    #[error("debugfs reported errors patching {}: {}", disk.display(), errors.join("; "))]
    DebugfsReported { disk: PathBuf, errors: Vec<String> },
    #[error("cannot stage patch files in {}", dir.display())]
    Stage {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const AGENT_GUEST_PATH: &str = "/usr/local/sbin/banger-agent";
const AGENT_UNIT: &str = include_str!("../assets/banger-agent.service");
const AGENT_UNIT_PATH: &str = "/etc/systemd/system/banger-agent.service";
const AGENT_UNIT_LINK: &str = "/etc/systemd/system/sysinit.target.wants/banger-agent.service";

/// A file to stage on the host before `debugfs` copies it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub name: &'static str,
    pub contents: Vec<u8>,
}

/// The staged files and `debugfs` commands for a patch. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    pub staged: Vec<StagedFile>,
    pub commands: Vec<String>,
}

fn write_file(commands: &mut Vec<String>, staged: &Path, guest: &str, mode: u32) {
    commands.push(format!("rm {guest}"));
    commands.push(format!("write {} {guest}", staged.display()));
    commands.push(format!("sif {guest} mode 0{:o}", 0o100000 | mode));
    commands.push(format!("sif {guest} uid 0"));
    commands.push(format!("sif {guest} gid 0"));
}

fn mkdir_p(commands: &mut Vec<String>, dir: &str, mode: u32) {
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        commands.push(format!("mkdir {path}"));
    }
    commands.push(format!("sif {dir} mode 0{:o}", 0o040000 | mode));
}

/// Plans the patch for `patch`, with staged files placed in `stage_dir`.
pub fn plan(patch: &GuestPatch, stage_dir: &Path) -> PatchPlan {
    let mut staged = Vec::new();
    let mut commands = Vec::new();
    let stage = |name: &'static str, contents: Vec<u8>, staged: &mut Vec<StagedFile>| {
        staged.push(StagedFile { name, contents });
        stage_dir.join(name)
    };

    let hostname = stage(
        "hostname",
        format!("{}\n", patch.hostname).into_bytes(),
        &mut staged,
    );
    write_file(&mut commands, &hostname, "/etc/hostname", 0o644);
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        name = patch.hostname
    );
    let hosts = stage("hosts", hosts.into_bytes(), &mut staged);
    write_file(&mut commands, &hosts, "/etc/hosts", 0o644);
    if let Some(resolv) = &patch.resolv_conf {
        let resolv = stage("resolv.conf", resolv.clone().into_bytes(), &mut staged);
        write_file(&mut commands, &resolv, "/etc/resolv.conf", 0o644);
    }

    if let Some(keys) = &patch.authorized_keys {
        mkdir_p(&mut commands, "/root/.ssh", 0o700);
        let keys = stage("authorized_keys", keys.clone().into_bytes(), &mut staged);
        write_file(&mut commands, &keys, "/root/.ssh/authorized_keys", 0o600);
    }

    mkdir_p(&mut commands, "/usr/local/sbin", 0o755);
    write_file(&mut commands, &patch.agent_binary, AGENT_GUEST_PATH, 0o755);

    if patch.init == InitSystem::Systemd {
        mkdir_p(
            &mut commands,
            "/etc/systemd/system/sysinit.target.wants",
            0o755,
        );
        let unit = stage(
            "banger-agent.service",
            AGENT_UNIT.as_bytes().to_vec(),
            &mut staged,
        );
        write_file(&mut commands, &unit, AGENT_UNIT_PATH, 0o644);
        commands.push(format!("rm {AGENT_UNIT_LINK}"));
        commands.push(format!("symlink {AGENT_UNIT_LINK} {AGENT_UNIT_PATH}"));
    }
    PatchPlan { staged, commands }
}

/// The stderr lines of a `debugfs -f` run that are real failures.
pub fn debugfs_errors(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| !line.starts_with("debugfs "))
        .filter(|line| {
            *line != "rm: File not found by ext2_lookup while trying to resolve filename"
                && !line.starts_with("ext2fs_mkdir: Ext2 directory already exists")
                && *line != "mkdir: Ext2 directory already exists"
        })
        .map(str::to_string)
        .collect()
}

/// Checks the filesystem (repairing what it can), then applies `patch`.
pub async fn apply(
    runner: &dyn CommandRunner,
    disk: &Path,
    patch: &GuestPatch,
    stage_dir: &Path,
) -> Result<(), PatchError> {
    fsck(runner, disk).await?;
    let plan = plan(patch, stage_dir);
    let stage_err = |source| PatchError::Stage {
        dir: stage_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(stage_dir).map_err(stage_err)?;
    for file in &plan.staged {
        std::fs::write(stage_dir.join(file.name), &file.contents).map_err(stage_err)?;
    }
    let script = stage_dir.join("debugfs.cmds");
    std::fs::write(&script, plan.commands.join("\n") + "\n").map_err(stage_err)?;
    let output = runner
        .run(
            &Cmd::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script)
                .arg(disk)
                .timeout(Duration::from_secs(60)),
        )
        .await
        .map_err(|source| PatchError::Debugfs {
            disk: disk.to_path_buf(),
            source,
        })?;
    let _ = std::fs::remove_dir_all(stage_dir);
    let errors = debugfs_errors(&output.stderr_text());
    if !errors.is_empty() {
        return Err(PatchError::DebugfsReported {
            disk: disk.to_path_buf(),
            errors,
        });
    }
    Ok(())
}

/// `e2fsck -fy`: exit codes 1 and 2 mean "errors corrected", which is success here.
pub async fn fsck(runner: &dyn CommandRunner, disk: &Path) -> Result<(), PatchError> {
    let cmd = Cmd::new("e2fsck")
        .arg("-fy")
        .arg(disk)
        .timeout(Duration::from_secs(300));
    match runner.run(&cmd).await {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.exit_code(), Some(1 | 2)) => Ok(()),
        Err(source) => Err(PatchError::Fsck {
            disk: disk.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(init: InitSystem, keys: bool) -> GuestPatch {
        GuestPatch {
            hostname: "web".into(),
            authorized_keys: keys.then(|| "ssh-ed25519 AAAA test\n".to_string()),
            agent_binary: "/opt/banger-agent".into(),
            init,
            resolv_conf: None,
        }
    }

    #[test]
    fn busybox_plan_has_no_unit() {
        let plan = plan(&sample(InitSystem::Busybox, false), Path::new("/stage"));
        assert!(plan.commands.iter().all(|c| !c.contains("systemd")));
        assert!(
            plan.commands
                .contains(&"write /opt/banger-agent /usr/local/sbin/banger-agent".into())
        );
        assert!(
            plan.commands
                .contains(&"sif /usr/local/sbin/banger-agent mode 0100755".into())
        );
        assert_eq!(
            plan.staged.iter().map(|f| f.name).collect::<Vec<_>>(),
            ["hostname", "hosts"]
        );
    }

    #[test]
    fn a_resolv_conf_is_written_only_when_given() {
        let mut patch = sample(InitSystem::Busybox, false);
        let without = plan(&patch, Path::new("/stage"));
        assert!(without.commands.iter().all(|c| !c.contains("resolv.conf")));
        patch.resolv_conf = Some("nameserver 192.0.2.1\n".into());
        let with = plan(&patch, Path::new("/stage"));
        assert!(
            with.commands
                .contains(&"write /stage/resolv.conf /etc/resolv.conf".into())
        );
        assert!(
            with.staged
                .iter()
                .any(|f| f.name == "resolv.conf" && f.contents == b"nameserver 192.0.2.1\n")
        );
    }

    #[test]
    fn systemd_plan_enables_the_unit() {
        let plan = plan(&sample(InitSystem::Systemd, true), Path::new("/stage"));
        assert!(
            plan.commands
                .contains(&format!("symlink {AGENT_UNIT_LINK} {AGENT_UNIT_PATH}"))
        );
        assert!(
            plan.commands
                .contains(&"sif /root/.ssh/authorized_keys mode 0100600".into())
        );
        assert!(plan.commands.contains(&"mkdir /root/.ssh".into()));
    }

    #[test]
    fn expected_debugfs_noise_is_accepted_and_real_errors_are_not() {
        let stderr = "debugfs 1.47.2 (1-Jan-2025)\n\
            rm: File not found by ext2_lookup while trying to resolve filename\n\
            ext2fs_mkdir: Ext2 directory already exists while creating directory \"etc\"\n\
            mkdir: Ext2 directory already exists \n\
            write: File not found by ext2_lookup \n\
            /nodir: File not found by ext2_lookup while looking up \"/nodir\"\n";
        assert_eq!(
            debugfs_errors(stderr),
            vec![
                "write: File not found by ext2_lookup".to_string(),
                "/nodir: File not found by ext2_lookup while looking up \"/nodir\"".to_string()
            ]
        );
    }
}
