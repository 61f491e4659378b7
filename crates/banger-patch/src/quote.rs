//! quote: git's C-style quoting of path names (`"a/caf\303\251 \"x\""`), undone.

/// Unquotes a `"..."` name (the quotes included in `text`); `None` when it is not a
/// well-formed quoted name.
pub fn unquote(text: &[u8]) -> Option<Vec<u8>> {
    let inner = text.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'"' => return None,
            b'\\' => {
                let escaped = bytes.next()?;
                out.push(match escaped {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'0'..=b'3' => {
                        let second = bytes.next()?;
                        let third = bytes.next()?;
                        if !(b'0'..=b'7').contains(&second) || !(b'0'..=b'7').contains(&third) {
                            return None;
                        }
                        (escaped - b'0') * 64 + (second - b'0') * 8 + (third - b'0')
                    }
                    _ => return None,
                });
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Splits a quoted name off the front of `text`: (name, rest after it).
pub fn split_quoted(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    if text.first() != Some(&b'"') {
        return None;
    }
    let mut index = 1;
    while index < text.len() {
        match text[index] {
            b'\\' => index += 2,
            b'"' => {
                let name = unquote(&text[..=index])?;
                return Some((name, &text[index + 1..]));
            }
            _ => index += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_unquote() {
        let table: &[(&[u8], Option<&[u8]>)] = &[
            (br#""a/x y""#, Some(b"a/x y")),
            (br#""a/caf\303\251""#, Some("a/café".as_bytes())),
            (
                br#""a/q\"uote\\back\ttab\nnl""#,
                Some(b"a/q\"uote\\back\ttab\nnl"),
            ),
            (br#""a/\377""#, Some(b"a/\xff")),
            (br#""unterminated"#, None),
            (br#""bad\q""#, None),
            (br#""bad\48x""#, None),
            (b"plain", None),
        ];
        for (text, want) in table {
            assert_eq!(
                unquote(text).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let (name, rest) = split_quoted(br#""a/x\"y" "b/z""#).unwrap();
        assert_eq!(name, b"a/x\"y");
        assert_eq!(rest, br#" "b/z""#);
    }
}
