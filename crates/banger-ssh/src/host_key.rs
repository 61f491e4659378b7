//! Host keys made on the host for a guest restored from a snapshot: its identity step
//! installs the pair in place of the image's keys. `ssh-keygen` runs in milliseconds
//! here, where the freshly restored guest, under TCG, would take a tenth of a second or
//! more of the user's wait. The private half only passes through a private scratch
//! directory that is removed before this returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};

use crate::error::SshError;
use crate::key_line::parse_key_line;

const KEYGEN_TIMEOUT: Duration = Duration::from_secs(30);

/// An ed25519 host key pair in OpenSSH's file formats.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKeyPair {
    /// The private key file's text.
    pub private: String,
    /// `ssh-ed25519 AAAA...`, without a comment or newline.
    pub public: String,
}

impl std::fmt::Debug for HostKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKeyPair")
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

/// Removes the scratch directory however generation ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a new ed25519 host key with `ssh-keygen`, in a 0700 directory created under
/// `parent` (which must exist) and removed before returning.
pub async fn generate_host_key(
    parent: &Path,
    runner: &dyn CommandRunner,
) -> Result<HostKeyPair, SshError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = parent.join(format!(".host-key-{:016x}", fastrand::u64(..)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| SshError::KeyFile {
            path: dir.clone(),
            source,
        })?;
    let scratch = Scratch(dir);
    let private_file = scratch.0.join("key");
    let keygen = Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&private_file)
        .timeout(KEYGEN_TIMEOUT);
    runner
        .run(&keygen)
        .await
        .map_err(|source| SshError::HostKeygen {
            source: Box::new(source),
        })?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| SshError::KeyFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let private = read(&private_file)?;
    let public_file = scratch.0.join("key.pub");
    let public_text = read(&public_file)?;
    let public = parse_key_line(public_text.trim())
        .map_err(|source| SshError::InvalidPublicKey {
            path: public_file,
            source,
        })?
        .to_line();
    drop(scratch);
    Ok(HostKeyPair {
        private,
        public: public.trim().to_string(),
    })
}
