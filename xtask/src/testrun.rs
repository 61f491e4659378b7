//! Running a nextest profile and reporting what it did: how many tests ran, and which
//! were skipped for a missing host requirement.
//!
//! nextest counts a test that returned early as passed and hides its output, so the
//! tests record skips themselves (`banger-requires` appends one line per skip to
//! `$BANGER_SKIP_LOG`). This module empties that log before the run, reads it after, and
//! prints every skip; under `CI=true` any skip fails the run (the skipping test has failed
//! already; this is the second lock on the door). The count of tests run comes from the
//! JUnit report nextest writes for each profile (`.config/nextest.toml`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What one profile's run did.
#[derive(Debug)]
pub struct Outcome {
    pub profile: String,
    /// Tests that ran (from the JUnit report).
    pub ran: usize,
    /// One line per skip, `SKIPPED <binary>::<test>: <reason>`.
    pub skips: Vec<String>,
}

impl Outcome {
    /// `"812 tests ran in profile default, none skipped"`.
    pub fn summary(&self) -> String {
        let skipped = match self.skips.len() {
            0 => "none skipped".to_owned(),
            n => format!("{n} skipped"),
        };
        format!(
            "{} tests ran in profile {}, {skipped}",
            self.ran, self.profile
        )
    }
}

/// `cargo xtask test [--profile P] [nextest args...]`.
pub fn cli(root: &Path, args: &[String]) -> Result<()> {
    let mut profile = "default".to_owned();
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--profile" => profile = args.next().context("--profile needs a name")?.clone(),
            "-h" | "--help" => {
                println!(
                    "cargo xtask test [--profile default|vm] [nextest args...]\n\n\
                     Runs `cargo nextest run --workspace` with that profile, then prints how many\n\
                     tests ran and every test skipped for a missing host requirement.\n\
                     Under CI=true a skip fails the run.\n\n\
                     Examples:\n  cargo xtask test\n  cargo xtask test --profile vm\n  \
                     cargo xtask test -p banger-helper"
                );
                return Ok(());
            }
            other => rest.push(other.to_owned()),
        }
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let outcome = run(root, &profile, &rest)?;
    eprintln!("xtask: {}", outcome.summary());
    Ok(())
}

/// Runs `profile` (with `extra` nextest arguments) and reports; fails when a test failed,
/// or when a test was skipped under `CI=true`.
pub fn run(root: &Path, profile: &str, extra: &[&str]) -> Result<Outcome> {
    let log = root
        .join("target")
        .join(format!("skipped-tests-{profile}.log"));
    let junit = root.join("target/nextest").join(profile).join("junit.xml");
    for stale in [&log, &junit] {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("{}", stale.display())),
        }
    }
    let mut args = vec![
        "nextest",
        "run",
        "--workspace",
        "--profile",
        profile,
        "--no-fail-fast",
    ];
    args.extend_from_slice(extra);
    eprintln!("xtask: $ cargo {}", args.join(" "));
    let status = std::process::Command::new("cargo")
        .args(&args)
        .env("BANGER_SKIP_LOG", &log)
        .current_dir(root)
        .status()
        .context("cannot run cargo nextest")?;
    let skips = read_skips(&log)?;
    let ran = tests_in_junit(&junit).unwrap_or(0);
    if !skips.is_empty() {
        eprintln!(
            "xtask: {} test(s) skipped in profile {profile} for a missing host requirement:",
            skips.len()
        );
        for skip in &skips {
            eprintln!("  {skip}");
        }
    }
    let outcome = Outcome {
        profile: profile.to_owned(),
        ran,
        skips,
    };
    if !status.success() {
        bail!(
            "`cargo {}` failed ({status}); {}",
            args.join(" "),
            outcome.summary()
        );
    }
    if strict() && !outcome.skips.is_empty() {
        bail!(
            "CI=true and {} test(s) skipped: install what they name (scripts/install-deps.sh)",
            outcome.skips.len()
        );
    }
    Ok(outcome)
}

fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        || std::env::var("BANGER_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

fn read_skips(log: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(log) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", log.display())),
    }
}

/// The `tests` attribute of the report's `<testsuites>` element.
fn tests_in_junit(path: &PathBuf) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    junit_tests(&text)
}

fn junit_tests(xml: &str) -> Option<usize> {
    let start = xml.find("<testsuites")?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let value = tag.split(" tests=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_count_comes_from_the_junit_root() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="812" failures="0" errors="0" uuid="x" timestamp="t" time="1.0">
    <testsuite name="banger" tests="3" disabled="0" errors="0" failures="0">"#;
        assert_eq!(junit_tests(xml), Some(812));
        assert_eq!(junit_tests("<nothing/>"), None);
    }

    #[test]
    fn a_summary_says_none_skipped_or_how_many() {
        let mut outcome = Outcome {
            profile: "vm".into(),
            ran: 45,
            skips: Vec::new(),
        };
        assert_eq!(
            outcome.summary(),
            "45 tests ran in profile vm, none skipped"
        );
        outcome.skips.push("SKIPPED a::b: c".into());
        assert_eq!(outcome.summary(), "45 tests ran in profile vm, 1 skipped");
    }
}
