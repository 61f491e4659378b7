//! Running git on a user's repository without letting the repository run anything.
//!
//! [`git_cmd`] builds every git invocation this crate makes: `banger_exec::Cmd`'s
//! clean environment (so no `GIT_DIR`, `GIT_INDEX_FILE` or `GIT_EXEC_PATH` from the
//! caller), `HOME` alone passed through (so the user's global excludes still count as
//! ignored), no system config, and `-c` overrides that win over every config file the
//! repository can write: fsmonitor off (it is a command git would run), hooks pointed at
//! `/dev/null`, no untracked cache, no attributes file, no external diff, embedded bare
//! repositories not discovered, optional locks off (nothing writes the index). Only
//! plumbing that reads the index and refs is run (`rev-parse`, `ls-files`), and file
//! contents are read by banger from the working tree, never through git, so clean/smudge
//! filters and textconv drivers are never involved.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner, ExecError};

use crate::error::WorkspaceError;

/// The `-c` settings every invocation carries.
pub const SAFE_CONFIG: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "diff.external=",
    "safe.bareRepository=explicit",
    "core.splitIndex=false",
];

/// `git -c ... --no-optional-locks ARGS` in `dir`.
pub fn git_cmd<I, S>(dir: &Path, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut cmd = Cmd::new("git")
        .cwd(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_LAZY_FETCH", "1")
        .timeout(Duration::from_secs(300));
    if let Some(home) = std::env::var_os("HOME") {
        cmd = cmd.env("HOME", home);
    }
    for setting in SAFE_CONFIG {
        cmd = cmd.arg("-c").arg(setting);
    }
    cmd.arg("--no-optional-locks").args(args)
}

/// Runs git; a failure carries git's stderr.
pub(crate) async fn run(
    runner: &dyn CommandRunner,
    dir: &Path,
    args: &[&str],
) -> Result<Vec<u8>, ExecError> {
    let cmd = git_cmd(dir, args.iter().copied());
    runner.run(&cmd).await.map(|out| out.stdout)
}

/// Runs git, turning a failure into [`WorkspaceError::Git`].
pub(crate) async fn read(
    runner: &dyn CommandRunner,
    dir: &Path,
    args: &[&str],
) -> Result<Vec<u8>, WorkspaceError> {
    run(runner, dir, args).await.map_err(WorkspaceError::Git)
}

/// Splits `-z` output into its records (the last NUL is a terminator, not a separator).
pub(crate) fn nul_records(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == 0).filter(|record| !record.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invocation_carries_the_overrides_before_the_subcommand() {
        let cmd = git_cmd(Path::new("/r"), ["ls-files", "-z"]);
        let args: Vec<String> = cmd
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let sub = args.iter().position(|a| a == "ls-files").unwrap();
        for setting in SAFE_CONFIG {
            let at = args.iter().position(|a| a == setting).unwrap();
            assert!(at < sub, "{setting} after the subcommand");
            assert_eq!(args[at - 1], "-c");
        }
        assert_eq!(cmd.get_cwd(), Some(Path::new("/r")));
    }

    #[test]
    fn nul_records_drop_the_terminator() {
        let records: Vec<&[u8]> = nul_records(b"a\0b c\0").collect();
        assert_eq!(records, vec![&b"a"[..], &b"b c"[..]]);
        assert_eq!(nul_records(b"").count(), 0);
    }
}
