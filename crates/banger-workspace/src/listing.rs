//! The dry-run listing: one line per entry, paths quoted the way git quotes them
//! (`"a\nb"`, octal escapes for bytes that are not printable UTF-8) when they hold
//! anything a line-oriented reader would trip on, so the list is exact and one path per
//! line even for hostile names.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::plan::{EntryKind, Plan};

/// `path` as one line: as is when plain, else C-quoted.
pub fn quote_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let plain = std::str::from_utf8(bytes).is_ok_and(|text| {
        !text
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    });
    if plain {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut out = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(err) => {
                let (good, bad) = rest.split_at(err.valid_up_to());
                let bad_len = err.error_len().unwrap_or(bad.len());
                (std::str::from_utf8(good).unwrap_or(""), &bad[..bad_len])
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:03o}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in bad {
            out.push_str(&format!("\\{b:03o}"));
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    out.push('"');
    out
}

/// The listing: every file, symlink and explicit directory, one per line, directories
/// with a trailing `/` and symlinks as `path -> target`.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for entry in &plan.entries {
        out.push_str(&quote_path(&entry.path));
        match &entry.kind {
            EntryKind::Dir => out.push('/'),
            EntryKind::Symlink { target } => {
                out.push_str(" -> ");
                out.push_str(&quote_path(target));
            }
            EntryKind::File { .. } => {}
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn plain_names_stay_as_they_are() {
        assert_eq!(quote_path(Path::new("src/main.rs")), "src/main.rs");
        assert_eq!(quote_path(Path::new("with space")), "with space");
        assert_eq!(quote_path(Path::new("-dash")), "-dash");
        assert_eq!(quote_path(Path::new("café")), "café");
    }

    #[test]
    fn hostile_names_are_quoted_one_per_line() {
        assert_eq!(quote_path(Path::new("a\nb")), "\"a\\nb\"");
        assert_eq!(quote_path(Path::new("q\"uote")), "\"q\\\"uote\"");
        let raw = Path::new(OsStr::from_bytes(b"bad\xffname"));
        assert_eq!(quote_path(raw), "\"bad\\377name\"");
        assert!(!quote_path(Path::new("x\ny\rz")).contains('\n'));
    }
}
