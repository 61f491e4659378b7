//! What can go wrong in a command, and how it reads to the user. Every failure becomes a
//! [`Report`] (an `error:` line, an optional `hint:` and the op id when there is one) by a
//! pure translation, then is printed once to stderr. Daemon error codes become sentences;
//! `operation_failed` shows the cause, never the code. Exit codes: 2 for usage errors,
//! 130 after Ctrl-C, 1 for everything else.

use std::io::{ErrorKind, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use banger_api::{ApiError, ClientError, ErrorCode};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers on the daemon socket.
    #[error("cannot reach the banger daemon at {}", socket.display())]
    DaemonDown {
        socket: PathBuf,
        reason: ErrorKind,
        /// How to start the daemon on this machine, e.g. `bangerd &`.
        start_command: String,
        /// True when `BANGER_SOCKET`/`BANGER_RUNTIME_DIR` moved the socket.
        custom_location: bool,
    },
    /// The daemon answered with an error, or the conversation broke.
    #[error(transparent)]
    Daemon(ClientError),
    /// The command line is wrong in a way clap could not see.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A local failure (reading a file, writing the ssh config).
    #[error(transparent)]
    Local(anyhow::Error),
    /// A local failure with advice (ssh is missing, a prompt cannot be shown).
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// The user pressed Ctrl-C; cleanup has run.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> CliError {
        CliError::Usage {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }

    pub fn failed(message: impl Into<String>, hint: Option<&str>) -> CliError {
        CliError::Failed {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// The process exit status for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Usage { .. } => 2,
            CliError::Interrupted => 130,
            _ => 1,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> CliError {
        CliError::Daemon(err)
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> CliError {
        CliError::Local(err.into())
    }
}

/// An error as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub error: String,
    pub hint: Option<String>,
    pub op: Option<String>,
    /// Where the daemon's log is, printed with the op id so its lines can be found.
    pub daemon_log: Option<PathBuf>,
}

impl Report {
    fn new(error: impl Into<String>, hint: Option<String>) -> Report {
        Report {
            error: error.into(),
            hint,
            op: None,
            daemon_log: None,
        }
    }
}

/// Translates a failure into what the user reads.
pub fn translate(err: &CliError) -> Report {
    match err {
        CliError::DaemonDown {
            socket,
            reason,
            start_command,
            custom_location,
        } => daemon_down(socket, *reason, start_command, *custom_location),
        CliError::Daemon(err) => translate_client(err),
        CliError::Usage { message, hint } | CliError::Failed { message, hint } => {
            Report::new(message.clone(), hint.clone())
        }
        CliError::Local(err) => Report::new(format!("{err:#}"), None),
        CliError::Interrupted => Report::new("interrupted", None),
    }
}

fn daemon_down(
    socket: &std::path::Path,
    reason: ErrorKind,
    start_command: &str,
    custom_location: bool,
) -> Report {
    let why = match reason {
        ErrorKind::NotFound => "the daemon is not running (no socket there)".to_string(),
        ErrorKind::ConnectionRefused => {
            "the daemon is not running (a stale socket is left)".to_string()
        }
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        other => other.to_string(),
    };
    let hint = if reason == ErrorKind::PermissionDenied {
        format!(
            "that socket belongs to another user; every user runs their own daemon: \
             `{start_command}`"
        )
    } else if custom_location {
        format!(
            "start the daemon with `{start_command}` in the same environment \
             (BANGER_SOCKET / BANGER_RUNTIME_DIR) so it listens there, then try again"
        )
    } else {
        format!(
            "install banger's services once with `sudo banger system install` (bangerd and \
             banger-helper, the root helper guest networking needs), or start the daemon \
             alone by hand with `{start_command}` (its VMs then have no network); then try \
             again"
        )
    };
    Report::new(
        format!(
            "cannot reach the banger daemon at {}: {why}",
            socket.display()
        ),
        Some(hint),
    )
}

fn translate_client(err: &ClientError) -> Report {
    match err {
        ClientError::Unreachable { path, source } => {
            daemon_down(path, source.kind(), "bangerd &", false)
        }
        ClientError::Io(source) => Report::new(
            format!("lost the connection to the daemon: {source}"),
            Some("`banger ping` tells whether the daemon is still running".into()),
        ),
        ClientError::Protocol(message) => Report::new(
            format!("cannot understand the daemon's answer: {message}"),
            Some(
                "the daemon may come from another banger version; restart it from this \
                 installation"
                    .into(),
            ),
        ),
        ClientError::Closed => Report::new(
            err.to_string(),
            Some("look at the daemon's output; `banger ping` tells whether it is back".into()),
        ),
        ClientError::Api(api) => translate_api(api),
    }
}

/// The sentence and default hint for each daemon error code. A hint sent by the daemon
/// wins over the default: it knows more about the situation.
fn translate_api(api: &ApiError) -> Report {
    let (error, default_hint): (String, Option<&str>) = match api.code {
        ErrorCode::NotFound => (
            api.message.clone(),
            Some("`banger vm list`, `banger image list` and `banger kernel list` show what exists"),
        ),
        ErrorCode::AlreadyExists => (
            api.message.clone(),
            Some("choose another name, or delete the existing one first"),
        ),
        ErrorCode::BadRequest => (format!("invalid request: {}", api.message), None),
        ErrorCode::BadVersion => (
            format!(
                "the daemon speaks another protocol version; restart it ({})",
                api.message
            ),
            Some("stop the running bangerd and start the one installed with this banger"),
        ),
        ErrorCode::Unauthorized => (
            format!("the daemon refused this user: {}", api.message),
            Some(
                "bangerd serves only the user who started it; start your own with \
                 `sudo banger system install` (as yourself, with sudo) or `bangerd &`",
            ),
        ),
        ErrorCode::UnknownMethod => (
            format!(
                "the daemon does not know this command; it is older than this CLI ({})",
                api.message
            ),
            Some("restart the daemon from the same banger installation as this CLI"),
        ),
        ErrorCode::OperationFailed => (api.message.clone(), None),
        ErrorCode::Conflict => (api.message.clone(), None),
        ErrorCode::NotYetAvailable => (api.message.clone(), None),
    };
    Report {
        error,
        hint: api.hint.clone().or(default_hint.map(str::to_string)),
        op: api.op.clone(),
        daemon_log: None,
    }
}

/// The report as styled text; `anstream` strips the styles where they do not belong.
pub fn render(report: &Report) -> String {
    let error = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let hint = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
    let dim = Style::new().dimmed();
    let mut text = format!("{error}error:{error:#} {}\n", report.error);
    if let Some(h) = &report.hint {
        text.push_str(&format!("{hint}hint:{hint:#} {h}\n"));
    }
    if let Some(op) = &report.op {
        match &report.daemon_log {
            Some(log) => text.push_str(&format!(
                "{dim}op: {op} (its lines in the daemon log, {}: `banger logs --op {op}`){dim:#}\n",
                log.display()
            )),
            None => text.push_str(&format!("{dim}op: {op}{dim:#}\n")),
        }
    }
    text
}

/// The daemon's log file as this CLI would find it (`<state>/bangerd.log`, which the
/// daemon writes besides its stderr), set once at start by `main`.
static DAEMON_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Records where the daemon's log is, for the op lines of errors.
pub fn set_daemon_log(path: PathBuf) {
    let _ = DAEMON_LOG.set(path);
}

/// Prints a failure to stderr, once.
pub fn print(err: &CliError) {
    let mut report = translate(err);
    report.daemon_log = DAEMON_LOG.get().cloned();
    let text = render(&report);
    let mut stderr = anstream::stderr();
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests;
