//! The one error type of the image service. Each variant names the step or file that
//! failed; the underlying cause is kept as `source` so the daemon prints the chain once.
//! Command failures are boxed: they carry output buffers, and every `Result` here would
//! otherwise be as large as the largest of them.

use std::path::PathBuf;

use banger_exec::ExecError;

use crate::vmlinux::VmlinuxError;

/// Why pulling a kernel or an image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no image named `{0}` in the catalog")]
    UnknownImage(String),
    #[error("no kernel named `{0}` in the catalog")]
    UnknownKernel(String),
    #[error("{step} failed")]
    Command {
        step: &'static str,
        #[source]
        source: Box<ExecError>,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the apt package lists have no package matching {pattern} (run `apt-get update`)")]
    NoKernelPackage { pattern: String },
    #[error("`apt-get download` left no .deb for {package}")]
    MissingDeb { package: String },
    #[error("unexpected output from `{command}`: {line}")]
    AptOutput { command: &'static str, line: String },
    #[error("cannot extract an ELF vmlinux from {path}")]
    Vmlinux {
        path: PathBuf,
        #[source]
        source: VmlinuxError,
    },
    #[error("kernel module {module} is not available for {kernel_version}")]
    ModuleMissing {
        module: String,
        kernel_version: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("{file} is not in {deb}")]
    FileNotInDeb { deb: PathBuf, file: String },
    #[error("{url} has sha256 {actual}, expected {expected}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} has integrity {actual}, expected {expected}")]
    IntegrityMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("invalid integrity `{0}`: expected `sha512-` and 64 bytes in base64")]
    InvalidIntegrity(String),
    #[error("invalid sha256 `{0}`: expected 64 hexadecimal digits")]
    InvalidSha256(String),
    #[error(
        "mkfs.ext4 ran out of space on the host: the file system holding {} is full (free some space there and pull again)",
        dir.display()
    )]
    HostDiskFull {
        dir: PathBuf,
        #[source]
        source: Box<ExecError>,
    },
    #[error("mkfs.ext4 cannot read a tarball here (needs e2fsprogs >= 1.47.1 and libarchive13)")]
    MkfsNeedsTarSupport {
        #[source]
        source: Box<ExecError>,
    },
    #[error("debugfs could not set extended attributes: {errors}")]
    Xattrs { errors: String },
    #[error("{what} is not a clean ext4 filesystem (e2fsck found problems)")]
    Unclean {
        what: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("{what} is not an ext4 filesystem image")]
    NotExt4 { what: String },
    #[error("no Debian {release} mirror in the host's apt sources ({dir})")]
    NoMirror { release: String, dir: PathBuf },
    #[error("image manifest {path} is unreadable")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot import {reference}")]
    Oci {
        reference: String,
        #[source]
        source: Box<crate::oci::import::OciError>,
    },
    #[error("a background build task failed")]
    Join(#[source] tokio::task::JoinError),
}

impl ImageError {
    /// Wraps an I/O error with a sentence saying what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }

    /// Wraps a command failure with the step it belonged to.
    pub(crate) fn command(step: &'static str) -> impl FnOnce(ExecError) -> ImageError {
        move |source| ImageError::Command {
            step,
            source: Box::new(source),
        }
    }
}

/// `fs_err` errors already name the path; this keeps them as they are.
impl From<std::io::Error> for ImageError {
    fn from(source: std::io::Error) -> ImageError {
        ImageError::Io {
            context: "file operation failed".to_string(),
            source,
        }
    }
}

/// An error with its whole source chain on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
