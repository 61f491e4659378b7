//! Names users give to VMs, images and kernels, and the rules they must follow.
//!
//! A VM name becomes a DNS label (`<name>.vm`), a directory name and part of host
//! interface names, so it is a strict DNS label: 1–63 characters of `[a-z0-9-]`, not
//! starting or ending with `-`. Image and kernel names are file names inside banger's
//! state directory, so they also allow `.` and `_` but must start and end with `[a-z0-9]`
//! (which rules out `.`, `..` and hidden files).
//!
//! Input is rejected as given, never normalised: `"Web"` or `" web"` are errors rather
//! than silently becoming `web`, so what the user typed is what the system stores.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest name accepted, in characters (a DNS label's limit).
pub const MAX_NAME_LEN: usize = 63;

/// Why a name was rejected. `what` is the kind of name (`VM name`, `image name`...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} characters long; the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "{what} has {ch:?} at position {position}; only {allowed} are allowed \
         (names are never lowercased or trimmed)"
    )]
    BadChar {
        what: &'static str,
        ch: char,
        /// 1-based character position.
        position: usize,
        allowed: &'static str,
    },
    #[error("{what} must not start with {ch:?}; it must start with a lowercase letter or digit")]
    BadStart { what: &'static str, ch: char },
    #[error("{what} must not end with {ch:?}; it must end with a lowercase letter or digit")]
    BadEnd { what: &'static str, ch: char },
}

/// The character rules of one kind of name.
struct NameRule {
    what: &'static str,
    allowed: &'static str,
    is_allowed: fn(char) -> bool,
}

const VM_RULE: NameRule = NameRule {
    what: "VM name",
    allowed: "lowercase letters, digits and '-'",
    is_allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
};

fn resource_rule(what: &'static str) -> NameRule {
    NameRule {
        what,
        allowed: "lowercase letters, digits, '.', '_' and '-'",
        is_allowed: |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_'
        },
    }
}

fn check(rule: &NameRule, input: &str) -> Result<(), NameError> {
    let what = rule.what;
    let len = input.chars().count();
    if len == 0 {
        return Err(NameError::Empty { what });
    }
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len,
            max: MAX_NAME_LEN,
        });
    }
    if let Some((index, ch)) = input
        .chars()
        .enumerate()
        .find(|(_, c)| !(rule.is_allowed)(*c))
    {
        return Err(NameError::BadChar {
            what,
            ch,
            position: index + 1,
            allowed: rule.allowed,
        });
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    // The input is non-empty here, so first and last characters exist.
    if let Some(first) = input.chars().next().filter(|c| !alnum(*c)) {
        return Err(NameError::BadStart { what, ch: first });
    }
    if let Some(last) = input.chars().next_back().filter(|c| !alnum(*c)) {
        return Err(NameError::BadEnd { what, ch: last });
    }
    Ok(())
}

/// A valid VM name (see the module docs for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VmName(String);

impl VmName {
    /// Checks `input` against the VM name rule, without changing it.
    pub fn parse(input: &str) -> Result<VmName, NameError> {
        check(&VM_RULE, input)?;
        Ok(VmName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A valid image or kernel name (see the module docs for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(String);

/// An image name; same rule as every [`ResourceName`].
pub type ImageName = ResourceName;
/// A kernel name; same rule as every [`ResourceName`].
pub type KernelName = ResourceName;

impl ResourceName {
    /// Checks `input` against the image/kernel name rule; errors say `name`.
    pub fn parse(input: &str) -> Result<ResourceName, NameError> {
        Self::parse_as("name", input)
    }

    /// Like [`ResourceName::parse`], with errors naming the kind (`"image name"`).
    pub fn parse_as(what: &'static str, input: &str) -> Result<ResourceName, NameError> {
        check(&resource_rule(what), input)?;
        Ok(ResourceName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(input: &str) -> Result<Self, Self::Err> {
                $ty::parse(input)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(input: String) -> Result<Self, Self::Error> {
                $ty::parse(&input)
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_newtype_impls!(VmName);
string_newtype_impls!(ResourceName);

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "bold", "brave", "breezy", "bright", "brisk", "calm", "clever", "cosmic",
    "crisp", "curious", "daring", "dapper", "eager", "fancy", "fast", "fierce", "frosty", "gentle",
    "glad", "golden", "grand", "happy", "hardy", "humble", "jolly", "keen", "kind", "lively",
    "lucky", "mellow", "merry", "mighty", "misty", "nimble", "noble", "plucky", "polite", "proud",
    "quick", "quiet", "rapid", "rusty", "sharp", "shiny", "silent", "silver", "sleek", "snappy",
    "solid", "spry", "steady", "stormy", "sunny", "swift", "tidy", "tiny", "trusty", "vivid",
    "warm", "wild", "wise", "witty", "zesty",
];

const NOUNS: &[&str] = &[
    "badger", "beaver", "bison", "bobcat", "condor", "coyote", "crane", "dingo", "dolphin",
    "eagle", "falcon", "ferret", "finch", "fox", "gecko", "gibbon", "heron", "hornet", "ibex",
    "jackal", "jaguar", "koala", "lemur", "lynx", "magpie", "marmot", "marten", "mink", "moose",
    "narwhal", "newt", "ocelot", "osprey", "otter", "owl", "panda", "panther", "pelican",
    "penguin", "puffin", "quokka", "rabbit", "raven", "robin", "salmon", "seal", "shrew", "skunk",
    "sparrow", "stoat", "swan", "tapir", "tiger", "toucan", "trout", "turtle", "viper", "walrus",
    "weasel", "wombat", "wren", "yak", "zebra",
];

/// How many random adjective-noun pairs to try before adding a numeric suffix.
const RANDOM_ATTEMPTS: usize = 8;

/// Makes a fresh VM name such as `brisk-otter`, for `vm create` without `--name`.
///
/// `rng` supplies randomness (the caller picks the source, tests pass a sequence) and
/// `taken` says whether a name is in use. After a few colliding random pairs the last
/// pair gets a numeric suffix (`brisk-otter-2`, `-3`, ...) until one is free, so this
/// ends whenever the set of taken names is finite. Every result satisfies [`VmName`]'s
/// rule: the word lists are lowercase ASCII and the longest result is far below 63.
pub fn generate_vm_name(rng: &mut impl FnMut() -> u64, taken: impl Fn(&str) -> bool) -> VmName {
    let mut pick = |words: &'static [&'static str]| {
        // The modulo bias over 64-bit values is irrelevant for picking a friendly name.
        let index = (rng() % words.len() as u64) as usize;
        words[index]
    };
    let mut base = String::new();
    for _ in 0..RANDOM_ATTEMPTS {
        base = format!("{}-{}", pick(ADJECTIVES), pick(NOUNS));
        if !taken(&base) {
            return VmName(base);
        }
    }
    let mut suffix: u64 = 2;
    loop {
        let candidate = format!("{base}-{suffix}");
        if !taken(&candidate) {
            return VmName(candidate);
        }
        suffix = suffix.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names_accepted() {
        for input in [
            "web",
            "a",
            "0",
            "web-1",
            "a--b",
            "123",
            &"a".repeat(63),
            "brisk-otter-2",
        ] {
            let name = VmName::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(name.as_str(), input);
            assert_eq!(name.to_string(), input);
        }
    }

    #[test]
    fn vm_names_rejected() {
        use NameError::*;
        let what = "VM name";
        let allowed = "lowercase letters, digits and '-'";
        let bad = |ch, position| BadChar {
            what,
            ch,
            position,
            allowed,
        };
        let cases: Vec<(String, NameError)> = vec![
            ("".into(), Empty { what }),
            (
                "a".repeat(64),
                TooLong {
                    what,
                    len: 64,
                    max: 63,
                },
            ),
            ("Web".into(), bad('W', 1)),
            ("wEb".into(), bad('E', 2)),
            (" web".into(), bad(' ', 1)),
            ("web ".into(), bad(' ', 4)),
            ("we_b".into(), bad('_', 3)),
            ("we.b".into(), bad('.', 3)),
            ("wé".into(), bad('é', 2)),
            ("web\n".into(), bad('\n', 4)),
            ("a/b".into(), bad('/', 2)),
            ("-web".into(), BadStart { what, ch: '-' }),
            ("web-".into(), BadEnd { what, ch: '-' }),
            ("-".into(), BadStart { what, ch: '-' }),
        ];
        for (input, expected) in cases {
            assert_eq!(VmName::parse(&input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let cases = [
            ("", "VM name is empty"),
            (
                "Web",
                "VM name has 'W' at position 1; only lowercase letters, digits and '-' are allowed \
                 (names are never lowercased or trimmed)",
            ),
            (
                "web-",
                "VM name must not end with '-'; it must end with a lowercase letter or digit",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(VmName::parse(input).unwrap_err().to_string(), message);
        }
        let long = VmName::parse(&"x".repeat(70)).unwrap_err().to_string();
        assert_eq!(long, "VM name is 70 characters long; the limit is 63");
    }

    #[test]
    fn resource_names() {
        for input in [
            "debian-bookworm",
            "debian-6.1-cloud",
            "tiny",
            "my_image.v2",
            "0day",
        ] {
            assert!(ResourceName::parse(input).is_ok(), "{input:?}");
        }
        use NameError::*;
        let what = "image name";
        let allowed = "lowercase letters, digits, '.', '_' and '-'";
        let cases: Vec<(String, NameError)> = vec![
            ("".into(), Empty { what }),
            (
                "a".repeat(64),
                TooLong {
                    what,
                    len: 64,
                    max: 63,
                },
            ),
            (".hidden".into(), BadStart { what, ch: '.' }),
            ("..".into(), BadStart { what, ch: '.' }),
            ("_x".into(), BadStart { what, ch: '_' }),
            ("-x".into(), BadStart { what, ch: '-' }),
            ("x.".into(), BadEnd { what, ch: '.' }),
            ("x-".into(), BadEnd { what, ch: '-' }),
            (
                "a/b".into(),
                BadChar {
                    what,
                    ch: '/',
                    position: 2,
                    allowed,
                },
            ),
            (
                "Debian".into(),
                BadChar {
                    what,
                    ch: 'D',
                    position: 1,
                    allowed,
                },
            ),
            (
                "alpine:3".into(),
                BadChar {
                    what,
                    ch: ':',
                    position: 7,
                    allowed,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ResourceName::parse_as("image name", &input),
                Err(expected),
                "{input:?}"
            );
        }
        assert_eq!(
            ResourceName::parse("").unwrap_err().to_string(),
            "name is empty"
        );
    }

    #[test]
    fn serde_validates() {
        let name: VmName = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(name, "web");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"web\"");
        assert!(serde_json::from_str::<VmName>("\"Web\"").is_err());
        assert!(serde_json::from_str::<ResourceName>("\".x\"").is_err());
        let image: ResourceName = serde_json::from_str("\"debian-6.1-cloud\"").unwrap();
        assert_eq!(image.as_str(), "debian-6.1-cloud");
    }

    fn sequence(values: Vec<u64>) -> impl FnMut() -> u64 {
        let mut iter = values.into_iter().cycle();
        move || iter.next().unwrap_or(0)
    }

    #[test]
    fn generated_names() {
        let mut rng = sequence(vec![6, 33]);
        assert_eq!(generate_vm_name(&mut rng, |_| false), "brisk-otter");

        // Every random pair taken: the last pair gets the first free suffix.
        let mut rng = sequence(vec![6, 33]);
        let taken = |n: &str| n == "brisk-otter" || n == "brisk-otter-2";
        assert_eq!(generate_vm_name(&mut rng, taken), "brisk-otter-3");

        // A collision on the first pair moves on to the next random pair.
        let mut rng = sequence(vec![6, 33, 0, 0]);
        assert_eq!(
            generate_vm_name(&mut rng, |n| n == "brisk-otter"),
            "agile-badger"
        );
    }

    #[test]
    fn generated_names_are_always_valid() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rng = move || {
            // xorshift: deterministic and covers the word lists well.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let name = generate_vm_name(&mut rng, |_| false);
            assert!(VmName::parse(name.as_str()).is_ok(), "{name}");
        }
        for word in ADJECTIVES.iter().chain(NOUNS) {
            assert!(VmName::parse(word).is_ok(), "{word}");
        }
    }
}
