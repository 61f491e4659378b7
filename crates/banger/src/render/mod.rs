//! Output for people and for scripts: tables and detail views (pure functions from API
//! records to text, snapshot-tested), JSON, and writing to stdout. Colour goes through
//! `anstream`, which drops it when stdout is not a terminal or `NO_COLOR` is set. A closed
//! pipe (`banger vm list | head -1`) ends output quietly rather than as an error.

pub mod detail;
pub mod records;
pub mod table;

use std::io::Write as _;

use anstream::ColorChoice;
use serde::Serialize;

use crate::errors::CliError;

/// Writes text to stdout. A closed pipe is not an error: the reader has what it wanted.
pub fn stdout(text: &str) -> Result<(), CliError> {
    let mut out = anstream::stdout();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(CliError::Local(
            anyhow::Error::new(err).context("cannot write to stdout"),
        )),
    }
}

/// Writes a line of commentary (not data) to stderr.
pub fn note(text: &str) {
    let mut err = anstream::stderr();
    let _ = writeln!(err, "{text}");
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::Local(anyhow::Error::new(err).context("cannot encode JSON")))?;
    text.push('\n');
    Ok(text)
}

/// Compact JSON on one line with a trailing newline (one document a line, for streams).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    let mut text = serde_json::to_string(value)
        .map_err(|err| CliError::Local(anyhow::Error::new(err).context("cannot encode JSON")))?;
    text.push('\n');
    Ok(text)
}

/// Prints `value` as JSON when `json` is set, else the text `human` builds.
pub fn data<T: Serialize + ?Sized>(
    json_output: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<(), CliError> {
    if json_output {
        stdout(&json(value)?)
    } else {
        stdout(&human(value))
    }
}

/// Whether styled text on stderr keeps its colour (a terminal, no `NO_COLOR`).
pub fn stderr_colour() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != ColorChoice::Never
}

/// A size given in MiB, as `ByteSize` prints it (`512MiB`, `4GiB`).
pub fn mib(value: u64) -> String {
    banger_model::ByteSize::from_mib(value).to_string()
}

/// A size given in bytes, as `ByteSize` prints it.
pub fn bytes(value: u64) -> String {
    banger_model::ByteSize(value).to_string()
}

/// `34.8MiB`: a measured size to read at a glance (progress, memory and disk use);
/// configured sizes and data output stay exact ([`bytes`], `--json`).
pub fn approx_bytes(value: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if value < 1024 {
        return format!("{value}B");
    }
    let mut scaled = value as f64 / 1024.0;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if scaled >= 100.0 {
        format!("{scaled:.0}{}", UNITS[unit])
    } else {
        format!("{scaled:.1}{}", UNITS[unit])
    }
}

/// `2m ago`-style age of an RFC 3339 timestamp; the timestamp itself when unreadable.
pub fn age(timestamp: &str, now: jiff::Timestamp) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return timestamp.to_string();
    };
    let secs = now.as_second() - then.as_second();
    match secs {
        s if s < 0 => "just now".to_string(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now: jiff::Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
        let cases = [
            ("2026-01-10T12:00:30Z", "just now"),
            ("2026-01-10T11:59:55Z", "5s ago"),
            ("2026-01-10T11:58:00Z", "2m ago"),
            ("2026-01-10T09:00:00Z", "3h ago"),
            ("2026-01-01T12:00:00Z", "9d ago"),
            ("not a time", "not a time"),
        ];
        for (input, expected) in cases {
            assert_eq!(age(input, now), expected, "{input}");
        }
    }
}
