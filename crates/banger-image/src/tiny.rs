//! The `tiny` image: busybox-static (init, shell, coreutils, ip, wget), dropbear (sshd)
//! and git, from the Depends closure of those three packages (perl and git's manual
//! left out: git's core commands do not need them). Every package's data tar is read
//! into one in-memory tree (merged-/usr by path rewriting, docs dropped), busybox applet
//! links and a handful of config files are added, and the tree becomes one tar for
//! `mkfs.ext4 -d`. No maintainer scripts run, nothing is unpacked on disk.

use std::path::Path;
use std::time::Duration;

use banger_exec::Cmd;
use banger_model::progress::ProgressSink;
use sha2::{Digest, Sha256};

use crate::apt::{Apt, Deny};
use crate::apt_query::DebRef;
use crate::catalog::{GuestInit, ImageEntry};
use crate::deb::{add_data_tar, read_file_from_data_tar};
use crate::error::ImageError;
use crate::ext4::mkfs_from_tar;
use crate::recipe::BuildContext;
use crate::resolve_memo::lists_fingerprint;
use crate::store::{ImageManifest, PublishRequest, recipe_key};
use crate::tree::{Kind, Meta, Node, Tree};
use crate::usrmerge::{MERGED_DIRS, fold_path, normalize};

/// Bump when the recipe changes in a way its inputs do not show.
pub const TINY_RECIPE_VERSION: u32 = 1;

/// Apparent size of the image (sparse; ~75 MB are allocated).
pub const TINY_IMAGE_BYTES: u64 = 512 << 20;

/// The packages whose closure makes the image.
pub const TINY_ROOTS: [&str; 3] = ["busybox-static", "dropbear-bin", "git"];

/// Not followed: perl and what only perl-written git helpers need, the manual, and
/// packaging tools a guest without dpkg has no use for.
pub const TINY_DENY: [Deny; 7] = [
    Deny::Prefix("perl"),
    Deny::Prefix("libperl"),
    Deny::Exact("liberror-perl"),
    Deny::Exact("git-man"),
    Deny::Exact("dpkg"),
    Deny::Exact("tar"),
    Deny::Exact("debconf"),
];

const INITTAB: &str = include_str!("../assets/tiny/inittab");
const RCS: &str = include_str!("../assets/tiny/rcS");
const PROFILE: &str = include_str!("../assets/tiny/profile");

pub(crate) async fn build(
    ctx: &BuildContext<'_>,
    entry: &ImageEntry,
    progress: &dyn ProgressSink,
) -> Result<ImageManifest, ImageError> {
    let apt = Apt { runner: ctx.runner };

    progress.stage_started("resolve packages");
    let debs = resolve(ctx, &apt).await?;
    let mut inputs: Vec<String> = debs
        .iter()
        .map(|deb| format!("{} {}", deb.filename, deb.sha256))
        .collect();
    inputs.push(format!("assets {}", assets_digest()));
    let key = recipe_key("tiny", TINY_RECIPE_VERSION, &inputs);
    progress.stage_done(
        "resolve packages",
        Some(&format!("{} packages", debs.len())),
    );
    if let Some(manifest) = ctx.find(&key)? {
        return Ok(manifest);
    }

    let staging = ctx.store.staging()?;
    let tarball = staging.path().join("rootfs.tar");
    assemble(ctx, &debs, &tarball, staging.path(), progress).await?;

    progress.stage_started("mkfs.ext4");
    let image = staging.path().join("image.ext4");
    mkfs_from_tar(ctx.runner, &tarball, &image, TINY_IMAGE_BYTES).await?;
    fs_err::remove_file(&tarball)?;
    progress.stage_done("mkfs.ext4", None);

    let request = PublishRequest {
        name: entry.name.clone(),
        key,
        kernel: entry.kernel.clone(),
        init: GuestInit::Busybox,
        inputs: debs
            .iter()
            .map(|deb| format!("{}={}", deb.package(), deb.version()))
            .collect(),
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

/// Downloads the packages and writes the tiny root filesystem as one tar at `tarball`
/// (what `mkfs.ext4 -d` reads); `scratch` holds temporary files.
async fn assemble(
    ctx: &BuildContext<'_>,
    debs: &[DebRef],
    tarball: &Path,
    scratch: &Path,
    progress: &dyn ProgressSink,
) -> Result<(), ImageError> {
    let apt = Apt { runner: ctx.runner };
    progress.stage_started("download packages");
    let deb_paths = apt.fetch_debs(debs, ctx.debs_dir).await?;
    progress.stage_done("download packages", None);

    progress.stage_started("assemble rootfs");
    let mut data_tars = Vec::with_capacity(deb_paths.len());
    for path in &deb_paths {
        data_tars.push(apt.data_tar(path).await?);
    }
    let applets = busybox_applets(ctx, &deb_paths, &data_tars, scratch).await?;
    let tar_path = tarball.to_path_buf();
    let tree_bytes = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut tree = Tree::new();
        for data_tar in &data_tars {
            add_data_tar(&mut tree, data_tar.as_slice())?;
        }
        drop(data_tars);
        configure(&mut tree, &applets);
        let file = std::io::BufWriter::new(fs_err::File::create(&tar_path)?);
        tree.write_tar(file)?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(tree.content_bytes())
    })
    .await
    .map_err(ImageError::Join)?
    .map_err(ImageError::io("cannot assemble the tiny rootfs"))?;
    progress.stage_done(
        "assemble rootfs",
        Some(&format!("{} MiB of files", tree_bytes >> 20)),
    );
    Ok(())
}

/// The tiny root filesystem as a tar at `out`, without making an image (tests and
/// benchmarks build OCI images from it).
pub(crate) async fn export_tar(
    ctx: &BuildContext<'_>,
    out: &Path,
    progress: &dyn ProgressSink,
) -> Result<(), ImageError> {
    let apt = Apt { runner: ctx.runner };
    progress.stage_started("resolve packages");
    let debs = resolve(ctx, &apt).await?;
    progress.stage_done(
        "resolve packages",
        Some(&format!("{} packages", debs.len())),
    );
    let scratch = ctx.store.staging()?;
    assemble(ctx, &debs, out, scratch.path(), progress).await
}

/// The exact .debs: memoized while the apt lists are unchanged.
async fn resolve(ctx: &BuildContext<'_>, apt: &Apt<'_>) -> Result<Vec<DebRef>, ImageError> {
    let fingerprint = lists_fingerprint(ctx.lists_dir);
    if let Some(fingerprint) = &fingerprint
        && let Some(debs) = ctx.memo.load::<Vec<DebRef>>("tiny", fingerprint)
    {
        return Ok(debs);
    }
    let closure = apt.depends_closure(&TINY_ROOTS, &TINY_DENY).await?;
    let debs = apt.deb_refs(&closure).await?;
    if let Some(fingerprint) = &fingerprint
        && let Err(error) = ctx.memo.save("tiny", fingerprint, &debs)
    {
        tracing::warn!(%error, "cannot remember the tiny package set");
    }
    Ok(debs)
}

/// What changes the image besides packages: the files banger writes into it.
fn assets_digest() -> String {
    let mut hasher = Sha256::new();
    for asset in [INITTAB, RCS, PROFILE] {
        hasher.update(asset.len().to_le_bytes());
        hasher.update(asset.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// busybox's applet paths (`bin/ash`, `usr/bin/[`...), from `busybox --list-full` run on
/// the package's own static binary (it runs on any x86_64 host).
async fn busybox_applets(
    ctx: &BuildContext<'_>,
    deb_paths: &[std::path::PathBuf],
    data_tars: &[Vec<u8>],
    scratch: &Path,
) -> Result<Vec<String>, ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let index = deb_paths
        .iter()
        .position(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("busybox-static_"))
        })
        .ok_or_else(|| ImageError::MissingDeb {
            package: "busybox-static".to_string(),
        })?;
    let busybox = read_file_from_data_tar(data_tars[index].as_slice(), "bin/busybox")
        .map_err(ImageError::io(format!(
            "cannot read {}",
            deb_paths[index].display()
        )))?
        .ok_or_else(|| ImageError::FileNotInDeb {
            deb: deb_paths[index].clone(),
            file: "bin/busybox".to_string(),
        })?;
    let binary = scratch.join("busybox");
    fs_err::write(&binary, busybox)?;
    fs_err::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    let out = ctx
        .runner
        .run(
            &Cmd::new(&binary)
                .arg("--list-full")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .map_err(ImageError::command("busybox --list-full"))?;
    fs_err::remove_file(&binary)?;
    Ok(out
        .stdout_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Adds everything the packages do not provide: merged-/usr links, busybox applets,
/// users, init configuration. Pure, so the layout is tested without apt.
pub fn configure(tree: &mut Tree, applets: &[String]) {
    // busybox applet links, never over something a package installed (git, dropbear…).
    for applet in applets {
        let path = fold_path(&normalize(applet));
        if !path.is_empty() && !tree.contains(&path) {
            tree.insert(&path, Node::symlink("/bin/busybox"));
        }
    }
    if !tree.contains("usr/sbin/init") {
        tree.insert("usr/sbin/init", Node::symlink("/bin/busybox"));
    }
    for dir in MERGED_DIRS {
        let target = format!("usr/{dir}");
        if !matches!(
            tree.get(&target),
            Some(Node {
                kind: Kind::Dir,
                ..
            })
        ) {
            tree.insert(&target, Node::dir(0o755));
        }
        tree.insert(dir, Node::symlink(target));
    }
    for (dir, perm) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("mnt", 0o755),
        ("home", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
        ("etc/dropbear", 0o755),
        ("etc/init.d", 0o755),
        ("var/log", 0o755),
        ("var/tmp", 0o1777),
        ("usr/local/bin", 0o755),
        ("usr/local/sbin", 0o755),
    ] {
        tree.insert(dir, Node::dir(perm));
    }
    let files: [(&str, u32, &str); 9] = [
        (
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        // `*`: no password login, yet not "locked" (dropbear refuses `!` accounts).
        (
            "etc/shadow",
            0o640,
            "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        ),
        (
            "etc/group",
            0o644,
            "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
        ),
        ("etc/shells", 0o644, "/bin/sh\n"),
        ("etc/hostname", 0o644, "banger\n"),
        ("etc/hosts", 0o644, "127.0.0.1 localhost\n::1 localhost\n"),
        ("etc/inittab", 0o644, INITTAB),
        ("etc/init.d/rcS", 0o755, RCS),
        ("etc/profile", 0o644, PROFILE),
    ];
    for (path, perm, content) in files {
        tree.insert(
            path,
            Node {
                kind: Kind::File(content.as_bytes().to_vec()),
                meta: Meta::root(perm),
            },
        );
    }
    // With an nsswitch.conf the static busybox's wget segfaults (static glibc dlopen()ing
    // NSS modules); glibc's built-in defaults are what dropbear and git need.
    tree.remove("etc/nsswitch.conf");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_links_applets_without_clobbering() {
        let mut tree = Tree::new();
        tree.insert("usr/bin/busybox", Node::file(0o755, "BB"));
        tree.insert("usr/bin/git", Node::file(0o755, "GIT"));
        tree.insert("usr/sbin/dropbear", Node::file(0o755, "DB"));
        tree.insert("etc/nsswitch.conf", Node::file(0o644, "passwd: files"));
        let applets: Vec<String> = [
            "bin/sh",
            "bin/ash",
            "usr/bin/git",
            "sbin/init",
            "usr/sbin/dropbear",
            "usr/bin/[",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        configure(&mut tree, &applets);
        let kind = |p: &str| tree.get(p).map(|n| n.kind.clone());
        assert_eq!(
            kind("usr/bin/sh"),
            Some(Kind::Symlink("/bin/busybox".into()))
        );
        assert_eq!(
            kind("usr/bin/["),
            Some(Kind::Symlink("/bin/busybox".into()))
        );
        assert_eq!(
            kind("usr/sbin/init"),
            Some(Kind::Symlink("/bin/busybox".into()))
        );
        assert_eq!(kind("usr/bin/git"), Some(Kind::File(b"GIT".to_vec())));
        assert_eq!(kind("usr/sbin/dropbear"), Some(Kind::File(b"DB".to_vec())));
        for dir in MERGED_DIRS {
            assert_eq!(
                kind(dir),
                Some(Kind::Symlink(format!("usr/{dir}"))),
                "{dir}"
            );
            assert_eq!(kind(&format!("usr/{dir}")), Some(Kind::Dir), "{dir}");
        }
        assert_eq!(kind("etc/nsswitch.conf"), None);
        assert!(tree.get("usr/bin/busybox").is_some());
        let shadow = tree.get("etc/shadow").unwrap();
        assert_eq!(
            (shadow.meta.perm, shadow.meta.uid, shadow.meta.gid),
            (0o640, 0, 0)
        );
        assert!(matches!(&shadow.kind, Kind::File(c) if c.starts_with(b"root:*:")));
        assert_eq!(tree.get("tmp").unwrap().meta.perm, 0o1777);
        assert_eq!(tree.get("root/.ssh").unwrap().meta.perm, 0o700);
        let rcs = tree.get("etc/init.d/rcS").unwrap();
        assert_eq!(rcs.meta.perm, 0o755);
        assert!(
            matches!(&rcs.kind, Kind::File(c) if String::from_utf8_lossy(c).contains("BANGER-READY"))
        );
    }

    #[test]
    fn rcs_starts_the_agent_only_when_present() {
        assert!(RCS.contains("if [ -x /usr/local/sbin/banger-agent ]"));
        assert!(RCS.contains("dropbear -R -s -p 22"));
    }
}
