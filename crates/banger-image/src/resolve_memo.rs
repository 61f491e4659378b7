//! Remembers what a recipe's package resolution produced while the host's apt lists stay
//! the same. Resolving the tiny closure takes seconds (one `apt-cache` call per level)
//! and the Debian set ~5 s, yet the answer only changes when `apt-get update` changes
//! the lists; so a pull of an already built image keys off a fingerprint of the lists
//! (names, sizes, mtimes) and returns without asking apt.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A fingerprint of the files in apt's lists directory, or `None` when it cannot be read
/// (then nothing is memoized).
pub fn lists_fingerprint(lists_dir: &Path) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    for entry in fs_err::read_dir(lists_dir).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !meta.is_file() || name == "lock" {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        lines.push(format!("{name} {} {mtime}", meta.len()));
    }
    if lines.is_empty() {
        return None;
    }
    lines.sort();
    Some(hex::encode(Sha256::digest(lines.join("\n").as_bytes())))
}

#[derive(Serialize, Deserialize)]
struct Memo<T> {
    fingerprint: String,
    value: T,
}

/// One JSON file per recipe under `dir`.
#[derive(Debug, Clone)]
pub struct ResolveMemo {
    dir: PathBuf,
}

impl ResolveMemo {
    pub fn new(dir: PathBuf) -> ResolveMemo {
        ResolveMemo { dir }
    }

    fn path(&self, recipe: &str) -> PathBuf {
        self.dir.join(format!("{recipe}.json"))
    }

    /// The value saved for `recipe` under the same fingerprint, if any.
    pub fn load<T: DeserializeOwned>(&self, recipe: &str, fingerprint: &str) -> Option<T> {
        let text = fs_err::read_to_string(self.path(recipe)).ok()?;
        let memo: Memo<T> = serde_json::from_str(&text).ok()?;
        (memo.fingerprint == fingerprint).then_some(memo.value)
    }

    /// Saves `value` for `recipe` (write to a temporary file, then rename).
    pub fn save<T: Serialize>(
        &self,
        recipe: &str,
        fingerprint: &str,
        value: &T,
    ) -> std::io::Result<()> {
        fs_err::create_dir_all(&self.dir)?;
        let memo = Memo {
            fingerprint: fingerprint.to_string(),
            value,
        };
        let json = serde_json::to_vec(&memo).map_err(std::io::Error::other)?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        fs_err::write(tmp.path(), json)?;
        tmp.persist(self.path(recipe)).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_returns_only_for_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let memo = ResolveMemo::new(dir.path().join("resolved"));
        assert_eq!(memo.load::<Vec<String>>("tiny", "f1"), None);
        memo.save("tiny", "f1", &vec!["a=1".to_string()]).unwrap();
        assert_eq!(
            memo.load::<Vec<String>>("tiny", "f1"),
            Some(vec!["a=1".to_string()])
        );
        assert_eq!(memo.load::<Vec<String>>("tiny", "f2"), None);
        assert_eq!(memo.load::<Vec<String>>("debian", "f1"), None);
    }

    #[test]
    fn fingerprint_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lists_fingerprint(dir.path()), None);
        assert_eq!(lists_fingerprint(&dir.path().join("missing")), None);
        fs_err::write(dir.path().join("a_Packages"), "x").unwrap();
        fs_err::write(dir.path().join("lock"), "").unwrap();
        fs_err::create_dir(dir.path().join("partial")).unwrap();
        let first = lists_fingerprint(dir.path()).unwrap();
        assert_eq!(lists_fingerprint(dir.path()).unwrap(), first);
        fs_err::write(dir.path().join("a_Packages"), "xy").unwrap();
        assert_ne!(lists_fingerprint(dir.path()).unwrap(), first);
    }
}
