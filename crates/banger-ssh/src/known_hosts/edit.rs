//! Pure editing of known_hosts text (OpenSSH's format: `name1,name2 keytype base64
//! [comment]`, one entry a line). Works on bytes so that every line we do not touch comes
//! back byte for byte: comments, blank lines, CRLF endings, hashed (`|1|...`) entries,
//! `@cert-authority`/`@revoked` markers, and entries for other hosts.
//!
//! Removing a name takes it out of each entry's host list; an entry left with no names
//! is dropped, one with other names keeps them (and the rest of its line) as they were.

/// `existing` with every entry for `names` removed and one entry `names key` appended.
/// `key` is `<type> <base64>`; `names` are already validated (see `validate_pattern`).
pub fn record(existing: &[u8], names: &[String], key: &str) -> Vec<u8> {
    let (mut out, _) = remove(existing, names);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(names.join(",").as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'\n');
    out
}

/// `existing` without entries for `names`, and whether anything changed.
pub fn remove(existing: &[u8], names: &[String]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(existing.len());
    let mut changed = false;
    for line in existing.split_inclusive(|b| *b == b'\n') {
        match edit_line(line, names) {
            LineEdit::Keep => out.extend_from_slice(line),
            LineEdit::Drop => changed = true,
            LineEdit::Replace(new) => {
                out.extend_from_slice(&new);
                changed = true;
            }
        }
    }
    (out, changed)
}

/// The `<type> <base64>` keys recorded for `name`.
pub fn keys_for(existing: &[u8], name: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in existing.split_inclusive(|b| *b == b'\n') {
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if entry
            .hosts()
            .any(|host| host.eq_ignore_ascii_case(name.as_bytes()))
        {
            let mut fields = line[entry.hosts_end..]
                .split(u8::is_ascii_whitespace)
                .filter(|f| !f.is_empty());
            if let (Some(key_type), Some(base64)) = (fields.next(), fields.next()) {
                keys.push(format!(
                    "{} {}",
                    String::from_utf8_lossy(key_type),
                    String::from_utf8_lossy(base64)
                ));
            }
        }
    }
    keys
}

/// Whether `pattern` can be written as one known_hosts host name: a plain name or
/// address (`web.vm`, `172.30.0.5`, `fd00::5`, `[172.30.0.5]:2222`), never a wildcard,
/// negation, hash, list or anything that would split the line.
pub fn validate_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && !pattern.starts_with(['|', '@'])
        && pattern
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'*' | b'?' | b'!' | b'#' | b'"'))
}

enum LineEdit {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

/// A plain entry's host list: where it starts and ends in the line.
struct Entry<'a> {
    line: &'a [u8],
    hosts_start: usize,
    hosts_end: usize,
}

impl<'a> Entry<'a> {
    /// None for lines that are not plain entries (blank, comment, marker, hashed).
    fn parse(line: &'a [u8]) -> Option<Entry<'a>> {
        let hosts_start = line.iter().position(|b| !b.is_ascii_whitespace())?;
        if matches!(line[hosts_start], b'#' | b'@' | b'|') {
            return None;
        }
        let hosts_end = line[hosts_start..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(line.len(), |n| hosts_start + n);
        Some(Entry {
            line,
            hosts_start,
            hosts_end,
        })
    }

    fn hosts(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.line[self.hosts_start..self.hosts_end].split(|b| *b == b',')
    }
}

fn edit_line(line: &[u8], names: &[String]) -> LineEdit {
    let Some(entry) = Entry::parse(line) else {
        return LineEdit::Keep;
    };
    let is_ours = |host: &[u8]| {
        names
            .iter()
            .any(|n| host.eq_ignore_ascii_case(n.as_bytes()))
    };
    if !entry.hosts().any(is_ours) {
        return LineEdit::Keep;
    }
    let kept: Vec<&[u8]> = entry.hosts().filter(|h| !is_ours(h)).collect();
    if kept.iter().all(|h| h.is_empty()) {
        return LineEdit::Drop;
    }
    let mut new = line[..entry.hosts_start].to_vec();
    new.extend_from_slice(&kept.join(&b","[..]));
    new.extend_from_slice(&line[entry.hosts_end..]);
    LineEdit::Replace(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAnew";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn record_table() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            (
                "into nothing",
                "",
                &["web.vm", "172.30.0.5"],
                "web.vm,172.30.0.5 ssh-ed25519 AAAAnew\n",
            ),
            (
                "replaces the old key of a re-created VM",
                "web.vm,172.30.0.5 ssh-ed25519 AAAAold\n",
                &["web.vm", "172.30.0.5"],
                "web.vm,172.30.0.5 ssh-ed25519 AAAAnew\n",
            ),
            (
                "keeps other hosts' lines byte for byte",
                "# mine\r\ndb.vm,172.30.0.6  ssh-ed25519 AAAAdb   comment\r\n\n\
                 web.vm ssh-rsa AAAAold\n",
                &["web.vm", "172.30.0.5"],
                "# mine\r\ndb.vm,172.30.0.6  ssh-ed25519 AAAAdb   comment\r\n\n\
                 web.vm,172.30.0.5 ssh-ed25519 AAAAnew\n",
            ),
            (
                "an address reused by another VM moves to it",
                "old.vm,172.30.0.5 ssh-ed25519 AAAAold\n",
                &["web.vm", "172.30.0.5"],
                "old.vm ssh-ed25519 AAAAold\nweb.vm,172.30.0.5 ssh-ed25519 AAAAnew\n",
            ),
            (
                "names match case-insensitively, several lines at once",
                "WEB.vm ssh-ed25519 AAAA1\n172.30.0.5 ecdsa-sha2-nistp256 AAAA2\n",
                &["web.vm", "172.30.0.5"],
                "web.vm,172.30.0.5 ssh-ed25519 AAAAnew\n",
            ),
            (
                "a last line without newline gets one",
                "db.vm ssh-ed25519 AAAAdb",
                &["web.vm"],
                "db.vm ssh-ed25519 AAAAdb\nweb.vm ssh-ed25519 AAAAnew\n",
            ),
            (
                "hashed entries, markers and similar names are left alone",
                "|1|abc=|def= ssh-ed25519 AAAAh\n@revoked web.vm ssh-ed25519 AAAAr\n\
                 web.vm.example ssh-ed25519 AAAAx\n  # web.vm ssh-ed25519 AAAAc\n",
                &["web.vm"],
                "|1|abc=|def= ssh-ed25519 AAAAh\n@revoked web.vm ssh-ed25519 AAAAr\n\
                 web.vm.example ssh-ed25519 AAAAx\n  # web.vm ssh-ed25519 AAAAc\n\
                 web.vm ssh-ed25519 AAAAnew\n",
            ),
            (
                "indentation and the rest of a trimmed line are kept",
                "  a,web.vm,b\tssh-ed25519 AAAAold x\n",
                &["web.vm"],
                "  a,b\tssh-ed25519 AAAAold x\nweb.vm ssh-ed25519 AAAAnew\n",
            ),
        ];
        for (what, existing, list, expected) in cases {
            let out = record(existing.as_bytes(), &names(list), KEY);
            assert_eq!(String::from_utf8(out).unwrap(), *expected, "{what}");
        }
    }

    #[test]
    fn remove_table() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("", "web.vm", "", false),
            (
                "db.vm ssh-ed25519 A\n",
                "web.vm",
                "db.vm ssh-ed25519 A\n",
                false,
            ),
            (
                "web.vm,1.2.3.4 ssh-ed25519 A\ndb.vm ssh-ed25519 B\n",
                "web.vm",
                "1.2.3.4 ssh-ed25519 A\ndb.vm ssh-ed25519 B\n",
                true,
            ),
            (
                "web.vm ssh-ed25519 A\nweb.vm ssh-rsa B\n",
                "web.vm",
                "",
                true,
            ),
            // A host list with an empty name left over (a stray comma) is dropped whole.
            ("web.vm, ssh-ed25519 A\n", "web.vm", "", true),
            (
                "\u{ff}\u{fe} junk\nweb.vm ssh-ed25519 A",
                "web.vm",
                "\u{ff}\u{fe} junk\n",
                true,
            ),
        ];
        for (existing, name, expected, changed) in cases {
            // Non-UTF-8 bytes travel through untouched.
            let existing: Vec<u8> = existing.chars().map(|c| c as u32 as u8).collect();
            let expected: Vec<u8> = expected.chars().map(|c| c as u32 as u8).collect();
            let (out, did) = remove(&existing, &names(&[name]));
            assert_eq!(out, expected, "{existing:?}");
            assert_eq!(did, *changed, "{existing:?}");
        }
    }

    #[test]
    fn keys_for_table() {
        let text =
            b"web.vm,1.2.3.4 ssh-ed25519 AAAA1 c\n# web.vm x y\nWEB.VM ssh-rsa AAAA2\nweb.vm\n";
        assert_eq!(
            keys_for(text, "web.vm"),
            ["ssh-ed25519 AAAA1", "ssh-rsa AAAA2"]
        );
        assert_eq!(keys_for(text, "1.2.3.4"), ["ssh-ed25519 AAAA1"]);
        assert!(keys_for(text, "db.vm").is_empty());
    }

    #[test]
    fn patterns() {
        let cases = [
            ("web.vm", true),
            ("172.30.0.5", true),
            ("fd00::5", true),
            ("[172.30.0.5]:2222", true),
            ("", false),
            ("a b", false),
            ("a,b", false),
            ("*.vm", false),
            ("web?.vm", false),
            ("!web.vm", false),
            ("|1|x", false),
            ("@revoked", false),
            ("web.vm\n", false),
            ("wéb.vm", false),
        ];
        for (pattern, ok) in cases {
            assert_eq!(validate_pattern(pattern), ok, "{pattern:?}");
        }
    }
}
