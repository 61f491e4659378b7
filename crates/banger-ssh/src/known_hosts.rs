//! banger's known_hosts file, `<config>/ssh/known_hosts`: the host keys of its guests,
//! recorded when a guest first boots, so ssh can check them strictly instead of trusting
//! whatever answers (`StrictHostKeyChecking=no`). The text editing is pure
//! ([`edit`]); this file adds the I/O: an exclusive lock so concurrent updates (two VMs
//! booting) cannot lose each other's entries, and a write through a temporary file and a
//! rename so ssh never reads half a file.
//!
//! Methods block (file lock and small file I/O); async callers wrap them in
//! `spawn_blocking`.

pub mod edit;

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::SshError;
use crate::key_line::parse_key_line;
use crate::keypair::write_atomically;
use crate::paths::SshPaths;

/// banger's known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file under banger's config directory.
    pub fn new(config_dir: &Path) -> KnownHosts {
        KnownHosts::at(SshPaths::new(config_dir).known_hosts_file)
    }

    /// A known_hosts file at any path.
    pub fn at(path: PathBuf) -> KnownHosts {
        KnownHosts { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `host_key_line` (`<type> <base64> [comment]`) for `host_patterns` (e.g.
    /// `["web.vm", "172.30.0.5"]`), replacing any earlier entries for those names: a
    /// re-created VM has a new key. Names are stored lowercase.
    pub fn record(&self, host_patterns: &[String], host_key_line: &str) -> Result<(), SshError> {
        if host_patterns.is_empty() {
            return Err(SshError::NoHostPatterns);
        }
        let mut names = Vec::with_capacity(host_patterns.len());
        for pattern in host_patterns {
            if !edit::validate_pattern(pattern) {
                return Err(SshError::InvalidHostPattern {
                    pattern: pattern.clone(),
                });
            }
            names.push(pattern.to_ascii_lowercase());
        }
        let key =
            parse_key_line(host_key_line).map_err(|source| SshError::InvalidHostKey { source })?;
        self.update(|existing| Some(edit::record(existing, &names, &key.to_line())))
    }

    /// Removes every entry for `name` (a deleted VM). Returns whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool, SshError> {
        let names = [name.to_ascii_lowercase()];
        let mut removed = false;
        self.update(|existing| {
            let (text, changed) = edit::remove(existing, &names);
            removed = changed;
            changed.then_some(text)
        })?;
        Ok(removed)
    }

    /// The keys (`<type> <base64>`) recorded for `name`.
    pub fn keys_for(&self, name: &str) -> Result<Vec<String>, SshError> {
        Ok(edit::keys_for(&self.read()?, name))
    }

    fn wrap(&self) -> impl Fn(std::io::Error) -> SshError + '_ {
        |source| SshError::KnownHosts {
            path: self.path.clone(),
            source,
        }
    }

    /// The file's bytes; empty when it does not exist yet.
    fn read(&self) -> Result<Vec<u8>, SshError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(bytes),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(self.wrap()(err)),
        }
    }

    /// Read-modify-write under the lock. `change` returns None to leave the file alone.
    fn update(&self, change: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Result<(), SshError> {
        let _lock = self.lock()?;
        let existing = self.read()?;
        let Some(text) = change(&existing) else {
            return Ok(());
        };
        let mode = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.permissions().mode() & 0o7777,
            Err(_) => 0o600,
        };
        write_atomically(&self.path, &text, mode).map_err(|err| match err {
            SshError::KeyFile { source, .. } => self.wrap()(source),
            other => other,
        })
    }

    /// An exclusive `flock` on `<file>.lock`, released when the returned file is dropped.
    /// flock excludes other open file descriptions, so it serialises threads of this
    /// process as well as other processes.
    fn lock(&self) -> Result<File, SshError> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(self.wrap())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(self.wrap())?;
        file.lock().map_err(self.wrap())?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::key_line::ed25519_line;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn record_creates_replaces_and_removes() {
        let config = tempfile::tempdir().unwrap();
        let known_hosts = KnownHosts::new(config.path());
        assert_eq!(known_hosts.path(), config.path().join("ssh/known_hosts"));
        let old = ed25519_line([1; 32], "root@web");
        let new = ed25519_line([2; 32], "");
        known_hosts
            .record(&patterns(&["WEB.vm", "172.30.0.5"]), &old)
            .unwrap();
        known_hosts.record(&patterns(&["db.vm"]), &old).unwrap();
        known_hosts
            .record(&patterns(&["web.vm", "172.30.0.5"]), &new)
            .unwrap();
        let text = std::fs::read_to_string(known_hosts.path()).unwrap();
        let old_key = old.trim_end_matches(" root@web");
        assert_eq!(text, format!("db.vm {old_key}\nweb.vm,172.30.0.5 {new}\n"));
        assert_eq!(known_hosts.keys_for("web.vm").unwrap(), [new.as_str()]);
        assert_eq!(
            std::fs::metadata(known_hosts.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );

        assert!(known_hosts.remove("web.vm").unwrap());
        assert!(!known_hosts.remove("web.vm").unwrap());
        let text = std::fs::read_to_string(known_hosts.path()).unwrap();
        assert_eq!(text, format!("db.vm {old_key}\n172.30.0.5 {new}\n"));
        // No temporary files are left behind; only the file and its lock.
        let mut names: Vec<String> = std::fs::read_dir(config.path().join("ssh"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["known_hosts", "known_hosts.lock"]);
    }

    #[test]
    fn remove_without_a_file_is_a_no_op() {
        let config = tempfile::tempdir().unwrap();
        let known_hosts = KnownHosts::new(config.path());
        assert!(!known_hosts.remove("web.vm").unwrap());
        assert!(!known_hosts.path().exists());
        assert!(known_hosts.keys_for("web.vm").unwrap().is_empty());
    }

    #[test]
    fn invalid_input_is_refused_and_changes_nothing() {
        let config = tempfile::tempdir().unwrap();
        let known_hosts = KnownHosts::new(config.path());
        let key = ed25519_line([1; 32], "");
        let cases: &[(Vec<String>, &str, &str)] = &[
            (
                vec![],
                &key,
                "a known_hosts entry needs at least one host name",
            ),
            (
                patterns(&["*.vm"]),
                &key,
                "`*.vm` cannot be a known_hosts host name",
            ),
            (
                patterns(&["a b"]),
                &key,
                "`a b` cannot be a known_hosts host name",
            ),
            (
                patterns(&["web.vm"]),
                "ssh-ed25519 !!",
                "the guest's host key is not usable",
            ),
        ];
        for (names, key, message) in cases {
            let err = known_hosts.record(names, key).unwrap_err();
            assert_eq!(err.to_string(), *message);
        }
        assert!(!known_hosts.path().exists());
    }

    #[test]
    fn concurrent_records_lose_nothing() {
        let config = tempfile::tempdir().unwrap();
        let known_hosts = Arc::new(KnownHosts::new(config.path()));
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let known_hosts = known_hosts.clone();
                std::thread::spawn(move || {
                    let names = vec![format!("vm{i}.vm"), format!("172.30.0.{i}")];
                    known_hosts
                        .record(&names, &ed25519_line([i; 32], ""))
                        .unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for i in 0..16u8 {
            assert_eq!(
                known_hosts.keys_for(&format!("vm{i}.vm")).unwrap(),
                [ed25519_line([i; 32], "")]
            );
        }
    }

    #[test]
    fn existing_mode_is_kept() {
        let config = tempfile::tempdir().unwrap();
        let known_hosts = KnownHosts::new(config.path());
        known_hosts
            .record(&patterns(&["a.vm"]), &ed25519_line([1; 32], ""))
            .unwrap();
        std::fs::set_permissions(known_hosts.path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        known_hosts
            .record(&patterns(&["b.vm"]), &ed25519_line([2; 32], ""))
            .unwrap();
        assert_eq!(
            std::fs::metadata(known_hosts.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
    }
}
