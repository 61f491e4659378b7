//! Paths from layer archives, made safe: each name is split into components with `.` and
//! empty parts dropped, a leading `/` removed (an absolute name means the image's own
//! root), and `..` refused. Parent directories are then resolved through the symlinks
//! already in the tree, the way the guest's kernel would resolve them inside its root:
//! an absolute target restarts at the image root, and a link that climbs above the root
//! is refused. Nothing here touches the host's filesystem.

use crate::tree::{Kind, Tree};

/// Why a name from a layer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("`..` in the path")]
    DotDot,
    #[error("the path is not UTF-8")]
    NotUtf8,
    #[error("the symlink {link} in its parent path points outside the image")]
    ParentEscapes { link: String },
    #[error("too many levels of symlinks in its parent path (at {link})")]
    SymlinkLoop { link: String },
}

/// How many symlinks one resolution may follow (Linux's limit).
const MAX_HOPS: usize = 40;

/// The components of a layer entry's name: no `.`, no empty parts, no `..`. The empty
/// list is the root itself.
pub fn components(raw: &[u8]) -> Result<Vec<String>, PathError> {
    let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            other => parts.push(other.to_string()),
        }
    }
    Ok(parts)
}

/// Resolves `dirs` (the parent components of an entry) through the tree's symlinks and
/// returns the real directory path (`""` for the root). Components that do not exist yet
/// are kept as they are: inserting the entry creates them as directories.
pub fn resolve_dir(tree: &Tree, dirs: &[String]) -> Result<String, PathError> {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: std::collections::VecDeque<String> = dirs.iter().cloned().collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if resolved.pop().is_none() {
                    // Only symlink targets put `..` here; the entry's own name cannot.
                    return Err(PathError::ParentEscapes {
                        link: resolved.join("/"),
                    });
                }
                continue;
            }
            _ => {}
        }
        resolved.push(part);
        let here = resolved.join("/");
        let Some(node) = tree.get(&here) else {
            continue;
        };
        let Kind::Symlink(target) = &node.kind else {
            continue;
        };
        hops += 1;
        if hops > MAX_HOPS {
            return Err(PathError::SymlinkLoop { link: here });
        }
        resolved.pop();
        if target.starts_with('/') {
            resolved.clear();
        }
        let base = resolved.len();
        let mut expanded: Vec<String> = Vec::new();
        let mut depth = base as isize;
        for piece in target.split('/') {
            match piece {
                "" | "." => {}
                ".." => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(PathError::ParentEscapes { link: here });
                    }
                    expanded.push(piece.to_string());
                }
                other => {
                    depth += 1;
                    expanded.push(other.to_string());
                }
            }
        }
        for piece in expanded.into_iter().rev() {
            pending.push_front(piece);
        }
    }
    Ok(resolved.join("/"))
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    #[test]
    fn names_become_components() {
        let cases: &[(&str, Result<&[&str], PathError>)] = &[
            ("usr/bin/git", Ok(&["usr", "bin", "git"])),
            ("./usr//bin/", Ok(&["usr", "bin"])),
            ("/etc/passwd", Ok(&["etc", "passwd"])),
            ("./", Ok(&[])),
            ("../etc/passwd", Err(PathError::DotDot)),
            ("usr/../../etc", Err(PathError::DotDot)),
            ("a/b/..", Err(PathError::DotDot)),
        ];
        for (raw, expected) in cases {
            let got = components(raw.as_bytes());
            let expected = expected
                .clone()
                .map(|parts| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected, "{raw}");
        }
        assert_eq!(components(b"caf\xe9"), Err(PathError::NotUtf8));
    }

    #[test]
    fn parents_resolve_through_symlinks_inside_the_root() {
        let mut tree = Tree::new();
        tree.insert("usr/lib", Node::dir(0o755));
        tree.insert("lib", Node::symlink("usr/lib"));
        tree.insert("lib64", Node::symlink("/usr/lib"));
        tree.insert("usr/lib/x", Node::symlink("../share"));
        tree.insert("up", Node::symlink("../../.."));
        tree.insert("abs_up", Node::symlink("/../etc"));
        tree.insert("etc/alt", Node::symlink("/etc/alt2"));
        tree.insert("etc/alt2", Node::symlink("alt"));
        tree.insert("usr/lib/deep", Node::symlink("../../etc"));
        let dirs = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("lib/x86_64-linux-gnu", Ok("usr/lib/x86_64-linux-gnu")),
            ("lib64", Ok("usr/lib")),
            ("lib/x/y", Ok("usr/share/y")),
            ("usr/lib/deep", Ok("etc")),
            ("new/dir", Ok("new/dir")),
            (
                "up/etc",
                Err(PathError::ParentEscapes { link: "up".into() }),
            ),
            (
                "abs_up",
                Err(PathError::ParentEscapes {
                    link: "abs_up".into(),
                }),
            ),
            (
                "etc/alt",
                Err(PathError::SymlinkLoop {
                    link: "etc/alt".into(),
                }),
            ),
        ];
        for (path, expected) in cases {
            let got = resolve_dir(&tree, &dirs(path));
            assert_eq!(got, expected.clone().map(str::to_string), "{path}");
        }
    }
}
