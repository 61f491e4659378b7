//! `ssh-config [--install|--uninstall]`: makes `ssh <vm>.vm` work with banger's key. The
//! decisions are in `banger_ssh::user_config` (pure); this file reads the two files, applies the
//! plan and says what changed. Runs locally; the daemon is not involved.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use clap::Args;

use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;
use banger_ssh::user_config::{FileChange, Layout, Plan, plan_install, plan_uninstall};

/// Set up `ssh <vm>.vm` in your ssh config
#[derive(Debug, Args)]
#[command(
    long_about = "Make plain `ssh <name>.vm` (and scp, rsync, editors' remote modes) reach \
banger's VMs with banger's key and known_hosts file.

--install writes banger's own file, ~/.ssh/banger_config, with a `Host *.vm` block, and \
adds one `Include` line for it at the top of ~/.ssh/config (created with mode 0600 if \
missing). Nothing else in your file changes, and installing twice changes nothing. \
--uninstall removes exactly that line and banger's file, restoring your config byte for \
byte. A ~/.ssh/config that is a symbolic link (a dotfile manager's) is written through, \
so it stays a link; one that points at nothing is refused, naming its target. Without a \
flag, prints the block so you can add it yourself.",
    after_help = "\
Examples:
  banger ssh-config --install && ssh web.vm
  banger ssh-config --uninstall
  banger ssh-config                     Print the Host block"
)]
pub struct SshConfigArgs {
    /// Add banger's Host block to your ssh config
    #[arg(long, conflicts_with = "uninstall")]
    pub install: bool,
    /// Remove what --install added
    #[arg(long)]
    pub uninstall: bool,
}

/// `ssh-config`.
pub fn run(ctx: &Ctx, args: SshConfigArgs) -> Result<(), CliError> {
    let Some(home) = ctx.env("HOME") else {
        return Err(CliError::failed(
            "HOME is not set; cannot find your ssh config",
            None,
        ));
    };
    let banger = std::env::current_exe()
        .map_err(|err| anyhow::Error::new(err).context("cannot find the banger program's path"))
        .map_err(CliError::Local)?;
    let layout = Layout::new(Path::new(&home), &ctx.dirs()?.config, &banger);
    if !args.install && !args.uninstall {
        render::note(&format!(
            "add this to your ssh config, or run `banger ssh-config --install` to include it \
             from {}:",
            layout.banger_config.display()
        ));
        return render::stdout(&layout.banger_block());
    }
    let user = read(&layout.user_config)?;
    let banger = read(&layout.banger_config)?;
    let plan = if args.install {
        plan_install(&layout, user.as_deref(), banger.as_deref())
    } else {
        plan_uninstall(&layout, user.as_deref(), banger.as_deref())
    };
    if plan.is_noop() {
        render::note(if args.install {
            "already installed; nothing changed"
        } else {
            "not installed; nothing changed"
        });
        return Ok(());
    }
    apply(&layout, &plan)?;
    for line in describe(&layout, &plan, args.install) {
        render::note(&line);
    }
    Ok(())
}

/// The file's bytes, or None when it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, CliError> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Refuses a path that is a symbolic link to nothing: writing there would either replace
/// the link with a file (losing the user's dotfile set-up) or create a file wherever the
/// link points. The user decides which.
fn refuse_dangling_link(path: &Path) -> Result<(), CliError> {
    let Ok(link) = std::fs::read_link(path) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    Err(CliError::failed(
        format!(
            "{} is a symbolic link to {}, which does not exist; refusing to replace the link \
             or to create its target",
            path.display(),
            link.display()
        ),
        Some("create the file the link points to (or remove the link), then run this again"),
    ))
}

fn apply(layout: &Layout, plan: &Plan) -> Result<(), CliError> {
    // Checked for both files before either is written.
    for (path, change) in [
        (&layout.banger_config, &plan.banger_config),
        (&layout.user_config, &plan.user_config),
    ] {
        if matches!(change, FileChange::Write(_)) {
            refuse_dangling_link(path)?;
        }
    }
    if let Some(ssh_dir) = layout.user_config.parent()
        && !ssh_dir.exists()
    {
        fs_err::create_dir_all(ssh_dir)?;
        fs_err::set_permissions(ssh_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // banger's file first: an Include of a missing file is harmless, but the other order
    // could leave an Include pointing nowhere if the second write failed.
    apply_one(&layout.banger_config, &plan.banger_config)?;
    apply_one(&layout.user_config, &plan.user_config)
}

fn apply_one(path: &Path, change: &FileChange) -> Result<(), CliError> {
    match change {
        FileChange::Keep => Ok(()),
        FileChange::Remove => Ok(fs_err::remove_file(path)?),
        FileChange::Write(bytes) => replace(path, bytes),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside the target, renamed over
/// it. A symlinked config (dotfile managers) is followed so the link stays a link, and an
/// existing file keeps its mode; a new one gets 0600.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let target = match fs_err::canonicalize(path) {
        Ok(target) => target,
        Err(err) if err.kind() == ErrorKind::NotFound => path.to_path_buf(),
        Err(err) => return Err(err.into()),
    };
    let mode = match fs_err::metadata(&target) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(err) if err.kind() == ErrorKind::NotFound => 0o600,
        Err(err) => return Err(err.into()),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let temp = target.with_file_name(format!(".{file_name}.banger-tmp"));
    {
        use std::io::Write as _;
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    // `mode` above is filtered by the umask; set it exactly.
    fs_err::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
    fs_err::rename(&temp, &target)?;
    Ok(())
}

/// One line per change, for the user.
fn describe(layout: &Layout, plan: &Plan, installing: bool) -> Vec<String> {
    let user = layout.user_config.display();
    let banger = layout.banger_config.display();
    let mut lines = Vec::new();
    match &plan.banger_config {
        FileChange::Keep => {}
        FileChange::Write(_) => lines.push(format!("wrote {banger}")),
        FileChange::Remove => lines.push(format!("removed {banger}")),
    }
    match &plan.user_config {
        FileChange::Keep => {}
        FileChange::Write(_) if installing => {
            lines.push(format!("added `{}` to {user}", layout.include_line()))
        }
        FileChange::Write(_) => lines.push(format!("removed banger's Include from {user}")),
        FileChange::Remove => lines.push(format!("removed {user} (nothing else was in it)")),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// install, install again, uninstall on a real (temporary) home directory.
    fn round_trip(original: Option<&[u8]>) {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(
            home.path(),
            &home.path().join(".config/banger"),
            Path::new("/usr/bin/banger"),
        );
        if let Some(bytes) = original {
            std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
            std::fs::write(&layout.user_config, bytes).unwrap();
        }
        let state = |layout: &Layout| {
            (
                read(&layout.user_config).unwrap(),
                read(&layout.banger_config).unwrap(),
            )
        };

        let (user, banger) = state(&layout);
        let plan = plan_install(&layout, user.as_deref(), banger.as_deref());
        apply(&layout, &plan).unwrap();
        let installed = state(&layout);
        let installed_user = installed.0.clone().unwrap();
        assert!(String::from_utf8_lossy(&installed_user).contains("Include "));
        assert!(installed.1.is_some());
        let mode = std::fs::metadata(&layout.user_config)
            .unwrap()
            .permissions()
            .mode();
        if original.is_none() {
            assert_eq!(mode & 0o777, 0o600);
        }

        let plan = plan_install(&layout, installed.0.as_deref(), installed.1.as_deref());
        assert!(plan.is_noop(), "second install must change nothing");

        let plan = plan_uninstall(&layout, installed.0.as_deref(), installed.1.as_deref());
        apply(&layout, &plan).unwrap();
        let (user, banger) = state(&layout);
        assert_eq!(banger, None);
        match original {
            Some(bytes) if !bytes.is_empty() => assert_eq!(user.as_deref(), Some(bytes)),
            _ => assert_eq!(user, None),
        }
    }

    #[test]
    fn round_trips_on_a_temporary_home() {
        round_trip(None);
        round_trip(Some(b"Host a\n  User x"));
        round_trip(Some(b"\xff\xfe not utf-8\nHost *\r\n"));
    }

    /// A dangling `~/.ssh/config` link (a dotfile manager's, its target not checked out)
    /// is refused, saying where it points; neither file is written and the link stays.
    #[test]
    fn a_dangling_symlinked_config_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(
            home.path(),
            &home.path().join(".config/banger"),
            Path::new("/usr/bin/banger"),
        );
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        let missing = home.path().join("dotfiles/ssh/config");
        std::os::unix::fs::symlink(&missing, &layout.user_config).unwrap();

        let user = read(&layout.user_config).unwrap();
        assert_eq!(user, None, "a dangling link reads as no file");
        let plan = plan_install(&layout, user.as_deref(), None);
        let error = apply(&layout, &plan).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("is a symbolic link to"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        let link = std::fs::symlink_metadata(&layout.user_config).unwrap();
        assert!(link.file_type().is_symlink(), "the link was replaced");
        assert!(!missing.exists(), "the link's target was created");
        assert!(
            !layout.banger_config.exists(),
            "banger's file was written anyway"
        );
    }

    #[test]
    fn a_symlinked_config_stays_a_symlink_and_keeps_its_mode() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::new(
            home.path(),
            &home.path().join(".config/banger"),
            Path::new("/usr/bin/banger"),
        );
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        let real = home.path().join("dotfiles-ssh-config");
        std::fs::write(&real, b"Host a\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&real, &layout.user_config).unwrap();

        let plan = plan_install(&layout, Some(b"Host a\n"), None);
        apply(&layout, &plan).unwrap();
        let link = std::fs::symlink_metadata(&layout.user_config).unwrap();
        assert!(link.file_type().is_symlink());
        let meta = std::fs::metadata(&real).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert!(
            std::fs::read_to_string(&real)
                .unwrap()
                .ends_with("Host a\n")
        );
    }
}
