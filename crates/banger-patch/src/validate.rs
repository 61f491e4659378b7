//! validate: the checks a parsed patch must pass before anything is applied. They need
//! nothing but the patch; what depends on the host repository (its own symlinks, its
//! uncommitted changes) is `apply`'s.

use std::collections::BTreeSet;

use crate::parse::{FileChange, Status};
use crate::{MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValidateError {
    /// The offending path, lossily decoded for the message.
    pub path: String,
    pub reason: String,
}

pub(crate) fn refuse(path: &[u8], reason: impl Into<String>) -> ValidateError {
    ValidateError {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

/// Checks every change; the first problem is returned, naming its path.
pub fn validate(changes: &[FileChange]) -> Result<(), ValidateError> {
    // Paths that are symlinks once the patch is applied.
    let links: BTreeSet<&[u8]> = changes
        .iter()
        .filter(|change| change.new_mode == Some(MODE_SYMLINK))
        .filter_map(|change| change.new_path.as_deref())
        .collect();
    for change in changes {
        for name in &change.names {
            check_path(name)?;
        }
        for mode in [change.old_mode, change.new_mode].into_iter().flatten() {
            if ![MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK].contains(&mode) {
                let reason = if mode == 0o160000 {
                    "a submodule (gitlink) change is not applied".to_string()
                } else {
                    format!("file mode {mode:o} is not a file, an executable or a symlink")
                };
                return Err(refuse(change.path(), reason));
            }
        }
        if let Some(new_path) = change.new_path.as_deref() {
            // Written through a symlink the patch itself makes?
            for prefix in proper_prefixes(new_path) {
                if links.contains(prefix) {
                    return Err(refuse(
                        new_path,
                        format!(
                            "written through {}, a symlink this patch creates",
                            String::from_utf8_lossy(prefix)
                        ),
                    ));
                }
            }
            if change.new_mode == Some(MODE_SYMLINK) {
                if change.binary {
                    return Err(refuse(
                        new_path,
                        "a symlink given as binary data: where it points cannot be checked",
                    ));
                }
                match &change.symlink_target {
                    Some(target) => check_link(new_path, target)?,
                    // A mode change into a symlink or a rename of one: the target is
                    // not in the patch, so it cannot be checked.
                    None if change.old_mode != Some(MODE_SYMLINK)
                        || change.status == Status::Copied =>
                    {
                        return Err(refuse(
                            new_path,
                            "becomes a symlink without the patch showing where it points",
                        ));
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}

/// A name inside the repository: relative, no `..`, `.` or empty components, no `.git`.
fn check_path(path: &[u8]) -> Result<(), ValidateError> {
    if path.is_empty() {
        return Err(refuse(path, "an empty path"));
    }
    if path.starts_with(b"/") {
        return Err(refuse(path, "an absolute path"));
    }
    if path.contains(&0) {
        return Err(refuse(path, "a NUL byte in the path"));
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => return Err(refuse(path, "an empty or `.` path component")),
            b".." => return Err(refuse(path, "`..` leaves the repository")),
            _ if is_git_dir(component) => {
                return Err(refuse(path, "writes into .git"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `.git` in any case (case-insensitive file systems would take `.GIT` for it).
fn is_git_dir(component: &[u8]) -> bool {
    component.eq_ignore_ascii_case(b".git")
}

/// A symlink at `link` pointing to `target` must stay inside the repository and out of
/// `.git`, resolved as the kernel would from the link's directory (by name: any
/// symlinks it passes are checked in their own right).
pub(crate) fn check_link(link: &[u8], target: &[u8]) -> Result<(), ValidateError> {
    let shown = String::from_utf8_lossy(target).into_owned();
    if target.is_empty() {
        return Err(refuse(link, "a symlink with an empty target"));
    }
    if target.starts_with(b"/") {
        return Err(refuse(
            link,
            format!("a symlink to {shown}, outside the repository"),
        ));
    }
    let mut resolved: Vec<&[u8]> = link.split(|&b| b == b'/').collect();
    resolved.pop();
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                if resolved.pop().is_none() {
                    return Err(refuse(
                        link,
                        format!("a symlink to {shown}, outside the repository"),
                    ));
                }
            }
            other => {
                if is_git_dir(other) {
                    return Err(refuse(link, format!("a symlink to {shown}, into .git")));
                }
                resolved.push(other);
            }
        }
    }
    if resolved.first().is_some_and(|first| is_git_dir(first)) {
        return Err(refuse(link, format!("a symlink to {shown}, into .git")));
    }
    Ok(())
}

/// `a`, `a/b` for `a/b/c`.
fn proper_prefixes(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'/')
        .map(move |(at, _)| &path[..at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn check(patch: &str) -> Result<(), ValidateError> {
        validate(&parse(patch.as_bytes()).unwrap())
    }

    fn new_file(path: &str) -> String {
        format!(
            "diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
        )
    }

    fn new_link(path: &str, target: &str) -> String {
        format!(
            "diff --git a/{path} b/{path}\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
        )
    }

    #[test]
    fn ordinary_changes_pass() {
        let fine = [
            new_file("src/main.rs"),
            new_file(".gitignore"),
            new_file("docs/.github/x"),
            new_link("lib/current", "v2"),
            new_link("a/b/up", "../../top"),
            new_link("a/self", "."),
            "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n".to_string(),
            "diff --git a/a b/b\nsimilarity index 100%\nrename from a\nrename to b\n".to_string(),
        ];
        for patch in fine {
            check(&patch).unwrap_or_else(|e| panic!("{patch}: {e}"));
        }
    }

    #[test]
    fn hostile_changes_are_refused_naming_the_path() {
        let two = |a: String, b: String| a + &b;
        let table: Vec<(String, &str, &str)> = vec![
            (new_file(".git/hooks/post-checkout"), ".git/hooks/post-checkout", "into .git"),
            (new_file("sub/.GIT/config"), "sub/.GIT/config", "into .git"),
            (new_file("../escape"), "../escape", "`..`"),
            (new_file("a/../../escape"), "a/../../escape", "`..`"),
            (
                "diff --git a//etc/x b//etc/x\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b//etc/x\n@@ -0,0 +1 @@\n+x\n".to_string(),
                "/etc/x",
                "absolute",
            ),
            (new_link("out", "/etc/passwd"), "out", "outside the repository"),
            (new_link("a/out", "../../etc"), "a/out", "outside the repository"),
            (new_link("hooks", ".git/hooks"), "hooks", "into .git"),
            (new_link("a/hooks", "../.git"), "a/hooks", "into .git"),
            (
                two(new_link("dir", "sub"), new_file("dir/planted")),
                "dir/planted",
                "a symlink this patch creates",
            ),
            (
                "diff --git a/l b/l\nold mode 100644\nnew mode 120000\n".to_string(),
                "l",
                "without the patch showing",
            ),
            (
                "diff --git a/m b/m\nnew file mode 160000\nindex 0000000..1111111\n".to_string(),
                "m",
                "submodule",
            ),
            (
                "diff --git a/l b/l\nnew file mode 120000\nindex 0000000..5555555\nGIT binary patch\nliteral 5\nMcmZQzU|?VX00Dyl00000\n\n".to_string(),
                "l",
                "binary data",
            ),
        ];
        for (patch, path, reason) in table {
            let error = check(&patch).expect_err(&patch);
            assert!(
                error.path == path && error.reason.contains(reason),
                "{patch}: {error}"
            );
        }
    }
}
