//! Planning `banger ssh-config --install/--uninstall`, as pure functions from the current
//! bytes of the two files involved to the change each needs:
//!
//! - `~/.ssh/banger_config`, banger's own file, holding a `Host *.vm` block with banger's
//!   key and known_hosts file;
//! - `~/.ssh/config`, the user's file, which gets exactly one `Include` of banger's file
//!   (with a comment line saying who added it) at the very top, because `Include` after a
//!   `Host` line would only apply inside that block.
//!
//! The user's bytes are never reformatted: install prepends, uninstall removes exactly
//! the prepended lines, so install + uninstall gives back the original file byte for byte.
//! Installing twice changes nothing the second time.

use std::path::{Path, PathBuf};

/// The files involved and the paths written into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `~/.ssh/config`.
    pub user_config: PathBuf,
    /// `~/.ssh/banger_config`.
    pub banger_config: PathBuf,
    /// banger's config directory (its ssh key and known_hosts file are under it).
    pub config_dir: PathBuf,
    /// The `banger` program, for the block's `ProxyCommand`.
    pub banger: PathBuf,
}

impl Layout {
    /// The layout for a home directory, banger's config directory and the path of the
    /// `banger` program.
    pub fn new(home: &Path, config_dir: &Path, banger: &Path) -> Layout {
        let ssh = home.join(".ssh");
        Layout {
            user_config: ssh.join("config"),
            banger_config: ssh.join("banger_config"),
            config_dir: config_dir.to_path_buf(),
            banger: banger.to_path_buf(),
        }
    }

    /// The contents of `banger_config`.
    pub fn banger_block(&self) -> String {
        format!(
            "# Written by `banger ssh-config --install`; removed by `--uninstall`.\n\
             # Lets `ssh <vm>.vm` reach banger's VMs with banger's own key.\n{}",
            crate::client::ssh_config_block(&self.config_dir, &self.banger)
        )
    }

    /// The `Include` line, without its newline.
    pub fn include_line(&self) -> String {
        format!(
            "Include {}",
            crate::client::quote(&self.banger_config.display().to_string())
        )
    }
}

/// The comment line install puts above the `Include`, so a reader knows where it came
/// from.
pub const MARKER_LINE: &str = "# Added by `banger ssh-config --install`; removed by `--uninstall`.";

/// What to do with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Leave it as it is (or absent, if absent).
    Keep,
    /// Write these bytes (creating the file if needed).
    Write(Vec<u8>),
    /// Delete the file.
    Remove,
}

/// The changes for both files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub user_config: FileChange,
    pub banger_config: FileChange,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.user_config == FileChange::Keep && self.banger_config == FileChange::Keep
    }
}

/// Splits into lines that keep their terminators, so joining them gives the input back.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').collect()
}

/// A line's content without `\n` or `\r\n`.
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The changes `--install` needs, given the current contents (None: no such file).
pub fn plan_install(layout: &Layout, user: Option<&[u8]>, banger: Option<&[u8]>) -> Plan {
    let block = layout.banger_block().into_bytes();
    let banger_config = if banger == Some(block.as_slice()) {
        FileChange::Keep
    } else {
        FileChange::Write(block)
    };
    let include = layout.include_line();
    let existing = user.unwrap_or_default();
    let already = lines(existing)
        .iter()
        .any(|line| content(line) == include.as_bytes());
    let user_config = if already {
        FileChange::Keep
    } else {
        let mut bytes = format!("{MARKER_LINE}\n{include}\n").into_bytes();
        bytes.extend_from_slice(existing);
        FileChange::Write(bytes)
    };
    Plan {
        user_config,
        banger_config,
    }
}

/// The changes `--uninstall` needs: the `Include` line (and the marker just above it)
/// leave the user's file, which is deleted only if nothing else is left in it.
pub fn plan_uninstall(layout: &Layout, user: Option<&[u8]>, banger: Option<&[u8]>) -> Plan {
    let banger_config = match banger {
        Some(_) => FileChange::Remove,
        None => FileChange::Keep,
    };
    let Some(existing) = user else {
        return Plan {
            user_config: FileChange::Keep,
            banger_config,
        };
    };
    let include = layout.include_line();
    let all = lines(existing);
    let mut kept: Vec<&[u8]> = Vec::with_capacity(all.len());
    let mut changed = false;
    for line in all {
        if content(line) == include.as_bytes() {
            changed = true;
            if kept
                .last()
                .is_some_and(|previous| content(previous) == MARKER_LINE.as_bytes())
            {
                kept.pop();
            }
            continue;
        }
        kept.push(line);
    }
    let user_config = if !changed {
        FileChange::Keep
    } else if kept.is_empty() {
        FileChange::Remove
    } else {
        FileChange::Write(kept.concat())
    };
    Plan {
        user_config,
        banger_config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(
            Path::new("/home/u"),
            Path::new("/home/u/.config/banger"),
            Path::new("/usr/bin/banger"),
        )
    }

    const HEAD: &str = "# Added by `banger ssh-config --install`; removed by `--uninstall`.\n\
                        Include /home/u/.ssh/banger_config\n";

    fn write(text: &str) -> FileChange {
        FileChange::Write(text.as_bytes().to_vec())
    }

    #[test]
    fn install_prepends_once() {
        let with_head = |rest: &str| format!("{HEAD}{rest}");
        let installed = with_head("Host a\n");
        let cases: Vec<(&str, Option<&str>, FileChange)> = vec![
            ("no file", None, write(HEAD)),
            ("empty file", Some(""), write(HEAD)),
            (
                "host blocks",
                Some("Host a\n  User x\n"),
                write(&with_head("Host a\n  User x\n")),
            ),
            (
                "no trailing newline",
                Some("Host a\n  User x"),
                write(&with_head("Host a\n  User x")),
            ),
            ("installed already", Some(&installed), FileChange::Keep),
            (
                "include added by hand, CRLF",
                Some("Host a\r\nInclude /home/u/.ssh/banger_config\r\n"),
                FileChange::Keep,
            ),
        ];
        for (what, user, expected) in cases {
            let plan = plan_install(&layout(), user.map(str::as_bytes), None);
            assert_eq!(plan.user_config, expected, "{what}");
            assert_eq!(
                plan.banger_config,
                FileChange::Write(layout().banger_block().into_bytes())
            );
        }
    }

    #[test]
    fn install_keeps_an_up_to_date_banger_config() {
        let block = layout().banger_block();
        let plan = plan_install(&layout(), Some(HEAD.as_bytes()), Some(block.as_bytes()));
        assert!(plan.is_noop());
        let stale = plan_install(&layout(), Some(HEAD.as_bytes()), Some(b"Host *.vm\n"));
        assert_eq!(stale.banger_config, FileChange::Write(block.into_bytes()));
    }

    #[test]
    fn uninstall_removes_exactly_what_install_added() {
        let cases: Vec<(&str, Option<String>, FileChange)> = vec![
            ("no file", None, FileChange::Keep),
            ("only ours", Some(HEAD.to_string()), FileChange::Remove),
            ("not installed", Some("Host a\n".into()), FileChange::Keep),
            (
                "ours on top",
                Some(format!("{HEAD}Host a\n  User x")),
                write("Host a\n  User x"),
            ),
            (
                "marker removed by the user",
                Some("Include /home/u/.ssh/banger_config\nHost a\n".into()),
                write("Host a\n"),
            ),
            (
                "a user comment above stays",
                Some("# mine\nInclude /home/u/.ssh/banger_config\n".into()),
                write("# mine\n"),
            ),
        ];
        for (what, user, expected) in cases {
            let plan = plan_uninstall(&layout(), user.as_deref().map(str::as_bytes), Some(b"x"));
            assert_eq!(plan.user_config, expected, "{what}");
            assert_eq!(plan.banger_config, FileChange::Remove, "{what}");
        }
    }

    #[test]
    fn install_then_uninstall_is_the_identity() {
        let originals = [
            "",
            "Host a\n",
            "Host a\n  User x",
            "\n\n# comment\r\nHost *\r\n",
            "Include other\nHost b\n",
        ];
        for original in originals {
            let FileChange::Write(installed) =
                plan_install(&layout(), Some(original.as_bytes()), None).user_config
            else {
                panic!("install must write for {original:?}");
            };
            let back = plan_uninstall(&layout(), Some(&installed), None).user_config;
            let expected = if original.is_empty() {
                FileChange::Remove
            } else {
                write(original)
            };
            assert_eq!(back, expected, "{original:?}");
        }
    }

    #[test]
    fn paths_with_spaces_are_quoted() {
        let layout = Layout::new(
            Path::new("/home/a b"),
            Path::new("/c d/banger"),
            Path::new("/usr/bin/banger"),
        );
        assert_eq!(
            layout.include_line(),
            "Include \"/home/a b/.ssh/banger_config\""
        );
        assert!(
            layout
                .banger_block()
                .contains("IdentityFile \"/c d/banger/ssh/id_ed25519\"\n")
        );
    }
}
