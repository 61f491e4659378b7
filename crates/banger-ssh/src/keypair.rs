//! banger's own ed25519 keypair at `<config>/ssh/id_ed25519` (+ `.pub`), created with
//! `ssh-keygen` on first use. Its public half goes into guests' authorized_keys.
//!
//! First use may happen in several processes or tasks at once (two `vm create` racing a
//! fresh daemon), so the key is generated under a unique temporary name and published
//! with `link(2)`, which never overwrites: exactly one generator wins, and the others
//! throw their key away and use the winner's. The private key is the truth: the public
//! key is derived from it (`ssh-keygen -y`) and `.pub` rewritten when it disagrees, so a
//! half-finished first run or a stale `.pub` heals itself.

use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};

use crate::error::SshError;
use crate::key_line::{ED25519, parse_key_line};
use crate::paths::SshPaths;

/// ssh-keygen takes milliseconds; this only guards against a wedged system.
const KEYGEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The comment in banger's public key, so users can tell it apart in authorized_keys.
const KEY_COMMENT: &str = "banger";

/// banger's keypair, present on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keypair {
    private_key_file: PathBuf,
    public_key_file: PathBuf,
    /// `ssh-ed25519 AAAA... banger`, without a newline.
    public_key: String,
}

impl Keypair {
    /// Returns banger's keypair under `config_dir`, creating it on first use. Idempotent,
    /// and safe to call concurrently from several processes.
    pub async fn ensure(
        config_dir: &Path,
        runner: &dyn CommandRunner,
    ) -> Result<Keypair, SshError> {
        let paths = SshPaths::new(config_dir);
        prepare_dir(&paths.dir)?;
        if let Some(keypair) = load(&paths, runner).await? {
            return Ok(keypair);
        }
        let temp = TempKey::new(&paths.dir);
        let keygen = Cmd::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f"])
            .arg(&temp.private)
            .timeout(KEYGEN_TIMEOUT);
        runner
            .run(&keygen)
            .await
            .map_err(|source| SshError::Keygen {
                source: Box::new(source),
            })?;
        set_mode(&temp.private, 0o600)?;
        match std::fs::hard_link(&temp.private, &paths.identity_file) {
            // Won (or the key appeared meanwhile): either way the published key is the
            // one to use, and loading it writes its `.pub`.
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(SshError::KeyFile {
                    path: paths.identity_file,
                    source,
                });
            }
        }
        drop(temp);
        load(&paths, runner).await?.ok_or(SshError::KeyVanished {
            path: paths.identity_file,
        })
    }

    pub fn private_key_file(&self) -> &Path {
        &self.private_key_file
    }

    pub fn public_key_file(&self) -> &Path {
        &self.public_key_file
    }

    /// The public key line for a guest's authorized_keys (`ssh-ed25519 AAAA... banger`).
    pub fn public_key(&self) -> String {
        self.public_key.clone()
    }
}

/// Creates `<config>/ssh` if needed and makes it private: ssh refuses keys that others
/// can read, and known_hosts should not be writable by them either.
fn prepare_dir(dir: &Path) -> Result<(), SshError> {
    let wrap = |source| SshError::KeyDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(wrap)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(wrap)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SshError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        SshError::KeyFile {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The published keypair, or None when there is no private key yet. Derives the public
/// key from the private one and rewrites `.pub` if it is missing or differs.
async fn load(paths: &SshPaths, runner: &dyn CommandRunner) -> Result<Option<Keypair>, SshError> {
    let metadata = match std::fs::metadata(&paths.identity_file) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SshError::KeyFile {
                path: paths.identity_file.clone(),
                source,
            });
        }
    };
    // ssh (and `ssh-keygen -y`) refuse a private key others can read.
    if metadata.permissions().mode() & 0o077 != 0 {
        set_mode(&paths.identity_file, 0o600)?;
    }
    let derive = Cmd::new("ssh-keygen")
        .args(["-y", "-P", "", "-f"])
        .arg(&paths.identity_file)
        .timeout(KEYGEN_TIMEOUT);
    let output = runner
        .run(&derive)
        .await
        .map_err(|source| SshError::ReadKey {
            path: paths.identity_file.clone(),
            source: Box::new(source),
        })?;
    let public_key = output.stdout_text().trim().to_string();
    let key = parse_key_line(&public_key).map_err(|source| SshError::InvalidPublicKey {
        path: paths.identity_file.clone(),
        source,
    })?;
    if key.key_type != ED25519 {
        return Err(SshError::InvalidPublicKey {
            path: paths.identity_file.clone(),
            source: crate::error::KeyLineError::WrongType {
                expected: ED25519,
                found: key.key_type,
            },
        });
    }
    let wanted = format!("{public_key}\n");
    let current = std::fs::read_to_string(&paths.public_key_file).ok();
    if current.as_deref() != Some(wanted.as_str()) {
        write_atomically(&paths.public_key_file, wanted.as_bytes(), 0o644)?;
    }
    Ok(Some(Keypair {
        private_key_file: paths.identity_file.clone(),
        public_key_file: paths.public_key_file.clone(),
        public_key,
    }))
}

/// Writes a file through a unique temporary name and a rename, so readers see the old
/// contents or the new, never a partial file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SshError> {
    let temp = unique_sibling(path, "tmp");
    let wrap = |source| SshError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(wrap)
}

/// `<dir>/.<name>.<what>-<pid>-<random>`: unique across processes and tasks, hidden, and
/// in the same directory so `rename`/`link` stay on one filesystem.
pub(crate) fn unique_sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{what}-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// The temporary key files of one generation attempt, removed when dropped (after a
/// successful link the published name keeps the key alive).
struct TempKey {
    private: PathBuf,
    public: PathBuf,
}

impl TempKey {
    fn new(dir: &Path) -> TempKey {
        let private = unique_sibling(&dir.join("id_ed25519"), "new");
        let mut public = private.clone().into_os_string();
        public.push(".pub");
        TempKey {
            private,
            public: PathBuf::from(public),
        }
    }
}

impl Drop for TempKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.private);
        let _ = std::fs::remove_file(&self.public);
    }
}

#[cfg(test)]
mod tests;
