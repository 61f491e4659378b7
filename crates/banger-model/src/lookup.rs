//! How a user's reference (`vm show web`, `vm stop 3f2a`) picks one item from a list.
//!
//! Order of precedence: an exact name, then an exact id, then a prefix of a name or an
//! id that matches exactly one item. An exact name wins even when it is also the prefix
//! of other names or ids, so `web` always means the VM named `web` and never `web-2`.
//!
//! Commands that destroy something (`vm delete`, `vm kill`, `vm prune`, `vm stop` of
//! several) take an exact name or id only ([`check_destructive`]): `vm delete ux-zz` must
//! never delete `ux-zzvictim`. [`resolve_ref_match`] says how a reference matched, so the
//! CLI can ask for confirmation on a terminal, naming the full match, and then send the
//! exact name.

/// Why a reference did not pick exactly one item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Nothing matches (also for an empty query, which would match everything).
    #[error("nothing is named {query:?} or has an id starting with it")]
    NotFound { query: String },
    /// The query is a prefix of several names or ids.
    #[error("{query:?} matches more than one: {}", candidates.join(", "))]
    Ambiguous {
        query: String,
        /// Names of the matching items, sorted.
        candidates: Vec<String>,
    },
    /// A prefix given to a destructive command (see [`check_destructive`]).
    #[error(
        "{query:?} is only a prefix of {matched:?}; destructive commands need the full name \
         or id"
    )]
    PrefixOnly {
        query: String,
        /// The name of the item the prefix picked.
        matched: String,
    },
}

/// How a reference picked its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefMatch {
    ExactName,
    ExactId,
    /// A unique prefix of the name or the id.
    Prefix,
}

/// The rule for destructive commands: an exact name or id, never a prefix (however
/// long: `ux-zz` is five characters and still the wrong VM when `ux-zzvictim` is the one
/// it finds). `matched` is the picked item's name, for the message.
pub fn check_destructive(query: &str, how: RefMatch, matched: &str) -> Result<(), RefError> {
    match how {
        RefMatch::ExactName | RefMatch::ExactId => Ok(()),
        RefMatch::Prefix => Err(RefError::PrefixOnly {
            query: query.to_owned(),
            matched: matched.to_owned(),
        }),
    }
}

/// [`resolve_ref`] followed by [`check_destructive`]: what `vm delete` and `vm kill` use.
pub fn resolve_ref_destructive<'a, T>(
    query: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, RefError> {
    let (item, how) = resolve_ref_match(query, items, &id, &name)?;
    check_destructive(query, how, name(item))?;
    Ok(item)
}

/// Finds the one item `query` refers to; see the module docs for the precedence.
pub fn resolve_ref<'a, T>(
    query: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, RefError> {
    resolve_ref_match(query, items, id, name).map(|(item, _)| item)
}

/// Like [`resolve_ref`], also saying how the item matched.
pub fn resolve_ref_match<'a, T>(
    query: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<(&'a T, RefMatch), RefError> {
    if query.is_empty() {
        return Err(RefError::NotFound {
            query: String::new(),
        });
    }
    if let Some(item) = items.iter().find(|item| name(item) == query) {
        return Ok((item, RefMatch::ExactName));
    }
    if let Some(item) = items.iter().find(|item| id(item) == query) {
        return Ok((item, RefMatch::ExactId));
    }
    let matches: Vec<&T> = items
        .iter()
        .filter(|item| name(item).starts_with(query) || id(item).starts_with(query))
        .collect();
    match matches.as_slice() {
        [] => Err(RefError::NotFound {
            query: query.to_owned(),
        }),
        [only] => Ok((only, RefMatch::Prefix)),
        several => {
            let mut candidates: Vec<String> =
                several.iter().map(|item| name(item).to_owned()).collect();
            candidates.sort();
            Err(RefError::Ambiguous {
                query: query.to_owned(),
                candidates,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        id: &'static str,
        name: &'static str,
    }

    const ITEMS: &[Item] = &[
        Item {
            id: "aaaa111100000000",
            name: "web",
        },
        Item {
            id: "bbbb222200000000",
            name: "web-2",
        },
        Item {
            id: "cccc333300000000",
            name: "db",
        },
        Item {
            id: "dddd444400000000",
            name: "aaaa",
        },
        Item {
            id: "eeee555500000000",
            name: "cache",
        },
    ];

    fn resolve(query: &str) -> Result<&'static str, RefError> {
        resolve_ref(query, ITEMS, |i| i.id, |i| i.name).map(|i| i.name)
    }

    #[test]
    fn table() {
        let not_found = |q: &str| {
            Err(RefError::NotFound {
                query: q.to_owned(),
            })
        };
        let ambiguous = |q: &str, c: &[&str]| {
            Err(RefError::Ambiguous {
                query: q.to_owned(),
                candidates: c.iter().map(|s| s.to_string()).collect(),
            })
        };
        let cases: Vec<(&str, Result<&str, RefError>)> = vec![
            // Exact name wins over being a prefix of `web-2`.
            ("web", Ok("web")),
            ("web-2", Ok("web-2")),
            // Exact name wins over being a prefix of another item's id.
            ("aaaa", Ok("aaaa")),
            ("cccc333300000000", Ok("db")),
            ("d", ambiguous("d", &["aaaa", "db"])),
            ("dddd", Ok("aaaa")),
            ("web-", Ok("web-2")),
            ("bbbb", Ok("web-2")),
            ("ca", Ok("cache")),
            // `c` prefixes the name `cache` and the id of `db`.
            ("c", ambiguous("c", &["cache", "db"])),
            ("we", ambiguous("we", &["web", "web-2"])),
            ("a", ambiguous("a", &["aaaa", "web"])),
            ("", not_found("")),
            ("zzz", not_found("zzz")),
            ("WEB", not_found("WEB")),
            (" web", not_found(" web")),
        ];
        for (query, expected) in cases {
            assert_eq!(resolve(query), expected, "{query:?}");
        }
    }

    #[test]
    fn destructive_commands_need_an_exact_ref() {
        let too_short = |q: &str, matched: &str| {
            Err(RefError::PrefixOnly {
                query: q.to_owned(),
                matched: matched.to_owned(),
            })
        };
        let cases: Vec<(&str, Result<&str, RefError>)> = vec![
            // Exact names and ids, however short.
            ("db", Ok("db")),
            ("web", Ok("web")),
            ("cccc333300000000", Ok("db")),
            // Every prefix is refused, however long, naming what it would have picked.
            ("dddd", too_short("dddd", "aaaa")),
            ("bbbb2", too_short("bbbb2", "web-2")),
            ("cach", too_short("cach", "cache")),
            ("e", too_short("e", "cache")),
            ("ca", too_short("ca", "cache")),
            ("web-", too_short("web-", "web-2")),
            ("ccc", too_short("ccc", "db")),
            // Not found and ambiguous stay what they were.
            (
                "zzz",
                Err(RefError::NotFound {
                    query: "zzz".into(),
                }),
            ),
            (
                "we",
                Err(RefError::Ambiguous {
                    query: "we".into(),
                    candidates: vec!["web".into(), "web-2".into()],
                }),
            ),
        ];
        for (query, expected) in cases {
            let got = resolve_ref_destructive(query, ITEMS, |i| i.id, |i| i.name).map(|i| i.name);
            assert_eq!(got, expected, "{query:?}");
        }
        assert_eq!(
            resolve_ref_match("c", &ITEMS[2..3], |i| i.id, |i| i.name).map(|(_, how)| how),
            Ok(RefMatch::Prefix)
        );
        assert_eq!(
            too_short("e", "cache").unwrap_err().to_string(),
            "\"e\" is only a prefix of \"cache\"; destructive commands need the full name or \
             id"
        );
    }

    #[test]
    fn empty_list() {
        let none: &[Item] = &[];
        assert!(resolve_ref("web", none, |i| i.id, |i| i.name).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(
            resolve("we").unwrap_err().to_string(),
            "\"we\" matches more than one: web, web-2"
        );
        assert_eq!(
            resolve("x").unwrap_err().to_string(),
            "nothing is named \"x\" or has an id starting with it"
        );
    }
}
