//! What a test needs from the host, checked before the test does anything, so that a test
//! that cannot run here never passes in silence.
//!
//! A test names its requirements with [`require!`] (`require!(Root, Tool("iptables"))`);
//! when one is missing, or when it finds out itself that it cannot run ([`skip!`]), the
//! skip is
//!
//! - printed on the test's stderr as `SKIPPED <test>: <reason>`,
//! - appended to the run's skip log (`$BANGER_SKIP_LOG`, else `target/skipped-tests.log`),
//!   which `cargo xtask test` and `cargo xtask ci` empty before a run and print after it,
//! - and, when `CI=true` (or `BANGER_REQUIRE_ALL=1`), a failure naming what is missing:
//!   on CI every requirement must be met (`scripts/install-deps.sh` installs them).
//!
//! nextest counts a test that returned as passed; the log is what makes skips visible.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One thing a test needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Req {
    /// Effective uid 0 (network namespaces, taps, chown to other uids).
    Root,
    /// An executable of that name on `PATH`.
    Tool(&'static str),
    /// An executable that must *not* be installed (a test of the path taken without it).
    Without(&'static str),
    /// `qemu-system-x86_64` (shorthand for the tool).
    Qemu,
    /// Unprivileged user namespaces (`unshare --user --map-root-user true` works).
    UserNamespaces,
    /// A path that must exist (a device node such as `/dev/loop-control`).
    Exists(&'static str),
    /// At least this many host cores (a guest with that many vCPUs).
    Cores(usize),
    /// apt's package lists (`apt-get update` has run), for tests that download packages.
    AptLists,
}

impl Req {
    /// `None` when the requirement is met, else why not (with what installs it).
    pub fn missing(self) -> Option<String> {
        match self {
            Req::Root => (!is_root()).then(|| "needs root (run the tests as root)".to_owned()),
            Req::Tool(tool) => on_path(tool).is_none().then(|| {
                format!("`{tool}` is not installed (scripts/install-deps.sh installs it)")
            }),
            Req::Without(tool) => on_path(tool).map(|path| {
                format!(
                    "`{tool}` is installed ({}), so the path taken without it cannot be observed",
                    path.display()
                )
            }),
            Req::Qemu => Req::Tool("qemu-system-x86_64").missing(),
            Req::UserNamespaces => user_namespaces_missing(),
            Req::Exists(path) => {
                (!Path::new(path).exists()).then(|| format!("{path} does not exist on this host"))
            }
            Req::Cores(wanted) => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores < wanted)
                    .then(|| format!("needs {wanted} host cores, this host has {cores}"))
            }
            Req::AptLists => (!apt_lists_present())
                .then(|| "no apt package lists (run `apt-get update`)".to_owned()),
        }
    }
}

/// The first missing requirement of `reqs`, as a reason.
pub fn check(reqs: &[Req]) -> Option<String> {
    reqs.iter().find_map(|req| req.missing())
}

/// Whether the current process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where `tool` is on `PATH` (plus the sbin directories a non-root PATH may lack).
pub fn on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

fn user_namespaces_missing() -> Option<String> {
    let Some(unshare) = on_path("unshare") else {
        return Some("`unshare` (util-linux) is not installed".to_owned());
    };
    let status = std::process::Command::new(unshare)
        .args(["--user", "--map-root-user", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!(
            "unprivileged user namespaces are unavailable (`unshare --user` {status})"
        )),
        Err(error) => Some(format!("cannot run unshare: {error}")),
    }
}

fn apt_lists_present() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// Whether every requirement must be met (`CI=true` or `BANGER_REQUIRE_ALL=1`).
pub fn strict() -> bool {
    let set =
        |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case(value));
    set("CI", "true") || set("CI", "1") || set("BANGER_REQUIRE_ALL", "1")
}

/// The name of the running test: the test harness names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
        .unwrap_or_else(|| "(unknown test)".to_owned())
}

/// The test binary's name without cargo's hash suffix (`netns-0123abcd` -> `netns`).
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem,
    }
}

/// The skip log of this run: `$BANGER_SKIP_LOG`, else `skipped-tests.log` in the target
/// directory the test binary was built in (`target/debug/deps/<test>` -> `target`).
pub fn skip_log() -> PathBuf {
    if let Some(path) = std::env::var_os("BANGER_SKIP_LOG") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("skipped-tests.log")
}

/// Records that the current test (or the part of it named in `what`) does not run because
/// of `reason`. Under [`strict`] this panics instead, failing the test with the reason.
#[expect(
    clippy::print_stderr,
    reason = "a skip must be visible on the test's own output too"
)]
pub fn record_skip(what: Option<&str>, reason: &str) {
    let mut test = current_test();
    if let Some(what) = what {
        test = format!("{test} ({what})");
    }
    assert!(
        !strict(),
        "{test}: a requirement is missing and CI=true requires every one: {reason}"
    );
    let line = format!("SKIPPED {}::{test}: {reason}", binary_name());
    eprintln!("{line}");
    let log = skip_log();
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One short write on an O_APPEND file: lines of parallel tests do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(error) = written {
        eprintln!(
            "warning: cannot record the skip in {}: {error}",
            log.display()
        );
    }
}

/// What a skipped test returns: `()` or `Ok(())`.
pub trait Skipped {
    fn skipped() -> Self;
}

impl Skipped for () {
    fn skipped() -> Self {}
}

impl<E> Skipped for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// Returns from the calling test, recorded as skipped, unless every requirement is met.
///
/// ```ignore
/// use banger_requires::require;
/// #[test]
/// fn nat_with_iptables() {
///     require!(Root, Tool("iptables"));
///     // ...
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($($req:expr),+ $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::Req::*;
        if let ::core::option::Option::Some(reason) = $crate::check(&[$($req),+]) {
            $crate::record_skip(::core::option::Option::None, &reason);
            return $crate::Skipped::skipped();
        }
    }};
}

/// Returns from the calling test, recorded as skipped because of `reason` (for what a
/// test discovers itself, e.g. a probe that failed).
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::record_skip(::core::option::Option::None, &::std::format!($($reason)+));
        return $crate::Skipped::skipped();
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_exists_is_found_and_a_made_up_one_is_missing() {
        assert_eq!(Req::Tool("sh").missing(), None);
        let missing = Req::Tool("banger-no-such-tool").missing().unwrap();
        assert!(
            missing.contains("`banger-no-such-tool` is not installed"),
            "{missing}"
        );
        assert!(Req::Without("banger-no-such-tool").missing().is_none());
        assert!(
            Req::Without("sh")
                .missing()
                .unwrap()
                .contains("is installed")
        );
    }

    #[test]
    fn check_names_the_first_missing_requirement() {
        let reason = check(&[
            Req::Tool("sh"),
            Req::Tool("banger-absent"),
            Req::Tool("nope"),
        ]);
        assert!(reason.unwrap().contains("banger-absent"));
        assert_eq!(check(&[Req::Tool("sh")]), None);
    }

    /// Skips for a made-up tool, but only when the tests below run it as a child process.
    #[test]
    fn skipping_child() {
        if std::env::var_os("BANGER_REQUIRES_CHILD").is_none() {
            return;
        }
        require!(Root, Tool("banger-no-such-tool"));
        panic!("ran past a missing requirement");
    }

    /// Runs `skipping_child` in a child test process with `ci` as `CI`.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test binary re-runs itself; banger-exec is not a dependency here"
    )]
    fn run_child(ci: &str) -> (std::process::Output, String) {
        let dir = std::env::temp_dir().join(format!("banger-requires-{}-{ci}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        let _ = std::fs::remove_file(&log);
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::skipping_child", "--nocapture"])
            .env("BANGER_REQUIRES_CHILD", "1")
            .env("BANGER_SKIP_LOG", &log)
            .env("CI", ci)
            .env_remove("BANGER_REQUIRE_ALL")
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (output, logged)
    }

    #[test]
    fn a_skip_is_printed_and_recorded_and_the_test_returns() {
        let (output, logged) = run_child("false");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let line = logged.lines().next().unwrap_or_default();
        assert!(
            line.starts_with("SKIPPED banger_requires::tests::skipping_child: "),
            "{logged:?}"
        );
        assert!(stderr.contains(line), "{stderr}");
    }

    #[test]
    fn under_ci_a_missing_requirement_fails_the_test_naming_it() {
        let (output, logged) = run_child("true");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("CI=true requires every one"), "{stderr}");
        assert!(
            stderr.contains("needs root") || stderr.contains("banger-no-such-tool"),
            "{stderr}"
        );
        assert_eq!(logged, "", "a failure is not also a skip");
    }

    #[test]
    fn the_test_name_comes_from_the_harness_thread() {
        assert_eq!(
            current_test(),
            "tests::the_test_name_comes_from_the_harness_thread"
        );
    }
}
