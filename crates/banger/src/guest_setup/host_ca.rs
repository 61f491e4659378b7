//! `--host-ca`: the host's extra CA certificates (a directory's `*.crt`, or one file) and
//! the guest command that trusts them.

use std::path::{Path, PathBuf};

/// Where the certificates go in the guest (Debian's directory for local CAs).
pub const GUEST_DIR: &str = "/usr/local/share/ca-certificates/banger";

/// The certificates under `path`: `path` itself when it is a file, else every `*.crt`
/// under it (as `update-ca-certificates` reads the directory). Each must hold a PEM
/// certificate. Returns `(host file, tar name)` pairs for the guest directory.
pub fn collect(path: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut files = Vec::new();
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        walk(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    } else {
        files.push(path.to_path_buf());
    }
    if files.is_empty() {
        return Err(format!("no certificates (*.crt) in {}", path.display()));
    }
    let mut entries = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{} holds no PEM certificate", file.display()));
        }
        let stem = file
            .file_stem()
            .map_or_else(|| "ca".to_string(), |s| s.to_string_lossy().into_owned());
        let name = format!("{}/{i:02}-{stem}.crt", GUEST_DIR.trim_start_matches('/'));
        entries.push((file.clone(), name));
    }
    Ok(entries)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "crt") && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// The guest argv that adds the copied certificates to the trust store:
/// `update-ca-certificates` where the guest has it, else each certificate appended once
/// to `/etc/ssl/certs/ca-certificates.crt`.
pub fn guest_argv() -> Vec<String> {
    let script = format!(
        r#"set -e
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Not /tmp: on a guest still booting, systemd may mount a tmpfs over /tmp between
# update-ca-certificates' mktemp and its write (seen: "cannot open /tmp/ca-certificates.tmp.*").
mkdir -p /var/tmp
export TMPDIR=/var/tmp
if command -v update-ca-certificates >/dev/null 2>&1; then
  update-ca-certificates >/dev/null
else
  mkdir -p /etc/ssl/certs
  bundle=/etc/ssl/certs/ca-certificates.crt
  touch "$bundle"
  for f in {GUEST_DIR}/*.crt; do
    mark=$(sed -n 2p "$f")
    grep -qF "$mark" "$bundle" || cat "$f" >> "$bundle"
  done
fi"#
    );
    vec!["sh".into(), "-c".into(), script]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_directory_gives_its_crt_files_and_a_file_itself() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("corp.crt"), PEM).unwrap();
        std::fs::write(tmp.path().join("sub/proxy.crt"), PEM).unwrap();
        std::fs::write(tmp.path().join("README"), "x").unwrap();
        let names: Vec<String> = collect(tmp.path())
            .unwrap()
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(
            names,
            [
                "usr/local/share/ca-certificates/banger/00-corp.crt",
                "usr/local/share/ca-certificates/banger/01-proxy.crt"
            ]
        );
        let one = collect(&tmp.path().join("corp.crt")).unwrap();
        assert_eq!(one.len(), 1);
        std::fs::write(tmp.path().join("bad.crt"), "nope").unwrap();
        assert!(collect(tmp.path()).unwrap_err().contains("bad.crt"));
        let empty = tempfile::tempdir().unwrap();
        assert!(
            collect(empty.path())
                .unwrap_err()
                .contains("no certificates")
        );
    }
}
