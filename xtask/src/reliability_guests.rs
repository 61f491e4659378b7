//! The real-guest part of RELIABILITY.md: the figure files `crates/banger-e2e/tests/
//! reliability_guests.rs` writes to `target/reliability/guests/` (one per test: its
//! cases, each with an outcome, whether it was handled and what it left behind), read
//! back as summary rows and detail tables. With `--guests`, `cargo xtask reliability`
//! runs that test binary first (`vm` profile: real QEMU guests, root for the helper).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

/// The command that writes the figures (run under the machine's VM lock by hand).
pub const COMMAND: &str =
    "cargo nextest run --profile vm -p banger-e2e -E 'binary(reliability_guests)'";

/// The files, in the order the report shows them.
const FILES: &[&str] = &[
    "parallel_runs",
    "delete_races_start",
    "full_mid_create",
    "crash_delete_real",
    "crash_stop_real",
];

/// The kinds of leftovers each case counts, as the test names them.
const ORPHAN_KINDS: &[&str] = &["processes", "taps", "rules", "links", "files", "rows"];

fn dir(root: &Path) -> PathBuf {
    root.join("target/reliability/guests")
}

/// Runs the guest tests (`--guests`); their failure is reported, the figures still read.
pub fn run_tests(root: &Path) -> Result<bool> {
    eprintln!("xtask: reliability: running the real-guest tests: {COMMAND}");
    let status = Command::new("cargo")
        .args([
            "nextest",
            "run",
            "--profile",
            "vm",
            "-p",
            "banger-e2e",
            "-E",
            "binary(reliability_guests)",
        ])
        .current_dir(root)
        .status()
        .context("cannot run cargo nextest")?;
    Ok(status.success())
}

/// The figure files that exist, in report order.
pub fn read(root: &Path) -> Vec<Value> {
    FILES
        .iter()
        .filter_map(|name| {
            let bytes = std::fs::read(dir(root).join(format!("{name}.json"))).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM UTC` of a unix time (the civil-from-days algorithm).
fn utc(unix: u64) -> String {
    let (days, rest) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Summary rows for the table of areas.
pub fn rows(figures: &[Value]) -> String {
    figures
        .iter()
        .map(|f| {
            format!(
                "| real guests: {} | {} | {} | {} |\n",
                cell(f["title"].as_str().unwrap_or("?")),
                f["tried"],
                f["handled"],
                f["mishandled"]
            )
        })
        .collect()
}

/// The detail section: how the figures were made, and one table per test.
pub fn section(figures: &[Value]) -> String {
    let mut out = String::from("## Real guests\n\n");
    if figures.is_empty() {
        out.push_str(&format!(
            "No figures in `target/reliability/guests/`: run `{COMMAND}` (root, QEMU; hold the machine's VM lock), or `cargo xtask reliability --guests`.\n\n"
        ));
        return out;
    }
    let newest = figures
        .iter()
        .filter_map(|f| f["written_unix"].as_u64())
        .max()
        .map_or("at an unknown time".to_owned(), utc);
    out.push_str(&format!(
        "Figures written by `{COMMAND}` (`crates/banger-e2e/tests/reliability_guests.rs`, tiny image, QEMU under TCG, the root helper in a network namespace of the test's; newest file written {newest}), read back by this command. Each case counts what nothing owns afterwards: VMM processes no running VM owns, `bgt-` taps and per-guest nft rules (banger's tables) no running VM owns, interfaces beyond those before the test, VM directories no row owns, rows in a transient state (creating, starting, stopping, deleting). A case is handled when its outcome is one of the consistent ones and every count is 0. The crash cases kill the real `bangerd` process with SIGKILL at the named point (`BANGER_CRASH_AT`, the daemon signals itself exactly there), restart it, let its reconcile run and then use what survived.\n\n"
    ));
    for f in figures {
        out.push_str(&format!(
            "### {}\n\n| case | outcome | {} | |\n| --- | --- | {}--- |\n",
            cell(f["title"].as_str().unwrap_or("?")),
            ORPHAN_KINDS.join(" | "),
            "--- | ".repeat(ORPHAN_KINDS.len())
        ));
        for case in f["cases"].as_array().into_iter().flatten() {
            let counts: Vec<String> = ORPHAN_KINDS
                .iter()
                .map(|k| {
                    case["orphans"][k]
                        .as_u64()
                        .map_or("–".to_owned(), |n| n.to_string())
                })
                .collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(case["case"].as_str().unwrap_or("?")),
                cell(case["outcome"].as_str().unwrap_or("?")),
                counts.join(" | "),
                if case["handled"] == true {
                    "ok"
                } else {
                    "**mishandled**"
                }
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_become_a_row_and_a_table() {
        let figures = vec![json!({
            "title": "2 runs | at once",
            "tried": 2, "handled": 1, "mishandled": 1, "written_unix": 7,
            "cases": [
                {"case": "run 0", "outcome": "exit 10", "handled": true,
                 "orphans": {"processes": 0, "taps": 0}},
                {"case": "run 1", "outcome": "exit 3", "handled": false, "orphans": {}},
            ],
        })];
        assert_eq!(
            rows(&figures),
            "| real guests: 2 runs \\| at once | 2 | 1 | 1 |\n"
        );
        let section = section(&figures);
        assert!(
            section.contains("written 1970-01-01 00:00 UTC"),
            "{section}"
        );
        assert!(
            section.contains("| run 0 | exit 10 | 0 | 0 | – | – | – | – | ok |"),
            "{section}"
        );
        assert!(section.contains("| run 1 | exit 3 | – | – | – | – | – | – | **mishandled** |"));
    }

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400 + 3_661), "2000-02-29 01:01 UTC");
        assert_eq!(utc(1_796_666_142), "2026-12-07 17:55 UTC");
    }

    #[test]
    fn no_figures_says_how_to_make_them() {
        assert!(section(&[]).contains(COMMAND));
        assert!(rows(&[]).is_empty());
    }
}
