//! store: a quick look at banger's SQLite database without opening it as a database
//! (banger-doctor does not depend on banger-store). The first 100 bytes of a SQLite file
//! are its header: a 16-byte magic string, and the schema's `user_version` (big-endian
//! u32) at offset 60, which banger's migrations advance. The database must also be
//! writable, and so must its directory (SQLite creates its `-wal` and `-shm` files
//! there): `access(2)` says so without writing anything, and reports a read-only mount
//! (`EROFS`) even to root.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{AccessFlags, access};

use crate::Check;

const NAME: &str = "store";
const HEADER_LEN: usize = 100;
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
const USER_VERSION_OFFSET: usize = 60;

/// What a database file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteHeader {
    /// A zero-length file, which SQLite treats as an empty database.
    Empty,
    Database {
        user_version: u32,
    },
}

/// Why a file is not a SQLite database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("only {0} bytes long, shorter than a SQLite header")]
    Truncated(usize),
    #[error("does not start with the SQLite magic string")]
    NotSqlite,
}

/// Reads the header from the first bytes of a file (up to 100 are needed); pure.
pub fn parse_sqlite_header(bytes: &[u8]) -> Result<SqliteHeader, HeaderError> {
    if bytes.is_empty() {
        return Ok(SqliteHeader::Empty);
    }
    if !bytes.starts_with(&MAGIC[..bytes.len().min(MAGIC.len())]) {
        return Err(HeaderError::NotSqlite);
    }
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::Truncated(bytes.len()));
    }
    let mut user_version = [0u8; 4];
    user_version.copy_from_slice(&bytes[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4]);
    Ok(SqliteHeader::Database {
        user_version: u32::from_be_bytes(user_version),
    })
}

/// Why the store could not be written, if it could not; pure. `dir` is the database's
/// directory (or its nearest existing ancestor), `dir_access` and `file_access` the
/// results of asking for write access (`file_access` is `None` for a missing database).
pub fn judge_writable(
    database: &Path,
    dir: &Path,
    dir_access: Result<(), Errno>,
    file_access: Option<Result<(), Errno>>,
) -> Option<Check> {
    let hint = |what: &Path, errno: Errno| {
        if errno == Errno::EROFS {
            format!(
                "{} is on a read-only file system; remount it read-write, or point \
                 BANGER_STATE_DIR at a writable directory",
                what.display()
            )
        } else {
            format!(
                "make {} readable and writable by your user, or point BANGER_STATE_DIR \
                 at a directory that is",
                what.display()
            )
        }
    };
    if let Err(errno) = dir_access {
        return Some(Check::fail(
            NAME,
            format!(
                "cannot write in {} ({}): the database and its journal cannot be written",
                dir.display(),
                errno.desc()
            ),
            hint(dir, errno),
        ));
    }
    if let Some(Err(errno)) = file_access {
        return Some(Check::fail(
            NAME,
            format!("cannot write {} ({})", database.display(), errno.desc()),
            hint(database, errno),
        ));
    }
    None
}

/// The nearest existing ancestor of `path` (the directory the daemon would create it in).
fn existing_dir(path: &Path) -> PathBuf {
    path.ancestors()
        .skip(1)
        .find(|candidate| candidate.is_dir())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// The store check for `database`: it must be writable (with its directory); missing is
/// fine (created on first use); otherwise the header must be SQLite's.
pub fn check_store(database: &Path) -> Check {
    let dir = existing_dir(database);
    let dir_access = access(&dir, AccessFlags::W_OK | AccessFlags::X_OK);
    let file_access = database
        .exists()
        .then(|| access(database, AccessFlags::R_OK | AccessFlags::W_OK));
    if let Some(check) = judge_writable(database, &dir, dir_access, file_access) {
        return check;
    }
    let mut file = match std::fs::File::open(database) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Check::pass(
                NAME,
                format!(
                    "{} does not exist yet; it will be created on first use",
                    database.display()
                ),
            );
        }
        Err(error) => {
            return Check::fail(
                NAME,
                format!("cannot read {}: {error}", database.display()),
                "make the state directory and database readable and writable by your user",
            );
        }
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    if let Err(error) = file
        .by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
    {
        return Check::fail(
            NAME,
            format!("cannot read {}: {error}", database.display()),
            "check the file system holding the state directory",
        );
    }
    let mut check = judge_store(database, parse_sqlite_header(&header));
    // In WAL mode recent changes (the schema version among them) live in `-wal` until a
    // checkpoint, so the main file's header can lag behind a running daemon.
    let wal = database.with_extension("db-wal");
    if check.status == crate::Status::Pass && std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        check
            .detail
            .push_str(" as last checkpointed; a running daemon holds newer changes in its WAL");
    }
    check
}

/// The store check for a parsed header; pure.
pub fn judge_store(database: &Path, header: Result<SqliteHeader, HeaderError>) -> Check {
    let path = database.display();
    match header {
        Ok(SqliteHeader::Empty) => Check::pass(
            NAME,
            format!("{path} is empty; the schema is created on first use"),
        ),
        Ok(SqliteHeader::Database { user_version }) => Check::pass(
            NAME,
            format!("{path}: SQLite database, schema version {user_version}"),
        ),
        Err(error) => Check::fail(
            NAME,
            format!("{path} is not a usable SQLite database: {error}"),
            format!(
                "stop bangerd and move {path} aside (banger then starts with an empty \
                 store), or restore it from a backup"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    fn header_with_version(user_version: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[..16].copy_from_slice(MAGIC);
        bytes[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4]
            .copy_from_slice(&user_version.to_be_bytes());
        bytes
    }

    #[test]
    fn header_table() {
        let cases: Vec<(Vec<u8>, Result<SqliteHeader, HeaderError>)> = vec![
            (Vec::new(), Ok(SqliteHeader::Empty)),
            (
                header_with_version(0),
                Ok(SqliteHeader::Database { user_version: 0 }),
            ),
            (
                header_with_version(7),
                Ok(SqliteHeader::Database { user_version: 7 }),
            ),
            (
                header_with_version(0x0102_0304),
                Ok(SqliteHeader::Database {
                    user_version: 0x0102_0304,
                }),
            ),
            (
                header_with_version(3)[..100].to_vec(),
                Ok(SqliteHeader::Database { user_version: 3 }),
            ),
            (
                header_with_version(3)[..99].to_vec(),
                Err(HeaderError::Truncated(99)),
            ),
            (b"SQLite".to_vec(), Err(HeaderError::Truncated(6))),
            (b"{\"vms\": []}".to_vec(), Err(HeaderError::NotSqlite)),
            (vec![0u8; 4096], Err(HeaderError::NotSqlite)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_sqlite_header(&bytes),
                expected,
                "{:?}",
                &bytes[..bytes.len().min(20)]
            );
        }
    }

    #[test]
    fn unwritable_stores_fail_and_say_why() {
        let db = Path::new("/s/banger.db");
        let dir = Path::new("/s");
        // (directory access, database access, fragment of the failure's hint)
        type Case = (
            Result<(), Errno>,
            Option<Result<(), Errno>>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (Ok(()), None, None),
            (Ok(()), Some(Ok(())), None),
            (Err(Errno::EROFS), None, Some("read-only file system")),
            (
                Err(Errno::EROFS),
                Some(Ok(())),
                Some("read-only file system"),
            ),
            (Err(Errno::EACCES), None, Some("readable and writable")),
            (Ok(()), Some(Err(Errno::EACCES)), Some("make /s/banger.db")),
        ];
        for (dir_access, file_access, hint) in cases {
            let check = judge_writable(db, dir, dir_access, file_access);
            match (hint, check) {
                (None, None) => {}
                (Some(fragment), Some(check)) => {
                    assert_eq!(check.status, Status::Fail);
                    let hint = check.hint.unwrap();
                    assert!(hint.contains(fragment), "{hint}");
                }
                (hint, check) => panic!("{dir_access:?} {file_access:?}: {hint:?} vs {check:?}"),
            }
        }
    }

    #[test]
    fn store_check_on_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banger.db");

        let missing = check_store(&path);
        assert_eq!(missing.status, Status::Pass);
        assert!(
            missing.detail.contains("created on first use"),
            "{missing:?}"
        );

        std::fs::write(&path, header_with_version(4)).unwrap();
        let good = check_store(&path);
        assert_eq!(good.status, Status::Pass);
        assert!(good.detail.contains("schema version 4"), "{good:?}");

        std::fs::write(&path, b"").unwrap();
        assert_eq!(check_store(&path).status, Status::Pass);

        std::fs::write(
            &path,
            b"not a database at all, just text that is long enough",
        )
        .unwrap();
        let bad = check_store(&path);
        assert_eq!(bad.status, Status::Fail);
        assert!(bad.detail.contains("magic"), "{bad:?}");
        assert!(bad.hint.as_deref().unwrap().contains("move"), "{bad:?}");

        // A directory where the file should be.
        let as_dir = dir.path().join("dir.db");
        std::fs::create_dir(&as_dir).unwrap();
        assert_eq!(check_store(&as_dir).status, Status::Fail);
    }
}
