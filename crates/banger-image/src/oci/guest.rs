//! What an imported container image needs to boot as a VM, added to its tree before the
//! ext4 is made: banger's static busybox and init script under `/usr/lib/banger/`, the
//! image's environment as `/etc/banger/image.env`, the mount points and root's home,
//! minimal `passwd`/`group` entries for root when the image has none, and `/sbin/init`
//! pointing at banger's init unless the image's own init is systemd (which then starts
//! the agent from the unit the VM service installs). The agent itself and root's
//! authorized_keys are added per VM by the VM service, as for every image. Pure.

use crate::catalog::GuestInit;
use crate::oci::paths;
use crate::tree::{Kind, Meta, Node, Tree};

pub const BANGER_DIR: &str = "usr/lib/banger";
pub const BUSYBOX_PATH: &str = "usr/lib/banger/busybox";
pub const INIT_PATH: &str = "usr/lib/banger/init";
pub const ENV_PATH: &str = "etc/banger/image.env";
pub const INIT_SCRIPT: &str = include_str!("../../assets/oci/init");

/// What the guest setup decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSetup {
    pub init: GuestInit,
    /// What was there before, when banger's init replaced it.
    pub replaced_init: Option<String>,
}

/// Adds banger's init, busybox and the image's environment to `tree`.
pub fn prepare(tree: &mut Tree, busybox: &[u8], env: &[String]) -> GuestSetup {
    for (dir, perm) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("var/log", 0o755),
        ("etc/banger", 0o755),
        (BANGER_DIR, 0o755),
    ] {
        ensure_dir(tree, dir, perm);
    }
    // root's home: keep the image's if it has one, make sure ssh can use it.
    let root_home = real_path(tree, "root").unwrap_or_else(|| "root".to_string());
    if !matches!(tree.get(&root_home), Some(n) if n.kind == Kind::Dir) {
        tree.insert(&root_home, Node::dir(0o700));
    }
    tree.insert(BUSYBOX_PATH, Node::file(0o755, busybox.to_vec()));
    tree.insert(INIT_PATH, Node::file(0o755, INIT_SCRIPT));
    tree.insert(ENV_PATH, Node::file(0o644, env_script(env)));
    ensure_root_account(tree);

    let init_path = real_path(tree, "sbin/init").unwrap_or_else(|| "sbin/init".to_string());
    let existing = tree.get(&init_path).map(|node| node.kind.clone());
    match existing {
        Some(Kind::Symlink(target)) if target.contains("systemd") => GuestSetup {
            init: GuestInit::Systemd,
            replaced_init: None,
        },
        other => {
            let replaced_init = match other {
                Some(Kind::Symlink(target)) => Some(format!("/sbin/init -> {target}")),
                Some(_) => Some("/sbin/init".to_string()),
                None => None,
            };
            tree.insert(&init_path, Node::symlink(format!("/{INIT_PATH}")));
            GuestSetup {
                init: GuestInit::Busybox,
                replaced_init,
            }
        }
    }
}

/// `path` with its parent directories resolved through the tree's symlinks, so a write
/// to `sbin/init` lands in `usr/sbin/init` on a merged-/usr image. `None` when the
/// parents leave the image (then banger writes the plain path, replacing the link).
fn real_path(tree: &Tree, path: &str) -> Option<String> {
    let parts: Vec<String> = path.split('/').map(str::to_string).collect();
    let (name, dirs) = parts.split_last()?;
    let dir = paths::resolve_dir(tree, dirs).ok()?;
    Some(paths::join(&dir, name))
}

fn ensure_dir(tree: &mut Tree, path: &str, perm: u32) {
    let real = real_path(tree, path).unwrap_or_else(|| path.to_string());
    if !matches!(tree.get(&real), Some(n) if n.kind == Kind::Dir) {
        tree.insert(&real, Node::dir(perm));
    }
}

/// `export KEY='value'` lines for the image's `KEY=value` environment.
pub fn env_script(env: &[String]) -> String {
    let mut script =
        String::from("# The image's environment (from its OCI config), set by banger's init.\n");
    for pair in env {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let valid = !key.is_empty()
            && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            continue;
        }
        script.push_str(&format!(
            "export {key}='{}'\n",
            value.replace('\'', "'\\''")
        ));
    }
    script
}

/// Root must exist for the agent's users and ssh; images built `FROM scratch` have no
/// account database at all.
fn ensure_root_account(tree: &mut Tree) {
    let shell = if tree.contains("bin/sh") || tree.contains("usr/bin/sh") {
        "/bin/sh"
    } else {
        "/usr/lib/banger/busybox"
    };
    let text = |tree: &Tree, path: &str| match tree.get(path).map(|n| &n.kind) {
        Some(Kind::File(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(Kind::Spilled { .. }) => None,
        _ => Some(String::new()),
    };
    let passwd = real_path(tree, "etc/passwd").unwrap_or_else(|| "etc/passwd".into());
    // A passwd from the layers (Spilled) is the image's own: kept as it is.
    if let Some(existing) = text(tree, &passwd)
        && !existing.lines().any(|l| l.starts_with("root:"))
    {
        let content = format!("root:x:0:0:root:/root:{shell}\n{existing}");
        tree.insert(&passwd, Node::file(0o644, content));
        let group = real_path(tree, "etc/group").unwrap_or_else(|| "etc/group".into());
        if !tree.contains(&group) {
            tree.insert(&group, Node::file(0o644, "root:x:0:\n"));
        }
        let shadow = real_path(tree, "etc/shadow").unwrap_or_else(|| "etc/shadow".into());
        if !tree.contains(&shadow) {
            tree.insert(
                &shadow,
                Node {
                    kind: Kind::File(b"root:*:19000:0:99999:7:::\n".to_vec()),
                    meta: Meta::root(0o640),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_images_get_init_accounts_and_mount_points() {
        let mut tree = Tree::new();
        tree.insert("app/server", Node::file(0o755, "bin"));
        let setup = prepare(
            &mut tree,
            b"BUSYBOX",
            &["PATH=/app".into(), "MSG=it's".into()],
        );
        assert_eq!(
            setup,
            GuestSetup {
                init: GuestInit::Busybox,
                replaced_init: None
            }
        );
        assert_eq!(
            tree.get("sbin/init").map(|n| n.kind.clone()),
            Some(Kind::Symlink("/usr/lib/banger/init".into()))
        );
        assert_eq!(tree.get("tmp").unwrap().meta.perm, 0o1777);
        assert_eq!(tree.get("root").unwrap().meta.perm, 0o700);
        assert!(
            matches!(&tree.get("etc/passwd").unwrap().kind, Kind::File(p) if p.starts_with(b"root:x:0:0:root:/root:/usr/lib/banger/busybox\n"))
        );
        assert!(matches!(&tree.get(ENV_PATH).unwrap().kind, Kind::File(e)
            if String::from_utf8_lossy(e).contains("export PATH='/app'\nexport MSG='it'\\''s'\n")));
        assert_eq!(tree.get(BUSYBOX_PATH).unwrap().meta.perm, 0o755);
    }

    #[test]
    fn merged_usr_images_keep_their_links_and_systemd_stays() {
        let mut tree = Tree::new();
        tree.insert("usr/sbin", Node::dir(0o755));
        tree.insert("sbin", Node::symlink("usr/sbin"));
        tree.insert("bin/sh", Node::file(0o755, "sh"));
        tree.insert("usr/sbin/init", Node::symlink("/lib/systemd/systemd"));
        let setup = prepare(&mut tree, b"BB", &[]);
        assert_eq!(setup.init, GuestInit::Systemd);
        assert_eq!(
            tree.get("sbin").unwrap().kind,
            Kind::Symlink("usr/sbin".into())
        );

        let mut tree = Tree::new();
        tree.insert("usr/sbin", Node::dir(0o755));
        tree.insert("sbin", Node::symlink("usr/sbin"));
        tree.insert("usr/sbin/init", Node::symlink("/bin/busybox"));
        let setup = prepare(&mut tree, b"BB", &[]);
        assert_eq!(setup.init, GuestInit::Busybox);
        assert_eq!(
            setup.replaced_init.as_deref(),
            Some("/sbin/init -> /bin/busybox")
        );
        assert_eq!(
            tree.get("usr/sbin/init").unwrap().kind,
            Kind::Symlink("/usr/lib/banger/init".into())
        );
        assert_eq!(
            tree.get("sbin").unwrap().kind,
            Kind::Symlink("usr/sbin".into())
        );
    }

    #[test]
    fn env_lines_skip_invalid_keys() {
        let script = env_script(&[
            "A=1".into(),
            "1BAD=x".into(),
            "NOEQUALS".into(),
            "B_2=a=b".into(),
        ]);
        assert!(
            script.ends_with("export A='1'\nexport B_2='a=b'\n"),
            "{script}"
        );
    }
}
