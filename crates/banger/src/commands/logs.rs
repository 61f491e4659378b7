//! `banger logs`: the daemon's own log (`<state>/bangerd.log`, which bangerd appends to
//! besides its stderr), all of it or one operation's lines (`--op ID`, the id an error
//! prints). Read on this side: the file is the user's own, like the state directory.

use std::path::Path;

use clap::Args;

use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;

/// Print the daemon's log, or one operation's lines of it
#[derive(Debug, Args)]
#[command(
    long_about = "Print the daemon's log: bangerd writes every log line to \
<state dir>/bangerd.log besides its stderr (the journal under systemd, a file in \
/var/log/banger when supervised). With --op, only the lines of one operation: the id an \
error prints as `op: op-...`.",
    after_help = "\
Examples:
  banger logs --op op-3f2a9c0d            What the daemon did for that failed command
  banger logs --tail 50"
)]
pub struct LogsArgs {
    /// Only the lines of this operation (the `op:` id an error printed)
    #[arg(long, value_name = "ID")]
    pub op: Option<String>,
    /// Only the last N lines (of the operation's, with --op)
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

/// `banger logs`.
pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<(), CliError> {
    let path = ctx.daemon_log()?;
    let text = read_log(&path)?;
    let mut lines: Vec<&str> = match &args.op {
        Some(op) => op_lines(&text, op),
        None => text.lines().collect(),
    };
    if let (Some(op), true) = (&args.op, lines.is_empty()) {
        return Err(CliError::failed(
            format!("no line of {} mentions {op}", path.display()),
            Some(
                "op ids come from this state directory's daemon; an older operation may \
                 be in bangerd.log.1 next to it",
            ),
        ));
    }
    if let Some(tail) = args.tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    render::stdout(&out)
}

/// The log file, and the generation before it so an op near the cut is whole.
fn read_log(path: &Path) -> Result<String, CliError> {
    let previous = std::fs::read_to_string(path.with_extension("log.1")).unwrap_or_default();
    match std::fs::read_to_string(path) {
        Ok(current) => Ok(previous + &current),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(CliError::failed(
            format!("the daemon has not written a log at {} yet", path.display()),
            Some("a daemon older than this CLI logs to its stderr only"),
        )),
        Err(err) => Err(CliError::Local(
            anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
        )),
    }
}

/// The lines that mention `op` as a whole id (`op-12` does not match `op-123`).
pub fn op_lines<'a>(text: &'a str, op: &str) -> Vec<&'a str> {
    let id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.lines()
        .filter(|line| {
            line.match_indices(op).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + op.len()..].chars().next();
                !before.is_some_and(id_char) && !after.is_some_and(id_char)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::op_lines;

    #[test]
    fn op_lines_match_whole_ids_only() {
        let log = "\
2026-01-01T00:00:00Z  INFO bangerd::ops: operation started op=op-12 kind=\"vm.create\"
2026-01-01T00:00:01Z  INFO op{op=op-12}: banger_vm::boot: booting
2026-01-01T00:00:01Z  INFO bangerd::ops: operation started op=op-123 kind=\"vm.stop\"
2026-01-01T00:00:02Z  WARN bangerd::ops: operation failed op=op-12 code=operation_failed
{\"fields\":{\"op\":\"op-12\"}}
unrelated line";
        assert_eq!(op_lines(log, "op-12").len(), 4);
        assert_eq!(op_lines(log, "op-123").len(), 1);
        assert!(op_lines(log, "op-1").is_empty());
    }
}
