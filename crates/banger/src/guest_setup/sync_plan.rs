//! `[[file_sync]]` on the host side: which files of the owner's home go where in the
//! guest. Reads the file system (resolving symlinks, looking at file heads) but writes
//! nothing; the result is a list of tar entries for `banger_tar::pack_entries`.
//!
//! Rules: a source resolves, after following symlinks, to inside the home, or it is
//! refused naming it. A private key (a file named `id_*` other than `*.pub`, or one whose
//! content starts with a PEM/OpenSSH/PuTTY private key header) is copied only when an
//! entry names it exactly, never as part of a directory. Inside a directory, a symlink is
//! copied as a symlink when it points inside the home and left out otherwise.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::config::FileSync;

/// What one sync copies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// `(host path, tar name)`: names are guest paths without the leading `/`.
    pub entries: Vec<(PathBuf, String)>,
    /// Guest directories that must exist before the stream is unpacked at `/`.
    pub parents: Vec<String>,
    /// One line per entry: `~/.npmrc -> /root/.npmrc`.
    pub synced: Vec<String>,
    /// What a directory entry left out, and why.
    pub left_out: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("file_sync: {entry} resolves to {}, outside your home {}; refusing to copy it", resolved.display(), home.display())]
    Outside {
        entry: String,
        resolved: PathBuf,
        home: PathBuf,
    },
    #[error("file_sync: {entry}: {message}")]
    Unreadable { entry: String, message: String },
}

/// Plans the copy of `entries` from `home`.
pub fn plan(home: &Path, entries: &[FileSync]) -> Result<SyncPlan, SyncError> {
    let unreadable = |entry: &str, err: std::io::Error| SyncError::Unreadable {
        entry: entry.to_string(),
        message: err.to_string(),
    };
    let real_home =
        std::fs::canonicalize(home).map_err(|e| unreadable(&home.display().to_string(), e))?;
    let mut plan = SyncPlan::default();
    for entry in entries {
        let lexical = match entry.source.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None if entry.source == "~" => home.to_path_buf(),
            None => home.join(&entry.source),
        };
        let resolved = std::fs::canonicalize(&lexical).map_err(|e| unreadable(&entry.source, e))?;
        if !resolved.starts_with(&real_home) || resolved == real_home {
            return Err(SyncError::Outside {
                entry: entry.source.clone(),
                resolved,
                home: real_home,
            });
        }
        let relative = lexical
            .strip_prefix(home)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .unwrap_or_else(|| resolved.strip_prefix(&real_home).unwrap_or(&resolved))
            .to_path_buf();
        let dest = match &entry.dest {
            Some(dest) => dest.trim_end_matches('/').to_string(),
            None => format!("/root/{}", relative.display()),
        };
        let name = dest.trim_start_matches('/').to_string();
        if let Some(parent) = Path::new(&dest).parent() {
            let parent = parent.display().to_string();
            if !plan.parents.contains(&parent) {
                plan.parents.push(parent);
            }
        }
        plan.synced.push(format!("{} -> {dest}", entry.source));
        plan.entries.push((resolved.clone(), name.clone()));
        if resolved.is_dir() {
            walk(&resolved, &name, &real_home, &mut plan)
                .map_err(|e| unreadable(&entry.source, e))?;
        }
    }
    Ok(plan)
}

fn walk(dir: &Path, name: &str, home: &Path, plan: &mut SyncPlan) -> std::io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        let child_name = format!("{name}/{}", child.file_name().to_string_lossy());
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_symlink() {
            match std::fs::canonicalize(&path) {
                Ok(target) if target.starts_with(home) => {
                    plan.entries.push((path, child_name));
                }
                _ => plan.left_out.push(format!(
                    "{} (a symlink to outside your home)",
                    path.display()
                )),
            }
        } else if kind.is_dir() {
            plan.entries.push((path.clone(), child_name.clone()));
            walk(&path, &child_name, home, plan)?;
        } else if kind.is_file() {
            if is_private_key(&path)? {
                plan.left_out.push(format!(
                    "{} (a private key; name it exactly to copy it)",
                    path.display()
                ));
            } else {
                plan.entries.push((path, child_name));
            }
        } else {
            plan.left_out.push(format!(
                "{} (not a file, directory or symlink)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// A private key by name (`id_*`, not `*.pub`) or by its first line.
pub fn is_private_key(path: &Path) -> std::io::Result<bool> {
    let named = path.file_name().is_some_and(|name| {
        let name = name.to_string_lossy();
        name.starts_with("id_") && !name.ends_with(".pub")
    });
    if named {
        return Ok(true);
    }
    let mut head = [0u8; 128];
    let mut file = std::fs::File::open(path)?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let head = String::from_utf8_lossy(&head[..read]);
    let first = head.lines().next().unwrap_or("");
    Ok(
        (first.starts_with("-----BEGIN ") && first.contains("PRIVATE KEY"))
            || first.starts_with("PuTTY-User-Key-File"),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn entry(source: &str, dest: Option<&str>) -> FileSync {
        FileSync {
            source: source.into(),
            dest: dest.map(str::to_string),
        }
    }

    #[test]
    fn files_and_directories_land_under_root_and_keys_stay_out_of_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join(".config/gh")).unwrap();
        std::fs::write(home.join(".npmrc"), "registry=x\n").unwrap();
        std::fs::write(home.join(".config/gh/hosts.yml"), "github.com:\n").unwrap();
        std::fs::write(home.join(".ssh/config"), "Host *\n").unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), "secret").unwrap();
        std::fs::write(home.join(".ssh/id_ed25519.pub"), "ssh-ed25519 AAAA").unwrap();
        std::fs::write(
            home.join(".ssh/deploy.pem"),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("outside"), "x").unwrap();
        symlink(tmp.path().join("outside"), home.join(".ssh/escape")).unwrap();
        symlink("config", home.join(".ssh/inside")).unwrap();

        let plan = plan(
            &home,
            &[
                entry("~/.npmrc", None),
                entry(".config/gh/hosts.yml", Some("/etc/gh/hosts.yml")),
                entry("~/.ssh", None),
                entry("~/.ssh/id_ed25519", None),
            ],
        )
        .unwrap();
        let names: Vec<&str> = plan.entries.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "root/.npmrc",
                "etc/gh/hosts.yml",
                "root/.ssh",
                "root/.ssh/config",
                "root/.ssh/id_ed25519.pub",
                "root/.ssh/inside",
                "root/.ssh/id_ed25519",
            ]
        );
        assert_eq!(plan.parents, ["/root", "/etc/gh", "/root/.ssh"]);
        assert_eq!(plan.left_out.len(), 3, "{:?}", plan.left_out);
        assert!(
            plan.left_out
                .iter()
                .any(|l| l.contains("deploy.pem") && l.contains("private key"))
        );
        assert!(
            plan.left_out
                .iter()
                .any(|l| l.contains("escape") && l.contains("outside"))
        );
        assert_eq!(plan.synced[0], "~/.npmrc -> /root/.npmrc");
    }

    #[test]
    fn sources_outside_the_home_are_refused_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(tmp.path().join("secret"), "x").unwrap();
        symlink(tmp.path().join("secret"), home.join(".link")).unwrap();
        let cases = ["~/.link", "/etc/hostname", "../secret", "~"];
        for source in cases {
            let err = plan(&home, &[entry(source, None)]).expect_err(source);
            assert!(
                matches!(&err, SyncError::Outside { entry: s, .. } if s == source)
                    || matches!(&err, SyncError::Unreadable { .. }),
                "{source}: {err}"
            );
            assert!(err.to_string().contains(source), "{err}");
        }
        let err = plan(&home, &[entry("~/.link", None)]).unwrap_err();
        assert!(err.to_string().contains("outside your home"), "{err}");
        let err = plan(&home, &[entry("~/missing", None)]).unwrap_err();
        assert!(matches!(err, SyncError::Unreadable { .. }), "{err}");
    }
}
