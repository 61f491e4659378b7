//! Byte sizes as users write them (`--memory 2GiB`, `--disk 8G`) and as banger prints them.
//!
//! Parsing rules:
//! - A number, optionally with a decimal part (`1.5GiB`), then an optional unit. No
//!   spaces, no sign, no exponent.
//! - A bare number means MiB: `2048` is 2 GiB. This matches what `--memory` has always
//!   meant for VM tools and keeps `--memory 512` natural.
//! - Units are binary whatever their spelling, case-insensitively: `B`; `K`, `KB`, `KiB`
//!   (1024); `M`, `MB`, `MiB`; `G`, `GB`, `GiB`; `T`, `TB`, `TiB`. Nobody sizing a VM disk
//!   means 10^9 by `G`, and two meanings for one letter would be a trap.
//! - The result must be a whole, non-zero number of bytes that fits in a u64: `1.5B` and
//!   `0.3KiB` are errors rather than silently rounded. At most 25 significant decimal
//!   places are considered.
//!
//! Display picks the largest unit that represents the value exactly: `4GiB`, `1536MiB`,
//! `7B`, so printing and parsing round-trip.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Most significant decimal places accepted; keeps the exact arithmetic inside u128.
const MAX_FRACTION_DIGITS: usize = 25;

/// A size in bytes. Serialises as a plain integer of bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Why a size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size is empty; expected a number with an optional unit such as 512MiB or 4GiB")]
    Empty,
    #[error("size {input:?} is zero; a size must be at least one byte")]
    Zero { input: String },
    #[error("size {input:?} is negative")]
    Negative { input: String },
    #[error("size {input:?} does not fit in 64 bits")]
    Overflow { input: String },
    #[error("size {input:?} has unknown unit {suffix:?}; use B, KiB, MiB, GiB or TiB")]
    UnknownSuffix { input: String, suffix: String },
    #[error(
        "size {input:?} is not a number with an optional unit; expected e.g. 512MiB, 1.5GiB or 2048 (MiB)"
    )]
    Malformed { input: String },
    #[error("size {input:?} is not a whole number of bytes")]
    NotWholeBytes { input: String },
}

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn from_kib(kib: u64) -> ByteSize {
        ByteSize(kib.saturating_mul(KIB))
    }

    /// Saturates at u64::MAX, which no real size approaches.
    pub const fn from_mib(mib: u64) -> ByteSize {
        ByteSize(mib.saturating_mul(MIB))
    }

    pub const fn from_gib(gib: u64) -> ByteSize {
        ByteSize(gib.saturating_mul(GIB))
    }

    /// Whole MiB, rounded down; check [`ByteSize::is_whole_mib`] where that matters.
    pub const fn as_mib(self) -> u64 {
        self.0 / MIB
    }

    pub const fn is_whole_mib(self) -> bool {
        self.0.is_multiple_of(MIB)
    }

    /// Parses a size per the module rules.
    pub fn parse(input: &str) -> Result<ByteSize, SizeError> {
        let owned = || input.to_owned();
        if input.is_empty() {
            return Err(SizeError::Empty);
        }
        if input.starts_with('-') {
            return Err(SizeError::Negative { input: owned() });
        }
        let split = input
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(input.len());
        let (number, suffix) = input.split_at(split);
        if number.is_empty() || suffix.chars().any(|c| !c.is_ascii_alphabetic()) {
            return Err(SizeError::Malformed { input: owned() });
        }
        let multiplier = match suffix.to_ascii_lowercase().as_str() {
            "" => MIB,
            "b" => 1,
            "k" | "kb" | "kib" => KIB,
            "m" | "mb" | "mib" => MIB,
            "g" | "gb" | "gib" => GIB,
            "t" | "tb" | "tib" => TIB,
            _ => {
                return Err(SizeError::UnknownSuffix {
                    input: owned(),
                    suffix: suffix.to_owned(),
                });
            }
        };
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        let has_point = number.contains('.');
        if whole.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || (has_point && fraction.is_empty())
        {
            return Err(SizeError::Malformed { input: owned() });
        }
        // Leading zeros are harmless for the value; strip them so long zero runs do not
        // count as overflow.
        let whole = whole.trim_start_matches('0');
        let whole: u128 = if whole.is_empty() {
            0
        } else if whole.len() > 20 {
            return Err(SizeError::Overflow { input: owned() });
        } else {
            whole
                .parse()
                .map_err(|_| SizeError::Malformed { input: owned() })?
        };
        // Trailing zeros do not change the value; strip them before the digit limit.
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > MAX_FRACTION_DIGITS {
            return Err(SizeError::Malformed { input: owned() });
        }
        let multiplier = u128::from(multiplier);
        let mut total = whole
            .checked_mul(multiplier)
            .ok_or_else(|| SizeError::Overflow { input: owned() })?;
        if !fraction.is_empty() {
            let numerator: u128 = fraction
                .parse()
                .map_err(|_| SizeError::Malformed { input: owned() })?;
            // Both fit: numerator < 10^25 < 2^84 and multiplier <= 2^40.
            let scale = 10u128.pow(fraction.len() as u32);
            let scaled = numerator * multiplier;
            if !scaled.is_multiple_of(scale) {
                return Err(SizeError::NotWholeBytes { input: owned() });
            }
            total += scaled / scale;
        }
        let bytes = u64::try_from(total).map_err(|_| SizeError::Overflow { input: owned() })?;
        if bytes == 0 {
            return Err(SizeError::Zero { input: owned() });
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")];
        for (unit, label) in units {
            if self.0 != 0 && self.0.is_multiple_of(unit) {
                return write!(f, "{}{label}", self.0 / unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        ByteSize::parse(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases: &[(&str, u64)] = &[
            ("4GiB", 4 * GIB),
            ("512MiB", 512 * MIB),
            ("4KiB", 4 * KIB),
            ("2G", 2 * GIB),
            ("1.5GiB", 1536 * MIB),
            ("1TiB", TIB),
            ("100M", 100 * MIB),
            ("2048", 2 * GIB),
            ("1.5", 1536 * KIB),
            ("7B", 7),
            ("7b", 7),
            ("1gib", GIB),
            ("1GB", GIB),
            ("1mb", MIB),
            ("1KB", KIB),
            ("1k", KIB),
            ("2T", 2 * TIB),
            ("1tb", TIB),
            ("0.5KiB", 512),
            ("0.25MiB", 256 * KIB),
            ("1.50GiB", 1536 * MIB),
            ("007MiB", 7 * MIB),
            ("0.00000095367431640625GiB", 1024),
        ];
        for (input, expected) in cases {
            assert_eq!(ByteSize::parse(input), Ok(ByteSize(*expected)), "{input:?}");
        }
        assert_eq!(
            ByteSize::parse("18446744073709551615B"),
            Ok(ByteSize(u64::MAX))
        );
    }

    #[test]
    fn rejects() {
        let owned = |s: &str| s.to_owned();
        let cases: Vec<(&str, SizeError)> = vec![
            ("", SizeError::Empty),
            ("0", SizeError::Zero { input: owned("0") }),
            (
                "0GiB",
                SizeError::Zero {
                    input: owned("0GiB"),
                },
            ),
            (
                "0.0MiB",
                SizeError::Zero {
                    input: owned("0.0MiB"),
                },
            ),
            (
                "-1GiB",
                SizeError::Negative {
                    input: owned("-1GiB"),
                },
            ),
            ("-0", SizeError::Negative { input: owned("-0") }),
            (
                "18446744073709551616B",
                SizeError::Overflow {
                    input: owned("18446744073709551616B"),
                },
            ),
            (
                "16777216TiB",
                SizeError::Overflow {
                    input: owned("16777216TiB"),
                },
            ),
            (
                "99999999999999999999999999999999999999999",
                SizeError::Overflow {
                    input: owned("99999999999999999999999999999999999999999"),
                },
            ),
            (
                "4GiBs",
                SizeError::UnknownSuffix {
                    input: owned("4GiBs"),
                    suffix: owned("GiBs"),
                },
            ),
            (
                "4PiB",
                SizeError::UnknownSuffix {
                    input: owned("4PiB"),
                    suffix: owned("PiB"),
                },
            ),
            (
                "1e3",
                SizeError::Malformed {
                    input: owned("1e3"),
                },
            ),
            (
                "GiB",
                SizeError::Malformed {
                    input: owned("GiB"),
                },
            ),
            (
                "4 GiB",
                SizeError::Malformed {
                    input: owned("4 GiB"),
                },
            ),
            (
                " 4GiB",
                SizeError::Malformed {
                    input: owned(" 4GiB"),
                },
            ),
            (
                "4GiB ",
                SizeError::Malformed {
                    input: owned("4GiB "),
                },
            ),
            (
                "+4GiB",
                SizeError::Malformed {
                    input: owned("+4GiB"),
                },
            ),
            (
                "1.2.3",
                SizeError::Malformed {
                    input: owned("1.2.3"),
                },
            ),
            (
                ".5GiB",
                SizeError::Malformed {
                    input: owned(".5GiB"),
                },
            ),
            (
                "5.GiB",
                SizeError::Malformed {
                    input: owned("5.GiB"),
                },
            ),
            (
                "١٢",
                SizeError::Malformed {
                    input: owned("١٢")
                },
            ),
            (
                "1.5B",
                SizeError::NotWholeBytes {
                    input: owned("1.5B"),
                },
            ),
            (
                "0.3KiB",
                SizeError::NotWholeBytes {
                    input: owned("0.3KiB"),
                },
            ),
            (
                "0.0000000000000000000000001TiB",
                SizeError::NotWholeBytes {
                    input: owned("0.0000000000000000000000001TiB"),
                },
            ),
            // One digit past the precision limit.
            (
                "0.00000000000000000000000001TiB",
                SizeError::Malformed {
                    input: owned("0.00000000000000000000000001TiB"),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(ByteSize::parse(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let cases = [
            ("0.3KiB", "size \"0.3KiB\" is not a whole number of bytes"),
            (
                "4PiB",
                "size \"4PiB\" has unknown unit \"PiB\"; use B, KiB, MiB, GiB or TiB",
            ),
            ("-1", "size \"-1\" is negative"),
        ];
        for (input, message) in cases {
            assert_eq!(ByteSize::parse(input).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn displays_largest_exact_unit() {
        let cases: &[(u64, &str)] = &[
            (4 * GIB, "4GiB"),
            (512 * MIB, "512MiB"),
            (1536 * MIB, "1536MiB"),
            (4 * KIB, "4KiB"),
            (7, "7B"),
            (0, "0B"),
            (TIB, "1TiB"),
            (1024 * TIB, "1024TiB"),
            (MIB + 1, "1048577B"),
            (u64::MAX, "18446744073709551615B"),
        ];
        for (bytes, expected) in cases {
            let size = ByteSize(*bytes);
            assert_eq!(size.to_string(), *expected);
            if *bytes != 0 {
                assert_eq!(ByteSize::parse(expected), Ok(size), "round trip {expected}");
            }
        }
    }

    #[test]
    fn mib_helpers() {
        assert_eq!(ByteSize::from_mib(2048), ByteSize::from_gib(2));
        assert_eq!(ByteSize(3 * MIB + 5).as_mib(), 3);
        assert!(ByteSize::from_mib(3).is_whole_mib());
        assert!(!ByteSize(MIB + 1).is_whole_mib());
        assert_eq!(ByteSize::from_kib(1), ByteSize(1024));
        assert_eq!(ByteSize::from_mib(u64::MAX), ByteSize(u64::MAX));
    }

    #[test]
    fn serde_is_bytes() {
        let size = ByteSize::from_mib(512);
        assert_eq!(serde_json::to_string(&size).unwrap(), "536870912");
        assert_eq!(serde_json::from_str::<ByteSize>("7").unwrap(), ByteSize(7));
    }
}
