//! log: the helper's log lines on stderr (journald under systemd adds the timestamps).
//! One line per request, per refusal and per startup event; nothing else writes there.

use std::fmt::Arguments;
use std::io::Write;

fn line(level: &str, message: Arguments<'_>) {
    // A closed stderr must not take the helper down; the line is lost instead.
    let _ = writeln!(
        std::io::stderr().lock(),
        "banger-helper: {level}: {message}"
    );
}

pub fn info(message: Arguments<'_>) {
    line("info", message);
}

pub fn warn(message: Arguments<'_>) {
    line("warn", message);
}
