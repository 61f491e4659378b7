//! log: the agent's diagnostics, one line each on stderr (the guest console or the
//! journal). Kept to connection changes and failures, so an idle agent is silent.

use std::fmt;
use std::io::Write;

/// Writes one `banger-agent: ...` line to stderr; a failed write has nowhere to go.
pub fn write(message: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "banger-agent: {message}");
}

macro_rules! agent_log {
    ($($arg:tt)*) => {
        $crate::log::write(format_args!($($arg)*))
    };
}
pub(crate) use agent_log;
