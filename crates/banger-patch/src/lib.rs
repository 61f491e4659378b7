//! banger-patch: what happens to a patch that comes out of a guest before it may touch
//! the host. The guest is not trusted, so its patch is read strictly (`parse`: git's
//! `diff --git` format with binary hunks, every line accounted for; anything git would
//! apply that this parser does not understand is refused), then checked (`validate`:
//! no `.git`, no `..`, no absolute names, no symlink pointing out of the repository or
//! into `.git`, nothing written through a symlink the patch makes), and only then
//! applied (`apply`: the host repository's leading symlinks and uncommitted changes to
//! the touched files are checked, and `git apply` runs with a scratch git directory,
//! so no hook, fsmonitor, filter or attribute driver of the repository runs).
//!
//! `parse` and `validate` are pure; `apply` runs git through `banger-exec`.

mod apply;
mod parse;
mod quote;
mod validate;

pub use apply::{ApplyError, ApplyReport, apply_to_repo};
pub use parse::{FileChange, ParseError, Status, parse};
pub use validate::{ValidateError, validate};

/// Git's file modes that a patch may carry.
pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXECUTABLE: u32 = 0o100755;
pub const MODE_SYMLINK: u32 = 0o120000;
