//! Typed errors that cross the socket. The daemon answers every failure with one of a
//! closed set of codes; the CLI maps each code to a friendly message.

use serde::{Deserialize, Serialize};

/// The closed set of error codes the daemon may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The named VM, image, kernel or operation does not exist.
    NotFound,
    /// A record with that name exists already.
    AlreadyExists,
    /// The request's parameters are invalid (bad name, size, spec, ambiguous prefix).
    BadRequest,
    /// The client speaks a protocol version the daemon does not.
    BadVersion,
    /// The peer's uid is not the daemon's owner.
    Unauthorized,
    /// The method name is not one the daemon knows.
    UnknownMethod,
    /// The request was valid but the work failed; the message carries the cause.
    OperationFailed,
    /// The request conflicts with the object's current state (e.g. deleting a running VM
    /// without `--force`).
    Conflict,
    /// The feature is part of banger's surface but not available in this build yet.
    NotYetAvailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadVersion => "bad_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::OperationFailed => "operation_failed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotYetAvailable => "not_yet_available",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// Human-readable cause, already including the error chain.
    pub message: String,
    /// The operation id, when the failure happened inside a long operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// A suggestion for the user, when the daemon has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            op: None,
            hint: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn operation_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::OperationFailed, message)
    }

    /// The typed answer for a command whose feature has not landed yet.
    pub fn not_yet_available(feature: &str) -> Self {
        Self::new(
            ErrorCode::NotYetAvailable,
            format!("{feature} is not yet available in this version of banger"),
        )
    }

    pub fn with_op(mut self, op: impl Into<String>) -> Self {
        self.op = Some(op.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
