//! Merged-/usr as path rewriting. Bookworm's base-files expects `/bin`, `/sbin`, `/lib`
//! and `/lib64` to be symlinks into `/usr`; packages still ship files under the old
//! paths. Instead of unpacking and moving directories, every path from a package is
//! rewritten on the way into the in-memory tree, and the four symlinks are added once.

/// The top-level directories that live under `/usr` on a merged system.
pub const MERGED_DIRS: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// Normalizes a path from an archive to the tree's form: relative, no `.` components, no
/// empty components, no trailing slash (`""` is the root). `..` components are resolved
/// lexically and cannot climb above the root.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Where a (normalized) package path lives on a merged-/usr system:
/// `bin/ls` → `usr/bin/ls`, `lib` → `usr/lib`, `etc/x` → `etc/x`.
pub fn fold_path(path: &str) -> String {
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    if MERGED_DIRS.contains(&first) {
        match rest {
            Some(rest) => format!("usr/{first}/{rest}"),
            None => format!("usr/{first}"),
        }
    } else {
        path.to_string()
    }
}

/// The target a symlink gets once its own path `link_path` (normalized, as shipped) is
/// folded. Absolute targets are kept: the top-level symlinks resolve them. A relative
/// target is kept when it still points at the same file from the new place (e.g.
/// `lib/x/libz.so.1 -> libz.so.1.2`); otherwise it becomes the absolute path it meant
/// (`bin/foo -> ../usr/bin/bar` becomes `/usr/bin/bar`).
pub fn fold_symlink_target(link_path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let parent = |path: &str| {
        path.rsplit_once('/')
            .map(|(dir, _)| dir.to_string())
            .unwrap_or_default()
    };
    let resolve = |dir: &str| normalize(&format!("{dir}/{target}"));
    let meant = resolve(&parent(link_path));
    let reached = resolve(&parent(&fold_path(link_path)));
    if fold_path(&meant) == fold_path(&reached) {
        target.to_string()
    } else {
        format!("/{meant}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        let cases = [
            ("./", ""),
            (".", ""),
            ("./usr/bin/", "usr/bin"),
            ("/etc//passwd", "etc/passwd"),
            ("a/./b/../c", "a/c"),
            ("../../etc", "etc"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "{input}");
        }
    }

    #[test]
    fn fold_paths() {
        let cases = [
            ("bin", "usr/bin"),
            ("bin/busybox", "usr/bin/busybox"),
            ("sbin/init", "usr/sbin/init"),
            (
                "lib/x86_64-linux-gnu/libc.so.6",
                "usr/lib/x86_64-linux-gnu/libc.so.6",
            ),
            (
                "lib64/ld-linux-x86-64.so.2",
                "usr/lib64/ld-linux-x86-64.so.2",
            ),
            ("usr/bin/git", "usr/bin/git"),
            ("etc/passwd", "etc/passwd"),
            ("binary/x", "binary/x"),
            ("libexec/x", "libexec/x"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(fold_path(input), expected, "{input}");
        }
    }

    #[test]
    fn fold_symlink_targets() {
        let cases = [
            // absolute targets resolve through /bin -> usr/bin and friends
            (
                "lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ),
            // same directory: still right after the move
            (
                "lib/x86_64-linux-gnu/libz.so.1",
                "libz.so.1.2.13",
                "libz.so.1.2.13",
            ),
            // link outside the folded dirs is not moved
            (
                "usr/lib/x86_64-linux-gnu/libz.so",
                "../../../lib/x86_64-linux-gnu/libz.so.1",
                "../../../lib/x86_64-linux-gnu/libz.so.1",
            ),
            // would point to usr/usr/bin/bar after the move: made absolute
            ("bin/foo", "../usr/bin/bar", "/usr/bin/bar"),
            // from sbin into bin, one level: sbin/x -> ../bin/y becomes usr/sbin/x -> ../bin/y = usr/bin/y, same file
            ("sbin/x", "../bin/y", "../bin/y"),
            ("bin/sh", "dash", "dash"),
        ];
        for (link, target, expected) in cases {
            assert_eq!(
                fold_symlink_target(link, target),
                expected,
                "{link} -> {target}"
            );
        }
    }
}
