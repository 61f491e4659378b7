//! parse: git's `diff --git` patch format, read strictly. Every line must belong to a
//! file section (header, extended headers, text hunks counted by their `@@` ranges,
//! binary `literal`/`delta` blocks); anything else is an error naming the line, because
//! a line this parser skips could be one `git apply` acts on. Names come from every
//! place git puts them (the `diff --git` line, `rename`/`copy` lines, `---`/`+++`) and
//! must agree.

use crate::MODE_SYMLINK;
use crate::quote::{split_quoted, unquote};

/// What a section does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Added,
    Deleted,
    Modified,
    Renamed,
    Copied,
}

/// One file section of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub status: Status,
    /// The path before (absent for an added file).
    pub old_path: Option<Vec<u8>>,
    /// The path after (absent for a deleted file).
    pub new_path: Option<Vec<u8>>,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// A `GIT binary patch` section.
    pub binary: bool,
    /// For a file that is a symlink after the patch: where it points (its one added line).
    pub symlink_target: Option<Vec<u8>>,
    /// Every name the section mentions, for the checks.
    pub names: Vec<Vec<u8>>,
}

impl FileChange {
    /// The path the change is best known by: the new one, else the old one.
    pub fn path(&self) -> &[u8] {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

fn fail<T>(index: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line: index + 1,
        reason: reason.into(),
    })
}

/// Parses a whole patch (possibly empty).
pub fn parse(patch: &[u8]) -> Result<Vec<FileChange>, ParseError> {
    let mut lines: Vec<&[u8]> = patch.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    let mut changes = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let (change, next) = section(&lines, index)?;
        changes.push(change);
        index = next;
    }
    Ok(changes)
}

/// The section starting at `start`; returns it and the index after it.
fn section(lines: &[&[u8]], start: usize) -> Result<(FileChange, usize), ParseError> {
    let Some(header) = lines[start].strip_prefix(b"diff --git ") else {
        return fail(start, "expected a `diff --git` line");
    };
    let header_names = header_names(header);
    let mut index = start + 1;
    let mut status = Status::Modified;
    let (mut old_mode, mut new_mode, mut index_mode) = (None, None, None);
    let (mut from, mut to): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut names: Vec<Vec<u8>> = Vec::new();
    while index < lines.len() {
        let line = lines[index];
        if let Some(mode) = line.strip_prefix(b"old mode ") {
            old_mode = Some(parse_mode(mode, index)?);
        } else if let Some(mode) = line.strip_prefix(b"new mode ") {
            new_mode = Some(parse_mode(mode, index)?);
        } else if let Some(mode) = line.strip_prefix(b"deleted file mode ") {
            old_mode = Some(parse_mode(mode, index)?);
            status = Status::Deleted;
        } else if let Some(mode) = line.strip_prefix(b"new file mode ") {
            new_mode = Some(parse_mode(mode, index)?);
            status = Status::Added;
        } else if let Some(name) = line.strip_prefix(b"rename from ") {
            from = Some(plain_name(name, index)?);
            status = Status::Renamed;
        } else if let Some(name) = line.strip_prefix(b"rename to ") {
            to = Some(plain_name(name, index)?);
        } else if let Some(name) = line.strip_prefix(b"copy from ") {
            from = Some(plain_name(name, index)?);
            status = Status::Copied;
        } else if let Some(name) = line.strip_prefix(b"copy to ") {
            to = Some(plain_name(name, index)?);
        } else if let Some(rest) = line
            .strip_prefix(b"similarity index ")
            .or_else(|| line.strip_prefix(b"dissimilarity index "))
        {
            if !rest.ends_with(b"%") || !rest[..rest.len() - 1].iter().all(u8::is_ascii_digit) {
                return fail(index, "a malformed similarity line");
            }
        } else if let Some(rest) = line.strip_prefix(b"index ") {
            index_mode = index_line(rest, index)?;
        } else {
            break;
        }
        index += 1;
    }
    let effective_new_mode = new_mode.or(index_mode);
    let mut symlink_target = None;
    let mut binary = false;
    let (mut minus, mut plus) = (None, None);
    if index < lines.len() && lines[index].starts_with(b"--- ") {
        minus = Some(side_name(&lines[index][4..], b"a/", index)?);
        index += 1;
        let Some(plus_line) = lines.get(index).and_then(|l| l.strip_prefix(b"+++ ")) else {
            return fail(index, "`---` without `+++`");
        };
        plus = Some(side_name(plus_line, b"b/", index)?);
        index += 1;
        let mut added: Vec<Vec<u8>> = Vec::new();
        let mut hunks = 0;
        while index < lines.len() && lines[index].starts_with(b"@@ ") {
            index = hunk(lines, index, &mut added)?;
            hunks += 1;
        }
        if hunks == 0 {
            return fail(index, "`---`/`+++` without a hunk");
        }
        if effective_new_mode == Some(MODE_SYMLINK) && status != Status::Deleted {
            if added.len() != 1 {
                return fail(index, "a symlink whose new target is not exactly one line");
            }
            symlink_target = added.pop();
        }
    } else if index < lines.len() && lines[index] == b"GIT binary patch" {
        binary = true;
        index = binary_blocks(lines, index + 1)?;
    } else if index < lines.len() && lines[index].starts_with(b"Binary files ") {
        return fail(
            index,
            "a binary change without its data (the patch was not made with --binary)",
        );
    }
    if index < lines.len() && !lines[index].starts_with(b"diff --git ") {
        return fail(index, "an unexpected line (not part of any file's change)");
    }
    // Names: every source must agree.
    if minus.is_dev_null() {
        status = Status::Added;
    }
    if plus.is_dev_null() {
        status = Status::Deleted;
    }
    let old_path = pick(
        [
            from.clone(),
            minus.name(),
            header_names.as_ref().map(|(a, _)| a.clone()),
        ],
        start,
        "old",
    )?;
    let new_path = pick(
        [
            to.clone(),
            plus.name(),
            header_names.as_ref().map(|(_, b)| b.clone()),
        ],
        start,
        "new",
    )?;
    for name in [&from, &to, &minus.name(), &plus.name()]
        .into_iter()
        .flatten()
    {
        names.push(name.clone());
    }
    if let Some((a, b)) = header_names {
        names.push(a);
        names.push(b);
    }
    let (Some(old_path), Some(new_path)) = (old_path, new_path) else {
        return fail(start, "cannot tell which file this section changes");
    };
    // A pure rename or copy keeps the file's mode, which the patch then leaves out.
    let keeps_mode = matches!(status, Status::Renamed | Status::Copied) && plus.is_none();
    if effective_new_mode.is_none() && status != Status::Deleted && !keeps_mode {
        return fail(start, "no file mode for the change (git always gives one)");
    }
    let change = FileChange {
        status,
        old_path: (status != Status::Added).then_some(old_path),
        new_path: (status != Status::Deleted).then_some(new_path),
        old_mode: old_mode.or(index_mode),
        new_mode: if status == Status::Deleted {
            None
        } else {
            effective_new_mode
        },
        binary,
        symlink_target,
        names,
    };
    Ok((change, index))
}

/// The one name the sources agree on (`None` if none gives one).
fn pick(
    candidates: [Option<Vec<u8>>; 3],
    index: usize,
    which: &str,
) -> Result<Option<Vec<u8>>, ParseError> {
    let mut chosen: Option<Vec<u8>> = None;
    for candidate in candidates.into_iter().flatten() {
        match &chosen {
            Some(name) if *name != candidate => {
                return fail(
                    index,
                    format!(
                        "inconsistent {which} names {:?} and {:?}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(&candidate)
                    ),
                );
            }
            Some(_) => {}
            None => chosen = Some(candidate),
        }
    }
    Ok(chosen)
}

/// A `---`/`+++` name: `/dev/null`, or the prefix and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Side {
    DevNull,
    Name(Vec<u8>),
}

trait SideName {
    fn name(&self) -> Option<Vec<u8>>;
    fn is_dev_null(&self) -> bool;
}

impl SideName for Option<Side> {
    fn name(&self) -> Option<Vec<u8>> {
        match self {
            Some(Side::Name(name)) => Some(name.clone()),
            _ => None,
        }
    }
    fn is_dev_null(&self) -> bool {
        matches!(self, Some(Side::DevNull))
    }
}

fn side_name(text: &[u8], prefix: &[u8], index: usize) -> Result<Side, ParseError> {
    if text == b"/dev/null" {
        return Ok(Side::DevNull);
    }
    // git adds a tab after a name that contains a space.
    let text = text.strip_suffix(b"\t").unwrap_or(text);
    let name = if text.starts_with(b"\"") {
        match unquote(text) {
            Some(name) => name,
            None => return fail(index, "a malformed quoted name"),
        }
    } else {
        text.to_vec()
    };
    match name.strip_prefix(prefix) {
        Some(rest) => Ok(Side::Name(rest.to_vec())),
        None => fail(
            index,
            format!(
                "a name without the `{}` prefix",
                String::from_utf8_lossy(prefix)
            ),
        ),
    }
}

/// A `rename`/`copy` name: no prefix, maybe quoted.
fn plain_name(text: &[u8], index: usize) -> Result<Vec<u8>, ParseError> {
    if text.starts_with(b"\"") {
        return unquote(text).map_or_else(|| fail(index, "a malformed quoted name"), Ok);
    }
    Ok(text.to_vec())
}

/// The two names of a `diff --git a/X b/Y` line, when they can be told apart: quoted
/// names always; unquoted ones when both are the same (`a/N b/N`).
fn header_names(text: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let strip = |name: Vec<u8>, prefix: &[u8]| name.strip_prefix(prefix).map(<[u8]>::to_vec);
    if let Some((a, rest)) = split_quoted(text) {
        let rest = rest.strip_prefix(b" ")?;
        let b = if rest.starts_with(b"\"") {
            unquote(rest)?
        } else {
            rest.to_vec()
        };
        return Some((strip(a, b"a/")?, strip(b, b"b/")?));
    }
    if text.ends_with(b"\"") {
        // `a/plain "b/quoted"`
        let at = text.windows(3).position(|w| w == b" \"b")?;
        let a = text[..at].to_vec();
        let b = unquote(&text[at + 1..])?;
        return Some((strip(a, b"a/")?, strip(b, b"b/")?));
    }
    // "a/" N " b/" N: the name is (len - 5) / 2 bytes long.
    if text.len() < 5 || !(text.len() - 5).is_multiple_of(2) {
        return None;
    }
    let n = (text.len() - 5) / 2;
    let (a, b) = (&text[..n + 2], &text[n + 3..]);
    if &text[n + 2..n + 3] != b" " || !a.starts_with(b"a/") || !b.starts_with(b"b/") {
        return None;
    }
    (a[2..] == b[2..]).then(|| (a[2..].to_vec(), b[2..].to_vec()))
}

fn parse_mode(text: &[u8], index: usize) -> Result<u32, ParseError> {
    let digits = std::str::from_utf8(text)
        .ok()
        .filter(|t| (6..=7).contains(&t.len()) && t.bytes().all(|b| (b'0'..=b'7').contains(&b)));
    match digits.and_then(|t| u32::from_str_radix(t, 8).ok()) {
        Some(mode) => Ok(mode),
        None => fail(index, "a malformed file mode"),
    }
}

/// `index <hex>..<hex>[ <mode>]`: the mode when given.
fn index_line(text: &[u8], index: usize) -> Result<Option<u32>, ParseError> {
    let (hashes, mode) = match text.iter().position(|&b| b == b' ') {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let ok = hashes
        .split(|&b| b == b'.')
        .filter(|part| !part.is_empty())
        .all(|part| part.iter().all(u8::is_ascii_hexdigit))
        && hashes.windows(2).any(|w| w == b"..");
    if !ok {
        return fail(index, "a malformed index line");
    }
    mode.map(|mode| parse_mode(mode, index)).transpose()
}

/// One text hunk from its `@@` line; returns the index after it. Added lines go to
/// `added` (without their `+`).
fn hunk(lines: &[&[u8]], start: usize, added: &mut Vec<Vec<u8>>) -> Result<usize, ParseError> {
    let Some((mut old_left, mut new_left)) = hunk_ranges(lines[start]) else {
        return fail(start, "a malformed hunk header");
    };
    let mut index = start + 1;
    while old_left > 0 || new_left > 0 {
        let Some(line) = lines.get(index) else {
            return fail(index, "the patch ends inside a hunk");
        };
        match line.first() {
            Some(b' ') | None => {
                if old_left == 0 || new_left == 0 {
                    return fail(index, "a hunk longer than its header says");
                }
                old_left -= 1;
                new_left -= 1;
            }
            Some(b'-') if old_left > 0 => old_left -= 1,
            Some(b'+') if new_left > 0 => {
                new_left -= 1;
                added.push(line[1..].to_vec());
            }
            Some(b'\\') => {}
            _ => return fail(index, "an unexpected line inside a hunk"),
        }
        index += 1;
    }
    while lines
        .get(index)
        .is_some_and(|line| line.starts_with(b"\\ "))
    {
        index += 1;
    }
    Ok(index)
}

/// `@@ -a[,b] +c[,d] @@...`: the old and new line counts.
fn hunk_ranges(line: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let count = |range: &str| -> Option<u64> {
        let (start, count) = range.split_once(',').unwrap_or((range, "1"));
        start.parse::<u64>().ok()?;
        count.parse().ok()
    };
    Some((count(old)?, count(new)?))
}

/// One or two `literal N`/`delta N` blocks of base85 lines, each ended by an empty line.
fn binary_blocks(lines: &[&[u8]], start: usize) -> Result<usize, ParseError> {
    let mut index = start;
    for block in 0..2 {
        let Some(line) = lines.get(index) else {
            if block == 1 {
                return Ok(index);
            }
            return fail(index, "`GIT binary patch` without data");
        };
        let size = line
            .strip_prefix(b"literal ")
            .or_else(|| line.strip_prefix(b"delta "));
        match size {
            Some(size) if !size.is_empty() && size.iter().all(u8::is_ascii_digit) => {}
            _ if block == 1 => return Ok(index),
            _ => return fail(index, "a binary patch without a `literal` or `delta` line"),
        }
        index += 1;
        loop {
            let Some(line) = lines.get(index) else {
                return fail(index, "the patch ends inside binary data");
            };
            index += 1;
            if line.is_empty() {
                break;
            }
            let valid = line[0].is_ascii_alphabetic() && line[1..].iter().all(|b| is_base85(*b));
            if !valid {
                return fail(index - 1, "a malformed binary data line");
            }
        }
    }
    Ok(index)
}

fn is_base85(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&()*+-;<=>?@^_`{|}~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(patch: &str) -> FileChange {
        let mut changes = parse(patch.as_bytes()).unwrap();
        assert_eq!(changes.len(), 1, "{patch}");
        changes.remove(0)
    }

    #[test]
    fn the_shapes_git_writes_parse() {
        let modified = one(
            "diff --git a/src/x y.rs b/src/x y.rs\nindex 1111111..2222222 100644\n--- a/src/x y.rs\t\n+++ b/src/x y.rs\t\n@@ -1,2 +1,2 @@\n keep\n-old\n+new\n",
        );
        assert_eq!(modified.status, Status::Modified);
        assert_eq!(modified.new_path.as_deref(), Some(&b"src/x y.rs"[..]));
        assert_eq!(modified.new_mode, Some(0o100644));

        let added_link = one(
            "diff --git a/ln b/ln\nnew file mode 120000\nindex 0000000..3333333\n--- /dev/null\n+++ b/ln\n@@ -0,0 +1 @@\n+../target\n\\ No newline at end of file\n",
        );
        assert_eq!(added_link.status, Status::Added);
        assert_eq!(added_link.old_path, None);
        assert_eq!(
            added_link.symlink_target.as_deref(),
            Some(&b"../target"[..])
        );

        let renamed = one(
            "diff --git a/old name b/new name\nsimilarity index 100%\nrename from old name\nrename to new name\n",
        );
        assert_eq!(renamed.status, Status::Renamed);
        assert_eq!(renamed.old_path.as_deref(), Some(&b"old name"[..]));
        assert_eq!(renamed.new_path.as_deref(), Some(&b"new name"[..]));

        let chmod = one("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n");
        assert_eq!(
            (chmod.old_mode, chmod.new_mode),
            (Some(0o100644), Some(0o100755))
        );

        let deleted = one(
            "diff --git a/gone b/gone\ndeleted file mode 100644\nindex 4444444..0000000\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n",
        );
        assert_eq!(
            (deleted.status, deleted.new_path.clone()),
            (Status::Deleted, None)
        );

        let empty =
            one("diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n");
        assert_eq!(empty.status, Status::Added);

        let binary = one(
            "diff --git a/bin b/bin\nnew file mode 100644\nindex 0000000..5555555\nGIT binary patch\nliteral 5\nMcmZQzU|?VX00Dyl00000\n\nliteral 0\nHcmV?d00001\n\n",
        );
        assert!(binary.binary);

        let quoted = one(
            "diff --git \"a/caf\\303\\251\" \"b/caf\\303\\251\"\nnew file mode 100644\nindex 0000000..e69de29\n",
        );
        assert_eq!(quoted.new_path.as_deref(), Some("café".as_bytes()));
    }

    #[test]
    fn several_sections_and_an_empty_patch() {
        assert!(parse(b"").unwrap().is_empty());
        let two = "diff --git a/a b/a\nold mode 100644\nnew mode 100755\ndiff --git a/b b/b\nold mode 100755\nnew mode 100644\n";
        assert_eq!(parse(two.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn anything_unaccounted_for_is_refused_with_its_line() {
        let table: &[(&str, usize, &str)] = &[
            ("hello\n", 1, "expected a `diff --git`"),
            (
                "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
                1,
                "expected a `diff --git`",
            ),
            (
                "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
                8,
                "unexpected line",
            ),
            (
                "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n",
                8,
                "ends inside a hunk",
            ),
            (
                "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
                1,
                "inconsistent new names",
            ),
            (
                "diff --git a/x b/x\nBinary files a/x and b/x differ\n",
                2,
                "without its data",
            ),
            (
                "diff --git a/x b/x\nnew file mode 100644\nGIT binary patch\nliteral 3\n!!!\n\n",
                5,
                "malformed binary",
            ),
            (
                "diff --git a/x b/x\nold mode 10064x\n",
                2,
                "malformed file mode",
            ),
            (
                "diff --git a/x b/y z\nold mode 100644\nnew mode 100755\n",
                1,
                "cannot tell",
            ),
            (
                "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1,2 @@\n+a\n+b\n",
                8,
                "not exactly one line",
            ),
            (
                "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
                1,
                "no file mode",
            ),
        ];
        for (patch, line, reason) in table {
            let error = parse(patch.as_bytes()).unwrap_err();
            assert!(
                error.line == *line && error.reason.contains(reason),
                "{patch:?}: {error}"
            );
        }
    }
}
