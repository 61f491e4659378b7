//! Where banger's ssh files live under its config directory, in one place so the key,
//! the known_hosts file, the ssh arguments and the config block always agree:
//! `<config>/ssh/id_ed25519`, `id_ed25519.pub` and `known_hosts`.

use std::path::{Path, PathBuf};

/// banger's ssh files for one config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPaths {
    /// `<config>/ssh`, mode 0700.
    pub dir: PathBuf,
    /// The private key, mode 0600.
    pub identity_file: PathBuf,
    /// The public key (`ssh-ed25519 AAAA... banger`).
    pub public_key_file: PathBuf,
    /// Host keys of banger's guests, in OpenSSH's known_hosts format.
    pub known_hosts_file: PathBuf,
}

impl SshPaths {
    pub fn new(config_dir: &Path) -> SshPaths {
        let dir = config_dir.join("ssh");
        SshPaths {
            identity_file: dir.join("id_ed25519"),
            public_key_file: dir.join("id_ed25519.pub"),
            known_hosts_file: dir.join("known_hosts"),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let paths = SshPaths::new(Path::new("/c"));
        assert_eq!(paths.dir, Path::new("/c/ssh"));
        assert_eq!(paths.identity_file, Path::new("/c/ssh/id_ed25519"));
        assert_eq!(paths.public_key_file, Path::new("/c/ssh/id_ed25519.pub"));
        assert_eq!(paths.known_hosts_file, Path::new("/c/ssh/known_hosts"));
    }
}
