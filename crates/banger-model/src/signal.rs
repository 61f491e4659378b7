//! Signals a user may send to a guest process (`vm exec --signal`, `vm kill`). A closed
//! set rather than any number: these are the ones with the same meaning everywhere, and
//! the numbers are Linux x86_64/arm64's (the only guests banger runs).
//!
//! Accepted spellings: the name with or without `SIG`, in any case (`TERM`, `SIGTERM`,
//! `term`), or the signal's number (`15`). Anything else, including surrounding spaces,
//! is an error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A signal banger forwards to guest processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GuestSignal {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Term,
}

/// Why a signal was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("unknown signal {input:?}; use one of {ALLOWED}")]
    Unknown { input: String },
    #[error("signal {number} is not one banger sends; use one of {ALLOWED}")]
    NotAllowed { number: u64 },
}

const ALLOWED: &str = "HUP, INT, QUIT, KILL, USR1, USR2, TERM (or their numbers)";

impl GuestSignal {
    pub const ALL: [GuestSignal; 7] = [
        GuestSignal::Hup,
        GuestSignal::Int,
        GuestSignal::Quit,
        GuestSignal::Kill,
        GuestSignal::Usr1,
        GuestSignal::Usr2,
        GuestSignal::Term,
    ];

    /// The Linux signal number.
    pub fn as_number(self) -> i32 {
        match self {
            GuestSignal::Hup => 1,
            GuestSignal::Int => 2,
            GuestSignal::Quit => 3,
            GuestSignal::Kill => 9,
            GuestSignal::Usr1 => 10,
            GuestSignal::Usr2 => 12,
            GuestSignal::Term => 15,
        }
    }

    /// The name without `SIG`, upper case (`TERM`).
    pub fn name(self) -> &'static str {
        match self {
            GuestSignal::Hup => "HUP",
            GuestSignal::Int => "INT",
            GuestSignal::Quit => "QUIT",
            GuestSignal::Kill => "KILL",
            GuestSignal::Usr1 => "USR1",
            GuestSignal::Usr2 => "USR2",
            GuestSignal::Term => "TERM",
        }
    }

    /// Parses a name or number per the module rules.
    pub fn parse(input: &str) -> Result<GuestSignal, SignalError> {
        if !input.is_empty() && input.chars().all(|c| c.is_ascii_digit()) {
            // Digits only: a number, possibly too large for any integer type.
            let number = input.parse::<u64>().unwrap_or(u64::MAX);
            return GuestSignal::ALL
                .into_iter()
                .find(|signal| u64::try_from(signal.as_number()) == Ok(number))
                .ok_or(SignalError::NotAllowed { number });
        }
        let upper = input.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        GuestSignal::ALL
            .into_iter()
            .find(|signal| signal.name() == bare)
            .ok_or_else(|| SignalError::Unknown {
                input: input.to_owned(),
            })
    }
}

impl fmt::Display for GuestSignal {
    /// `SIGTERM`, the form people search for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl FromStr for GuestSignal {
    type Err = SignalError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        GuestSignal::parse(input)
    }
}

impl TryFrom<String> for GuestSignal {
    type Error = SignalError;
    fn try_from(input: String) -> Result<Self, Self::Error> {
        GuestSignal::parse(&input)
    }
}

impl From<GuestSignal> for String {
    fn from(signal: GuestSignal) -> String {
        signal.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        use GuestSignal::*;
        let cases = [
            ("KILL", Kill),
            ("SIGKILL", Kill),
            ("kill", Kill),
            ("sigkill", Kill),
            ("SigKill", Kill),
            ("9", Kill),
            ("TERM", Term),
            ("15", Term),
            ("INT", Int),
            ("2", Int),
            ("HUP", Hup),
            ("1", Hup),
            ("QUIT", Quit),
            ("3", Quit),
            ("USR1", Usr1),
            ("10", Usr1),
            ("USR2", Usr2),
            ("12", Usr2),
            ("09", Kill),
        ];
        for (input, expected) in cases {
            assert_eq!(GuestSignal::parse(input), Ok(expected), "{input:?}");
        }
        for signal in GuestSignal::ALL {
            assert_eq!(GuestSignal::parse(&signal.to_string()), Ok(signal));
            assert_eq!(
                GuestSignal::parse(&signal.as_number().to_string()),
                Ok(signal)
            );
        }
    }

    #[test]
    fn rejected() {
        let unknown = |s: &str| SignalError::Unknown {
            input: s.to_owned(),
        };
        let cases = [
            ("", unknown("")),
            ("SIG", unknown("SIG")),
            ("STOP", unknown("STOP")),
            ("SIGSTOP", unknown("SIGSTOP")),
            (" TERM", unknown(" TERM")),
            ("TERM ", unknown("TERM ")),
            ("-9", unknown("-9")),
            ("+9", unknown("+9")),
            ("SIGSIGTERM", unknown("SIGSIGTERM")),
            ("0", SignalError::NotAllowed { number: 0 }),
            ("19", SignalError::NotAllowed { number: 19 }),
            ("64", SignalError::NotAllowed { number: 64 }),
            (
                "99999999999999999999999",
                SignalError::NotAllowed { number: u64::MAX },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(GuestSignal::parse(input), Err(expected), "{input:?}");
        }
        assert_eq!(
            GuestSignal::parse("STOP").unwrap_err().to_string(),
            "unknown signal \"STOP\"; use one of HUP, INT, QUIT, KILL, USR1, USR2, TERM (or their numbers)"
        );
    }

    #[test]
    fn serde_uses_names() {
        assert_eq!(
            serde_json::to_string(&GuestSignal::Term).unwrap(),
            "\"TERM\""
        );
        assert_eq!(
            serde_json::from_str::<GuestSignal>("\"sigint\"").unwrap(),
            GuestSignal::Int
        );
        assert!(serde_json::from_str::<GuestSignal>("\"STOP\"").is_err());
    }
}
