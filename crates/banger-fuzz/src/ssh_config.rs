//! The `ssh_config` target: `banger ssh-config --install/--uninstall`'s plan for the
//! user's `~/.ssh/config`, given any bytes as that file.

use banger_ssh::user_config::{FileChange, Layout, MARKER_LINE, plan_install, plan_uninstall};
use std::path::Path;

/// The layouts tried: plain paths, and paths that need quoting.
fn layouts() -> [Layout; 2] {
    [
        Layout::new(
            Path::new("/home/u"),
            Path::new("/home/u/.config/banger"),
            Path::new("/usr/bin/banger"),
        ),
        Layout::new(
            Path::new("/home/a \"b\"\\c"),
            Path::new("/c d/#banger"),
            Path::new("/opt/it's 100%/banger"),
        ),
    ]
}

/// A line's content without `\n` or `\r\n`, as the planner reads it.
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').collect()
}

/// The user's file after `change`, from `before`.
fn apply(before: Option<&[u8]>, change: &FileChange) -> Option<Vec<u8>> {
    match change {
        FileChange::Keep => before.map(<[u8]>::to_vec),
        FileChange::Write(bytes) => Some(bytes.clone()),
        FileChange::Remove => None,
    }
}

/// Panics when a plan breaks a promise: install adds exactly the marker and the
/// `Include` on top and leaves every byte of the user's file after them; installing
/// again changes nothing; uninstall after install gives back the file byte for byte (or
/// no file, if there was none or it was empty); uninstall alone only removes whole
/// `Include` lines of banger's file (and the marker just above one), and twice changes
/// nothing the second time. banger's own file is written with its block, or kept when it
/// already has it.
pub fn ssh_config(data: &[u8]) {
    for layout in layouts() {
        let include = layout.include_line();
        let head = format!("{MARKER_LINE}\n{include}\n").into_bytes();
        let block = layout.banger_block().into_bytes();
        let has_include = lines(data)
            .iter()
            .any(|line| content(line) == include.as_bytes());

        // banger's own file: kept only when it is exactly the block.
        let plan = plan_install(&layout, None, Some(data));
        if data == block.as_slice() {
            assert_eq!(plan.banger_config, FileChange::Keep);
        } else {
            assert_eq!(plan.banger_config, FileChange::Write(block.clone()));
        }

        for user in [None, Some(data)] {
            let plan = plan_install(&layout, user, None);
            assert_eq!(plan.banger_config, FileChange::Write(block.clone()));
            let installed = match &plan.user_config {
                FileChange::Keep => {
                    assert!(
                        user.is_some() && has_include,
                        "install kept a file without the Include: {user:?}"
                    );
                    user.unwrap_or_default().to_vec()
                }
                FileChange::Write(bytes) => {
                    assert!(user.is_none() || !has_include, "a second Include");
                    let rest = bytes
                        .strip_prefix(head.as_slice())
                        .expect("install writes the marker and the Include on top");
                    assert_eq!(rest, user.unwrap_or_default(), "the user's bytes changed");
                    bytes.clone()
                }
                FileChange::Remove => panic!("install removed the user's file"),
            };
            // Installing again changes nothing.
            let again = plan_install(&layout, Some(&installed), Some(&block));
            assert!(again.is_noop(), "install is not idempotent: {again:?}");
            // Uninstall after an install that wrote gives the original back.
            if matches!(plan.user_config, FileChange::Write(_)) {
                let back = plan_uninstall(&layout, Some(&installed), Some(&block));
                assert_eq!(back.banger_config, FileChange::Remove);
                let expected = match user {
                    Some(original) if !original.is_empty() => FileChange::Write(original.to_vec()),
                    _ => FileChange::Remove,
                };
                assert_eq!(back.user_config, expected, "uninstall did not restore");
            }
        }

        // Uninstall of any file: whole lines removed, only banger's.
        let plan = plan_uninstall(&layout, Some(data), None);
        assert_eq!(plan.banger_config, FileChange::Keep);
        if !has_include {
            assert_eq!(
                plan.user_config,
                FileChange::Keep,
                "nothing of ours to remove"
            );
        }
        let after = apply(Some(data), &plan.user_config);
        let kept = after.as_deref().map(lines).unwrap_or_default();
        assert!(
            kept.iter().all(|line| content(line) != include.as_bytes()),
            "an Include is left"
        );
        // What is left is the file without its Include lines and without some marker
        // lines (at most one per Include); every other line is there, in order.
        let is_marker = |line: &[u8]| content(line) == MARKER_LINE.as_bytes();
        let original: Vec<&[u8]> = lines(data)
            .into_iter()
            .filter(|line| content(line) != include.as_bytes())
            .collect();
        let includes = lines(data).len() - original.len();
        let mut left = kept.iter().peekable();
        let mut markers_dropped = 0;
        for line in original {
            if left.peek() == Some(&&line) {
                left.next();
            } else {
                assert!(
                    is_marker(line),
                    "uninstall removed a line of the user's: {line:?}"
                );
                markers_dropped += 1;
            }
        }
        assert!(left.next().is_none(), "uninstall added or reordered lines");
        assert!(
            markers_dropped <= includes,
            "more markers than Includes removed"
        );
        if plan.user_config == FileChange::Remove {
            assert!(has_include, "uninstall removed a file without our Include");
        }
        let twice = plan_uninstall(&layout, after.as_deref(), None);
        assert_eq!(
            twice.user_config,
            FileChange::Keep,
            "uninstall twice changed more"
        );
    }
}
