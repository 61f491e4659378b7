//! [`SshError`], the one error type of this crate, and [`KeyLineError`], why a line of
//! text is not an ssh public key (the pure parser's error, wrapped by both).

use std::path::PathBuf;

/// Why an ssh operation failed. Command errors are boxed: they are large, and this type
/// travels in every `Result` of the crate.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot prepare banger's ssh directory {path}")]
    KeyDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate banger's ssh key")]
    Keygen {
        #[source]
        source: Box<banger_exec::ExecError>,
    },
    #[error("cannot generate a guest's ssh host key")]
    HostKeygen {
        #[source]
        source: Box<banger_exec::ExecError>,
    },
    #[error("cannot read banger's ssh key {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: Box<banger_exec::ExecError>,
    },
    #[error("cannot access {path}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} was removed while banger was creating it")]
    KeyVanished { path: PathBuf },
    #[error("{path} does not hold an ed25519 public key")]
    InvalidPublicKey {
        path: PathBuf,
        #[source]
        source: KeyLineError,
    },
    #[error("the guest's host key is not usable")]
    InvalidHostKey {
        #[source]
        source: KeyLineError,
    },
    #[error("`{pattern}` cannot be a known_hosts host name")]
    InvalidHostPattern { pattern: String },
    #[error("a known_hosts entry needs at least one host name")]
    NoHostPatterns,
    #[error("cannot update the known_hosts file {path}")]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why text is not an ssh public key line (`<type> <base64> [comment]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLineError {
    #[error("no line starting with a key type such as `ssh-ed25519`")]
    NoKeyLine,
    #[error("key type `{0}` is not supported")]
    UnsupportedType(String),
    #[error("the key after `{0}` is missing")]
    MissingKey(String),
    #[error("the key is not valid base64")]
    NotBase64,
    #[error("the key says `{declared}` but encodes `{encoded}`")]
    TypeMismatch { declared: String, encoded: String },
    #[error("the key data is truncated or has trailing bytes")]
    BadLength,
    #[error("expected an `{expected}` key, found `{found}`")]
    WrongType {
        expected: &'static str,
        found: String,
    },
}
