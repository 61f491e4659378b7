//! How a user's reference (`vm show web`, `vm stop 3f2a`) picks one item from a list.
//!
//! Order of precedence: an exact name, then an exact id, then a prefix of a name or an
//! id that matches exactly one item. An exact name wins even when it is also the prefix
//! of other names or ids, so `web` always means the VM named `web` and never `web-2`.

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
}

/// Finds the one item `query` refers to; see the module docs for the precedence.
pub fn resolve_ref<'a, T>(
    query: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, RefError> {
    if query.is_empty() {
        return Err(RefError::NotFound {
            query: String::new(),
        });
    }
    if let Some(item) = items.iter().find(|item| name(item) == query) {
        return Ok(item);
    }
    if let Some(item) = items.iter().find(|item| id(item) == query) {
        return Ok(item);
    }
    let matches: Vec<&T> = items
        .iter()
        .filter(|item| name(item).starts_with(query) || id(item).starts_with(query))
        .collect();
    match matches.as_slice() {
        [] => Err(RefError::NotFound {
            query: query.to_owned(),
        }),
        [only] => Ok(only),
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
