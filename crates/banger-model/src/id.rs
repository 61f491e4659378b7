//! VM ids: 16 lowercase hex characters (64 random bits), stable for a VM's whole life
//! while its name is what users type. The first 8 characters are the short form tables
//! print; lookups accept any unique prefix (see `lookup`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length of a VM id in characters.
pub const VM_ID_LEN: usize = 16;
/// Length of the short form.
pub const VM_ID_SHORT_LEN: usize = 8;

/// Why a string is not a VM id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("VM id {input:?} is {len} characters long; ids are {VM_ID_LEN} hex characters")]
    BadLength { input: String, len: usize },
    #[error("VM id {input:?} has {ch:?}; ids are lowercase hex characters")]
    BadChar { input: String, ch: char },
}

/// A VM's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmId(String);

impl VmId {
    /// The id for 64 random bits; the caller owns the randomness.
    pub fn from_random(bits: u64) -> VmId {
        VmId(format!("{bits:016x}"))
    }

    /// Checks `input` is 16 lowercase hex characters.
    pub fn parse(input: &str) -> Result<VmId, IdError> {
        let len = input.chars().count();
        if len != VM_ID_LEN {
            return Err(IdError::BadLength {
                input: input.to_owned(),
                len,
            });
        }
        if let Some(ch) = input
            .chars()
            .find(|c| !(c.is_ascii_digit() || ('a'..='f').contains(c)))
        {
            return Err(IdError::BadChar {
                input: input.to_owned(),
                ch,
            });
        }
        Ok(VmId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 characters, for tables and log lines.
    pub fn short(&self) -> &str {
        // Ids are ASCII by construction, so byte slicing is on a character boundary.
        &self.0[..VM_ID_SHORT_LEN]
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VmId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for VmId {
    type Err = IdError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        VmId::parse(input)
    }
}

impl TryFrom<String> for VmId {
    type Error = IdError;
    fn try_from(input: String) -> Result<Self, Self::Error> {
        VmId::parse(&input)
    }
}

impl From<VmId> for String {
    fn from(id: VmId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_random() {
        let cases = [
            (0, "0000000000000000"),
            (1, "0000000000000001"),
            (u64::MAX, "ffffffffffffffff"),
            (0x0123_4567_89ab_cdef, "0123456789abcdef"),
        ];
        for (bits, expected) in cases {
            let id = VmId::from_random(bits);
            assert_eq!(id.as_str(), expected);
            assert_eq!(VmId::parse(expected), Ok(id.clone()));
            assert_eq!(id.short(), &expected[..8]);
        }
    }

    #[test]
    fn parse_rejects() {
        let cases = [
            (
                "",
                IdError::BadLength {
                    input: "".into(),
                    len: 0,
                },
            ),
            (
                "0123456789abcde",
                IdError::BadLength {
                    input: "0123456789abcde".into(),
                    len: 15,
                },
            ),
            (
                "0123456789abcdef0",
                IdError::BadLength {
                    input: "0123456789abcdef0".into(),
                    len: 17,
                },
            ),
            (
                "0123456789ABCDEF",
                IdError::BadChar {
                    input: "0123456789ABCDEF".into(),
                    ch: 'A',
                },
            ),
            (
                "0123456789abcdeg",
                IdError::BadChar {
                    input: "0123456789abcdeg".into(),
                    ch: 'g',
                },
            ),
            (
                "0123456789abcdeé",
                IdError::BadChar {
                    input: "0123456789abcdeé".into(),
                    ch: 'é',
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(VmId::parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let id: VmId = serde_json::from_str("\"00000000000000ff\"").unwrap();
        assert_eq!(id, VmId::from_random(255));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"00000000000000ff\"");
        assert!(serde_json::from_str::<VmId>("\"xyz\"").is_err());
    }
}
