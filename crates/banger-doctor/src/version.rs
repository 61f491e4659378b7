//! version: reading a tool's version out of its `--version` text. Pure, so every tool's
//! real output shape is a row in a table test.

use std::fmt;

/// A dotted version, compared numerically (1.47.10 > 1.47.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The first `N.N[.N]` in `text` that starts a word, or follows a `v` (`v1.0.6`) or an
/// underscore (`OpenSSH_9.2p1`). Digits inside a word (`mke2fs`, `x86_64`) are not
/// versions.
pub fn parse_version(text: &str) -> Option<Version> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|start| {
        if !bytes[start].is_ascii_digit() || !starts_version(bytes, start) {
            return None;
        }
        parse_dotted(&text[start..])
    })
}

fn starts_version(bytes: &[u8], start: usize) -> bool {
    let word_start = |index: usize| index == 0 || !bytes[index - 1].is_ascii_alphanumeric();
    if start == 0 {
        return true;
    }
    match bytes[start - 1] {
        b'_' => true,
        b'v' | b'V' => word_start(start - 1),
        previous => !previous.is_ascii_alphanumeric() && previous != b'.',
    }
}

/// `N.N` or `N.N.N` at the start of `text`; what follows the numbers does not matter.
fn parse_dotted(text: &str) -> Option<Version> {
    let mut parts = [0u32; 3];
    let mut count = 0;
    let mut rest = text;
    while count < 3 {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        parts[count] = rest[..digits].parse().ok()?;
        count += 1;
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
            _ => break,
        }
    }
    (count >= 2).then(|| Version::new(parts[0], parts[1], parts[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<Version>)] = &[
            (
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                 Copyright (c) 2003-2025 Fabrice Bellard",
                Some(Version::new(10, 0, 2)),
            ),
            (
                "QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)",
                Some(Version::new(7, 2, 15)),
            ),
            (
                "qemu-img version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
                Some(Version::new(10, 0, 2)),
            ),
            (
                "mke2fs 1.47.2 (1-Jan-2025)\n\tUsing EXT2FS Library version 1.47.2",
                Some(Version::new(1, 47, 2)),
            ),
            (
                "mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0",
                Some(Version::new(1, 47, 0)),
            ),
            ("debugfs 1.47.2 (1-Jan-2025)", Some(Version::new(1, 47, 2))),
            (
                "OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026",
                Some(Version::new(9, 2, 0)),
            ),
            ("git version 2.47.3", Some(Version::new(2, 47, 3))),
            (
                "nftables v1.0.6 (Lester Gooch #5)",
                Some(Version::new(1, 0, 6)),
            ),
            ("mmdebstrap 1.3.5", Some(Version::new(1, 3, 5))),
            (
                "Firecracker v1.10.1\n\nSupported snapshot data format versions: 5.0.0",
                Some(Version::new(1, 10, 1)),
            ),
            // Digits inside words are skipped; the first real version wins.
            ("tool-x86_64 build 3 v2.1", Some(Version::new(2, 1, 0))),
            ("abc1.2 then 3.4.5", Some(Version::new(3, 4, 5))),
            ("1.2.3.4", Some(Version::new(1, 2, 3))),
            ("version 12", None),
            ("version 1.", None),
            ("", None),
            ("command not found", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_version(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn ordering_is_numeric() {
        assert!(Version::new(1, 47, 10) > Version::new(1, 47, 2));
        assert!(Version::new(1, 47, 0) < Version::new(1, 47, 1));
        assert!(Version::new(2, 0, 0) > Version::new(1, 99, 99));
        assert_eq!(Version::new(1, 47, 1).to_string(), "1.47.1");
    }
}
