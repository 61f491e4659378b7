//! The golden `debian-bookworm` image: `mmdebstrap` (minbase + systemd, sshd, git, build
//! tools, docker) writes a tarball (in a user namespace for an ordinary user, plainly
//! as root), the tarball is configured as a stream ([`crate::tar_edit`]), and
//! `mkfs.ext4 -d` turns it into a 4 GiB sparse image. The pinned `mise` release
//! ([`crate::mise`], verified against its npm integrity) is added at `/usr/local/bin/mise`. No hook runs a shell: the .deb
//! cache uses mmdebstrap's built-in `sync-in`/`sync-out` special hooks.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use banger_exec::Cmd;
use banger_model::progress::ProgressSink;
use sha2::{Digest, Sha256};

use crate::apt::Apt;
use crate::catalog::{GuestInit, ImageEntry};
use crate::error::ImageError;
use crate::ext4::mkfs_from_tar;
use crate::mirror::{bootstrap_sources, read_host_sources};
use crate::recipe::BuildContext;
use crate::resolve_memo::lists_fingerprint;
use crate::store::{ImageManifest, PublishRequest, recipe_key};
use crate::tar_edit::{Removal, TarEdits, rewrite_tar};
use crate::tree::{Node, Tree};

/// Bump when the recipe changes in a way its inputs do not show.
pub const DEBIAN_RECIPE_VERSION: u32 = 2;
pub const DEBIAN_RELEASE: &str = "bookworm";
/// Apparent size of the image (sparse).
pub const DEBIAN_IMAGE_BYTES: u64 = 4 << 30;

/// Installed on top of minbase. udev matters: without it `dev-ttyS0.device` never
/// appears and boot waits 90 s for serial-getty.
pub const DEBIAN_PACKAGES: [&str; 15] = [
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "git",
    "ca-certificates",
    "curl",
    "iproute2",
    "procps",
    "sudo",
    "build-essential",
    "docker.io",
    "less",
    "kmod",
];

/// dpkg leaves these out while installing (mmdebstrap's documented size reduction).
const DPKG_OPTIONS: [&str; 7] = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-include=/usr/share/doc/*/changelog.Debian.*",
];

const SSH_KEYS_UNIT: &str = include_str!("../assets/debian/banger-ssh-keys.service");
const AGENT_UNIT: &str = include_str!("../assets/debian/banger-agent.service");
const READY_UNIT: &str = include_str!("../assets/debian/banger-ready.service");
const SSHD_DROP_IN: &str = include_str!("../assets/debian/sshd-banger.conf");

/// Units that only cost boot time in a disposable guest.
const MASKED_UNITS: [&str; 7] = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "e2scrub_reap.service",
    "systemd-timesyncd.service",
];

pub(crate) async fn build(
    ctx: &BuildContext<'_>,
    entry: &ImageEntry,
    progress: &dyn ProgressSink,
) -> Result<ImageManifest, ImageError> {
    progress.stage_started("resolve packages");
    let sources =
        bootstrap_sources(&read_host_sources(ctx.apt_dir), DEBIAN_RELEASE).ok_or_else(|| {
            ImageError::NoMirror {
                release: DEBIAN_RELEASE.to_string(),
                dir: ctx.apt_dir.to_path_buf(),
            }
        })?;
    let installs = resolve(ctx, &sources).await?;
    let mut inputs: Vec<String> = sources.clone();
    inputs.extend(installs.iter().cloned());
    inputs.push(format!("assets {}", assets_digest()));
    inputs.push(crate::mise::recipe_input());
    let key = recipe_key("debian-bookworm", DEBIAN_RECIPE_VERSION, &inputs);
    progress.stage_done(
        "resolve packages",
        Some(&format!("{} packages", installs.len())),
    );
    if let Some(manifest) = ctx.find(&key)? {
        return Ok(manifest);
    }

    progress.stage_started("fetch mise");
    let tarball = crate::mise::fetch_tarball(ctx.runner, &ctx.debs_dir.join("npm")).await?;
    let mise = tokio::task::spawn_blocking(move || crate::mise::binary_from_tarball(&tarball))
        .await
        .map_err(ImageError::Join)??;
    progress.stage_done("fetch mise", Some(crate::mise::MISE_VERSION));

    progress.stage_started("assemble rootfs");
    let staging = ctx.store.staging()?;
    let bootstrap_tar = staging.path().join("mmdebstrap.tar");
    run_mmdebstrap(ctx, &sources, &bootstrap_tar).await?;
    progress.stage_done("assemble rootfs", None);

    progress.stage_started("configure rootfs");
    let rootfs_tar = staging.path().join("rootfs.tar");
    let (input, output) = (bootstrap_tar.clone(), rootfs_tar.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let reader = std::io::BufReader::new(fs_err::File::open(&input)?);
        let writer = std::io::BufWriter::new(fs_err::File::create(&output)?);
        let mut edits = edits();
        edits
            .add
            .insert(crate::mise::MISE_GUEST_PATH, Node::file(0o755, mise));
        let (writer, stats) = rewrite_tar(reader, writer, &edits)?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        tracing::debug!(?stats, "configured the debian rootfs");
        fs_err::remove_file(&input)
    })
    .await
    .map_err(ImageError::Join)?
    .map_err(ImageError::io("cannot configure the debian rootfs tar"))?;
    progress.stage_done("configure rootfs", None);

    progress.stage_started("mkfs.ext4");
    let image = staging.path().join("image.ext4");
    mkfs_from_tar(ctx.runner, &rootfs_tar, &image, DEBIAN_IMAGE_BYTES).await?;
    fs_err::remove_file(&rootfs_tar)?;
    progress.stage_done("mkfs.ext4", None);

    let request = PublishRequest {
        name: entry.name.clone(),
        key,
        kernel: entry.kernel.clone(),
        init: GuestInit::Systemd,
        inputs: installs,
    };
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let manifest = store.publish(&image, request);
        drop(staging);
        manifest
    })
    .await
    .map_err(ImageError::Join)?
}

/// The package set a fresh install gets (`apt-get -s`), memoized while the apt lists and
/// the sources stay the same. Essential packages that nothing here depends on are not
/// listed; they change rarely and only with a point release, which changes others too.
async fn resolve(ctx: &BuildContext<'_>, sources: &[String]) -> Result<Vec<String>, ImageError> {
    let fingerprint = lists_fingerprint(ctx.lists_dir).map(|lists| {
        let mut hasher = Sha256::new();
        hasher.update(lists.as_bytes());
        for line in sources {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    });
    if let Some(fingerprint) = &fingerprint
        && let Some(installs) = ctx.memo.load::<Vec<String>>("debian-bookworm", fingerprint)
    {
        return Ok(installs);
    }
    let installs = Apt { runner: ctx.runner }
        .simulate_install(&DEBIAN_PACKAGES)
        .await?;
    if let Some(fingerprint) = &fingerprint
        && let Err(error) = ctx.memo.save("debian-bookworm", fingerprint, &installs)
    {
        tracing::warn!(%error, "cannot remember the debian package set");
    }
    Ok(installs)
}

/// True when this process runs as root (the owner of `/proc/self` is the effective uid).
fn running_as_root() -> bool {
    fs_err::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The mmdebstrap command line (pure, tested).
pub fn mmdebstrap_command(
    as_root: bool,
    sources: &[String],
    cache_root: &Path,
    output: &Path,
) -> Cmd {
    let archives = cache_root.join("var/cache/apt/archives");
    let mut cmd = Cmd::new("mmdebstrap")
        .arg("--variant=minbase")
        .arg(if as_root {
            "--mode=root"
        } else {
            "--mode=unshare"
        })
        .arg("--format=tar")
        .arg(format!("--include={}", DEBIAN_PACKAGES.join(",")))
        // Keep the essential packages' .debs in /var/cache/apt/archives until the
        // customize hook has copied them out.
        .arg("--skip=essential/unlink")
        // Built-in special hooks (no shell): seed apt's archive from banger's cache, and
        // save what was downloaded. `sync-in` targets `/` because the archive directory
        // does not exist yet at setup time.
        .arg(format!("--setup-hook=sync-in {} /", cache_root.display()))
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {}",
            archives.display()
        ))
        .timeout(Duration::from_secs(3600));
    for option in DPKG_OPTIONS {
        cmd = cmd.arg(format!("--dpkgopt={option}"));
    }
    cmd.arg(DEBIAN_RELEASE).arg(output).args(sources)
}

async fn run_mmdebstrap(
    ctx: &BuildContext<'_>,
    sources: &[String],
    output: &Path,
) -> Result<(), ImageError> {
    let cache_root = ctx.debs_dir.join("mmdebstrap-root");
    let archives = cache_root.join("var/cache/apt/archives");
    fs_err::create_dir_all(&archives)?;
    // sync-in copies these directories' modes into the new root filesystem.
    for dir in [
        &cache_root,
        &cache_root.join("var"),
        &cache_root.join("var/cache"),
        &cache_root.join("var/cache/apt"),
        &archives,
    ] {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let cmd = mmdebstrap_command(running_as_root(), sources, &cache_root, output);
    ctx.runner
        .run(&cmd)
        .await
        .map_err(ImageError::command("mmdebstrap"))?;
    Ok(())
}

/// What the configure step changes in the mmdebstrap tarball.
pub fn edits() -> TarEdits {
    let mut add = Tree::new();
    add.insert("etc/hostname", Node::file(0o644, "banger\n"));
    add.insert(
        "etc/hosts",
        Node::file(
            0o644,
            "127.0.0.1 localhost\n127.0.1.1 banger\n::1 localhost ip6-localhost ip6-loopback\n",
        ),
    );
    // The initramfs mounts / read-write; nothing else to mount.
    add.insert("etc/fstab", Node::file(0o644, ""));
    // Empty: systemd generates a fresh id on each VM's first boot.
    add.insert("etc/machine-id", Node::file(0o444, ""));
    add.insert("etc/ssh/sshd_config.d", Node::dir(0o755));
    add.insert(
        "etc/ssh/sshd_config.d/banger.conf",
        Node::file(0o644, SSHD_DROP_IN),
    );
    add.insert("root/.ssh", Node::dir(0o700));
    add.insert(
        "etc/systemd/system/multi-user.target.wants",
        Node::dir(0o755),
    );
    for (unit, text) in [
        ("banger-ssh-keys.service", SSH_KEYS_UNIT),
        ("banger-agent.service", AGENT_UNIT),
        ("banger-ready.service", READY_UNIT),
    ] {
        add.insert(
            &format!("etc/systemd/system/{unit}"),
            Node::file(0o644, text),
        );
        add.insert(
            &format!("etc/systemd/system/multi-user.target.wants/{unit}"),
            Node::symlink(format!("/etc/systemd/system/{unit}")),
        );
    }
    for unit in MASKED_UNITS {
        add.insert(
            &format!("etc/systemd/system/{unit}"),
            Node::symlink("/dev/null"),
        );
    }
    TarEdits {
        remove: vec![
            // Each VM generates its own host keys at first boot (banger-ssh-keys.service).
            Removal::Prefix("etc/ssh/ssh_host_".to_string()),
            Removal::Path("var/lib/dbus/machine-id".to_string()),
            // dockerd starts on first use through docker.socket instead of at every boot.
            Removal::Path("etc/systemd/system/multi-user.target.wants/docker.service".to_string()),
            Removal::Path(
                "etc/systemd/system/multi-user.target.wants/containerd.service".to_string(),
            ),
        ],
        add,
    }
}

fn assets_digest() -> String {
    let mut hasher = Sha256::new();
    for asset in [SSH_KEYS_UNIT, AGENT_UNIT, READY_UNIT, SSHD_DROP_IN] {
        hasher.update(asset.len().to_le_bytes());
        hasher.update(asset.as_bytes());
    }
    for item in DEBIAN_PACKAGES
        .iter()
        .chain(&DPKG_OPTIONS)
        .chain(&MASKED_UNITS)
    {
        hasher.update(item.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Kind;

    #[test]
    fn mmdebstrap_command_line() {
        let sources = vec!["deb http://m/debian bookworm main".to_string()];
        let cmd = mmdebstrap_command(
            false,
            &sources,
            Path::new("/c/root"),
            Path::new("/s/out.tar"),
        );
        let args: Vec<String> = cmd
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--mode=unshare".to_string()));
        assert!(args.contains(&"--setup-hook=sync-in /c/root /".to_string()));
        assert!(
            args.contains(
                &"--customize-hook=sync-out /var/cache/apt/archives /c/root/var/cache/apt/archives"
                    .to_string()
            )
        );
        assert!(
            args.iter()
                .any(|a| a.starts_with("--include=systemd,") && a.contains("docker.io"))
        );
        assert_eq!(
            &args[args.len() - 3..],
            [
                "bookworm",
                "/s/out.tar",
                "deb http://m/debian bookworm main"
            ]
        );
        // No hook runs a shell command: only mmdebstrap's special hooks.
        for arg in args.iter().filter(|a| a.contains("-hook=")) {
            let command = arg.split_once('=').unwrap().1;
            assert!(
                command.starts_with("sync-in ") || command.starts_with("sync-out "),
                "{arg}"
            );
        }
        let root = mmdebstrap_command(true, &sources, Path::new("/c"), Path::new("/o"));
        assert!(root.get_args().iter().any(|a| a == "--mode=root"));
    }

    #[test]
    fn edits_enable_units_and_drop_host_keys() {
        let edits = edits();
        let kind = |p: &str| edits.add.get(p).map(|n| n.kind.clone());
        assert_eq!(
            kind("etc/systemd/system/multi-user.target.wants/banger-ssh-keys.service"),
            Some(Kind::Symlink(
                "/etc/systemd/system/banger-ssh-keys.service".into()
            ))
        );
        assert_eq!(
            kind("etc/systemd/system/apt-daily.timer"),
            Some(Kind::Symlink("/dev/null".into()))
        );
        assert_eq!(kind("etc/machine-id"), Some(Kind::File(Vec::new())));
        assert_eq!(edits.add.get("root/.ssh").unwrap().meta.perm, 0o700);
        assert!(
            SSH_KEYS_UNIT.contains("Before=ssh.service") && SSH_KEYS_UNIT.contains("-t ed25519")
        );
        assert!(SSHD_DROP_IN.contains("PermitRootLogin prohibit-password"));
        assert!(
            edits
                .remove
                .contains(&Removal::Prefix("etc/ssh/ssh_host_".into()))
        );
    }
}
