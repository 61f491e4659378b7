//! Errors of the VM service, classified so the daemon can map each to an API error code
//! without string matching.

use banger_exec::ExecError;

use crate::disk::DiskError;
use crate::patch::PatchError;

/// What kind of failure, for the daemon's error-code mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmErrorKind {
    BadRequest,
    NotFound,
    AlreadyExists,
    Conflict,
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{query:?} matches more than one VM: {}", candidates.join(", "))]
    Ambiguous {
        query: String,
        candidates: Vec<String>,
    },
    #[error("a VM named {0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("state store")]
    Store(#[source] Box<banger_store::StoreError>),
    #[error("image")]
    Image(#[source] Box<banger_image::ImageError>),
    #[error("root disk")]
    Disk(#[source] Box<DiskError>),
    #[error("preparing the guest's disk")]
    Patch(#[source] Box<PatchError>),
    #[error("VMM")]
    Vmm(#[source] Box<banger_vmm::VmmError>),
    #[error("guest network")]
    Network(#[source] Box<banger_net::NetError>),
    #[error("published port")]
    Port(#[source] Box<banger_net::ForwardError>),
    #[error("workspace")]
    Workspace(#[source] Box<banger_workspace::WorkspaceError>),
    #[error("guest agent")]
    Agent(#[source] Box<banger_proto::agent_client::AgentError>),
    #[error("the guest did not boot: {reason}\nlast lines of the serial console:\n{serial_tail}")]
    BootFailed { reason: String, serial_tail: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Exec {
        what: String,
        #[source]
        source: Box<ExecError>,
    },
}

/// Errors are boxed so `Result<_, VmError>` stays small on the happy path.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for VmError {
            fn from(err: $ty) -> VmError {
                VmError::$variant(Box::new(err))
            }
        })*
    };
}

boxed_from!(
    Store(banger_store::StoreError),
    Image(banger_image::ImageError),
    Disk(DiskError),
    Patch(PatchError),
    Vmm(banger_vmm::VmmError),
    Agent(banger_proto::agent_client::AgentError),
    Network(banger_net::NetError),
    Workspace(banger_workspace::WorkspaceError),
);

impl VmError {
    pub fn kind(&self) -> VmErrorKind {
        match self {
            VmError::BadRequest(_) | VmError::Ambiguous { .. } => VmErrorKind::BadRequest,
            VmError::NotFound(_) => VmErrorKind::NotFound,
            VmError::AlreadyExists(_) => VmErrorKind::AlreadyExists,
            VmError::Conflict(_) => VmErrorKind::Conflict,
            VmError::Workspace(err)
                if matches!(
                    **err,
                    banger_workspace::WorkspaceError::NotFound(_)
                        | banger_workspace::WorkspaceError::NotADirectory(_)
                        | banger_workspace::WorkspaceError::NotARepo(_)
                        | banger_workspace::WorkspaceError::GitDirIsAFile(_)
                        | banger_workspace::WorkspaceError::GitRefused { .. }
                        | banger_workspace::WorkspaceError::BadGuestPath(_)
                ) =>
            {
                VmErrorKind::BadRequest
            }
            VmError::Image(err)
                if matches!(
                    **err,
                    banger_image::ImageError::UnknownImage(_)
                        | banger_image::ImageError::UnknownKernel(_)
                ) =>
            {
                VmErrorKind::NotFound
            }
            _ => VmErrorKind::Failed,
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
        let what = what.into();
        move |source| VmError::Io { what, source }
    }
}

/// The error with its whole source chain on one line, for API messages and `last_error`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
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
