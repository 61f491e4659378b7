//! Where the responder gets addresses from: the [`NameTable`] trait (the daemon implements
//! it over its VM records) and [`StaticNames`], an in-memory table that tests use and
//! that the daemon can keep up to date as VMs come and go.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{PoisonError, RwLock};

/// Maps a VM name to its IPv4 address. `name` is the lowercase label before `.vm`
/// (`web` for `web.vm`). Called once per query on the server's task, so it must be quick
/// and must not block on I/O.
pub trait NameTable: Send + Sync {
    fn lookup(&self, name: &str) -> Option<Ipv4Addr>;
}

/// An in-memory name table behind a read-write lock: queries take the read side, the
/// daemon's updates the write side.
#[derive(Debug, Default)]
pub struct StaticNames {
    names: RwLock<HashMap<String, Ipv4Addr>>,
}

impl StaticNames {
    pub fn new() -> StaticNames {
        StaticNames::default()
    }

    /// Adds or replaces a name (stored lowercase, as queries are matched lowercase).
    /// Returns the previous address.
    pub fn insert(&self, name: &str, address: Ipv4Addr) -> Option<Ipv4Addr> {
        self.write().insert(name.to_ascii_lowercase(), address)
    }

    /// Removes a name. Returns its address if it was there.
    pub fn remove(&self, name: &str) -> Option<Ipv4Addr> {
        self.write().remove(&name.to_ascii_lowercase())
    }

    /// Replaces the whole table at once, so a query never sees half of an update.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (String, Ipv4Addr)>) {
        let fresh: HashMap<String, Ipv4Addr> = entries
            .into_iter()
            .map(|(name, address)| (name.to_ascii_lowercase(), address))
            .collect();
        *self.write() = fresh;
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    // A writer that panicked left a whole map behind (inserts are single operations), so
    // a poisoned lock is still safe to use; refusing to answer DNS would help no one.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Ipv4Addr>> {
        self.names.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Ipv4Addr>> {
        self.names.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FromIterator<(String, Ipv4Addr)> for StaticNames {
    fn from_iter<I: IntoIterator<Item = (String, Ipv4Addr)>>(iter: I) -> StaticNames {
        let names = StaticNames::new();
        names.replace_all(iter);
        names
    }
}

impl NameTable for StaticNames {
    fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        self.read().get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_replace() {
        let names = StaticNames::new();
        let web = Ipv4Addr::new(172, 30, 0, 5);
        let db = Ipv4Addr::new(172, 30, 0, 6);
        assert_eq!(names.insert("Web", web), None);
        assert_eq!(names.lookup("web"), Some(web));
        assert_eq!(names.insert("web", db), Some(web));
        assert_eq!(names.lookup("web"), Some(db));
        assert_eq!(names.remove("WEB"), Some(db));
        assert_eq!(names.lookup("web"), None);
        names.replace_all([("a".to_string(), web), ("B".to_string(), db)]);
        assert_eq!(names.len(), 2);
        assert_eq!(names.lookup("b"), Some(db));
        names.replace_all([]);
        assert!(names.is_empty());
    }

    #[test]
    fn from_iter_lowercases() {
        let names: StaticNames = [("Web".to_string(), Ipv4Addr::LOCALHOST)]
            .into_iter()
            .collect();
        assert_eq!(names.lookup("web"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(names.lookup("Web"), None);
    }
}
