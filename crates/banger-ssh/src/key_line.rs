//! Parsing ssh public key lines (`<type> <base64> [comment]`), as found in `.pub` files,
//! in `dropbearkey -y` output and in known_hosts. Pure. The base64 blob is decoded and
//! its embedded type checked against the declared one, so a truncated or pasted-wrong
//! key is caught here rather than by ssh at connect time.

use base64::Engine as _;

use crate::error::{KeyLineError, SshError};

/// Host and user key types banger accepts.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// The ed25519 key type, banger's own key's type.
pub const ED25519: &str = "ssh-ed25519";

/// A validated public key: its type and base64 blob (the comment is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    pub base64: String,
}

impl PublicKey {
    /// `<type> <base64>`, the form written to known_hosts.
    pub fn to_line(&self) -> String {
        format!("{} {}", self.key_type, self.base64)
    }
}

/// Parses one line `<type> <base64> [comment]`.
pub fn parse_key_line(line: &str) -> Result<PublicKey, KeyLineError> {
    let mut fields = line.split_ascii_whitespace();
    let key_type = fields.next().ok_or(KeyLineError::NoKeyLine)?;
    if !KEY_TYPES.contains(&key_type) {
        return Err(KeyLineError::UnsupportedType(key_type.to_string()));
    }
    let encoded = fields
        .next()
        .ok_or_else(|| KeyLineError::MissingKey(key_type.to_string()))?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| KeyLineError::NotBase64)?;
    let (embedded, rest) = read_string(&blob).ok_or(KeyLineError::BadLength)?;
    if embedded != key_type.as_bytes() {
        return Err(KeyLineError::TypeMismatch {
            declared: key_type.to_string(),
            encoded: String::from_utf8_lossy(embedded).into_owned(),
        });
    }
    // ed25519 is the one type whose blob we check fully: a 32-byte key, nothing after.
    if key_type == ED25519 {
        match read_string(rest) {
            Some((key, [])) if key.len() == 32 => {}
            _ => return Err(KeyLineError::BadLength),
        }
    }
    Ok(PublicKey {
        key_type: key_type.to_string(),
        base64: encoded.to_string(),
    })
}

/// An SSH wire-format string: a big-endian u32 length, then that many bytes.
fn read_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let body = bytes.get(4..4usize.checked_add(len)?)?;
    Some((body, &bytes[4 + len..]))
}

/// Validates a guest's host public key as read from `/etc/ssh/ssh_host_ed25519_key.pub`,
/// or the output of dropbear's `dropbearkey -y` (a line starting with `ssh-` among
/// others), and returns the `<type> <base64>` line to record in known_hosts.
pub fn parse_host_public_key(text: &str) -> Result<String, SshError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| KEY_TYPES.iter().any(|t| line.starts_with(&format!("{t} "))))
        .ok_or(SshError::InvalidHostKey {
            source: KeyLineError::NoKeyLine,
        })?;
    parse_key_line(line)
        .map(|key| key.to_line())
        .map_err(|source| SshError::InvalidHostKey { source })
}

/// A syntactically valid ed25519 key line for `key`, for tests across the crate.
#[cfg(test)]
pub(crate) fn ed25519_line(key: [u8; 32], comment: &str) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(ED25519.as_bytes());
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&key);
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("{ED25519} {encoded} {comment}")
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real key from `ssh-keygen -t ed25519`.
    const REAL: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdhnK+XdkqZLyXaBqjwk8xZMvWiCY61zUEY7lurCAHw";

    #[test]
    fn host_keys_from_files_and_dropbear() {
        let dropbear =
            format!("Public key portion is:\n{REAL} root@web\nFingerprint: sha256!! SHA256:abc\n");
        let cases: &[(&str, String)] = &[
            ("a .pub file", format!("{REAL} root@web\n")),
            ("no comment, no newline", REAL.to_string()),
            ("CRLF and indentation", format!("  {REAL} root@web\r\n")),
            ("dropbearkey -y output", dropbear),
        ];
        for (what, text) in cases {
            assert_eq!(parse_host_public_key(text).unwrap(), REAL, "{what}");
        }
    }

    #[test]
    fn bad_host_keys() {
        let mut wrong_type_blob = ed25519_line([7; 32], "");
        wrong_type_blob = wrong_type_blob.replacen("ssh-ed25519", "ssh-rsa", 1);
        let cut_at_quantum = &REAL[..REAL.len() - 8];
        let cut_mid_quantum = &REAL[..REAL.len() - 7];
        let cases: &[(&str, &str, KeyLineError)] = &[
            ("empty", "", KeyLineError::NoKeyLine),
            (
                "a private key",
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n",
                KeyLineError::NoKeyLine,
            ),
            ("an unknown type", "ssh-foo AAAA x", KeyLineError::NoKeyLine),
            ("type only", "ssh-ed25519", KeyLineError::NoKeyLine),
            (
                "not base64",
                "ssh-ed25519 !!!! root@x",
                KeyLineError::NotBase64,
            ),
            (
                "the blob of another type",
                &wrong_type_blob,
                KeyLineError::TypeMismatch {
                    declared: "ssh-rsa".into(),
                    encoded: "ssh-ed25519".into(),
                },
            ),
            (
                "cut at a base64 quantum",
                cut_at_quantum,
                KeyLineError::BadLength,
            ),
            ("cut mid quantum", cut_mid_quantum, KeyLineError::NotBase64),
            (
                "short blob",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
                KeyLineError::BadLength,
            ),
        ];
        for (what, text, expected) in cases {
            match parse_host_public_key(text) {
                Err(SshError::InvalidHostKey { source }) => assert_eq!(&source, expected, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn key_lines() {
        let line = ed25519_line([1; 32], "banger");
        let key = parse_key_line(&line).unwrap();
        assert_eq!(key.key_type, "ssh-ed25519");
        assert_eq!(format!("{} banger", key.to_line()), line);
        assert_eq!(
            parse_key_line("ssh-dss AAAA"),
            Err(KeyLineError::UnsupportedType("ssh-dss".into()))
        );
        assert_eq!(
            parse_key_line("ssh-ed25519"),
            Err(KeyLineError::MissingKey("ssh-ed25519".into()))
        );
        assert_eq!(parse_key_line("   "), Err(KeyLineError::NoKeyLine));
    }
}
