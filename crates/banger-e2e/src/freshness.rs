//! Whether a built binary is current: it exists and is newer than every source file
//! rustc read to build it, as listed in the dep-info file cargo writes beside it
//! (`target/debug/banger.d`: `<binary>: <source> <source> ...`, spaces escaped `\ `).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `Ok` when `binary` exists and no source in its dep-info file is newer; else what is
/// wrong, naming the binary and (when stale) the newest source.
pub fn check(binary: &Path) -> Result<(), String> {
    let built = modified(binary).map_err(|_| format!("{} is not built", binary.display()))?;
    let dep_info = binary.with_extension("d");
    let text = std::fs::read_to_string(&dep_info).map_err(|error| {
        format!(
            "{} has no readable dep-info file {} ({error}), so its freshness is unknown",
            binary.display(),
            dep_info.display()
        )
    })?;
    let newer = sources(&text)
        .into_iter()
        .filter_map(|source| modified(&source).ok().map(|time| (time, source)))
        .filter(|(time, _)| *time > built)
        .max();
    match newer {
        None => Ok(()),
        Some((_, source)) => Err(format!(
            "{} is stale: {} changed after it was built",
            binary.display(),
            source.display()
        )),
    }
}

fn modified(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// The sources of the first rule of a dep-info file.
fn sources(dep_info: &str) -> Vec<PathBuf> {
    let Some(first) = dep_info.lines().find(|l| !l.trim().is_empty()) else {
        return Vec::new();
    };
    // The target ends at the first unescaped ": ".
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            ' ' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let start = words
        .iter()
        .position(|w| w.ends_with(':'))
        .map_or(words.len(), |at| at + 1);
    words[start..].iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_sources_are_read_with_escaped_spaces() {
        let text = "/t/debug/banger: /src/main.rs /my\\ dir/lib.rs\n\n/src/main.rs:\n";
        assert_eq!(
            sources(text),
            [
                PathBuf::from("/src/main.rs"),
                PathBuf::from("/my dir/lib.rs")
            ]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale_and_a_newer_one_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("main.rs");
        let binary = dir.path().join("bin");
        std::fs::write(&source, "fn main() {}").unwrap();
        std::fs::write(&binary, "").unwrap();
        std::fs::write(
            dir.path().join("bin.d"),
            format!("{}: {}\n", binary.display(), source.display()),
        )
        .unwrap();
        let set = |path: &Path, secs: u64| {
            let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        };
        set(&source, 2_000_000_000);
        set(&binary, 2_000_000_100);
        assert_eq!(check(&binary), Ok(()));
        set(&source, 2_000_000_200);
        let stale = check(&binary).unwrap_err();
        assert!(
            stale.contains("is stale") && stale.contains("main.rs"),
            "{stale}"
        );
        let missing = check(&dir.path().join("absent")).unwrap_err();
        assert!(missing.contains("is not built"), "{missing}");
    }
}
