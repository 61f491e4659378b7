//! apt on the host, as a package *source* only: queries (`apt-cache`), downloads of .deb
//! files into banger's cache (`apt-get download`, no install) and reading a package's
//! data tar (`dpkg-deb --fsys-tarfile`). Everything runs as the calling user through the
//! [`CommandRunner`]; nothing here changes the host's package state.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_exec::{Cmd, CommandRunner};

use crate::apt_query::{self, DebRef, KernelPackage};
use crate::error::ImageError;

/// Downloads can be slow on a cold mirror; queries are quick.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(1800);
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Packages a dependency closure does not descend into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    Exact(&'static str),
    Prefix(&'static str),
}

/// True when some rule of `deny` matches `package`.
pub fn is_denied(deny: &[Deny], package: &str) -> bool {
    deny.iter().any(|rule| match rule {
        Deny::Exact(name) => package == *name,
        Deny::Prefix(prefix) => package.starts_with(prefix),
    })
}

/// The host's apt, run through a command runner.
#[derive(Debug, Clone, Copy)]
pub struct Apt<'a> {
    pub runner: &'a dyn CommandRunner,
}

impl Apt<'_> {
    /// The newest `linux-image-<series>-N-<flavour>` the apt lists know.
    pub async fn newest_kernel(
        &self,
        series: &str,
        flavour: &str,
    ) -> Result<KernelPackage, ImageError> {
        let pattern = apt_query::kernel_search_pattern(series, flavour);
        let out = self
            .runner
            .run(
                &Cmd::new("apt-cache")
                    .args(["search", "--names-only"])
                    .arg(&pattern)
                    .timeout(QUERY_TIMEOUT),
            )
            .await
            .map_err(ImageError::command("apt-cache search"))?;
        apt_query::newest_kernel_package(&out.stdout_text(), series, flavour)
            .ok_or(ImageError::NoKernelPackage { pattern })
    }

    /// The Depends/PreDepends closure of `roots`: Recommends are not followed, or-groups
    /// take their first real alternative, virtual-only groups are skipped, and denied
    /// packages are neither included nor descended into. Sorted.
    ///
    /// One `apt-cache depends --recurse` call (each apt call costs a second or more)
    /// returns a superset of the graph (every alternative, and what denied packages
    /// need); the walk over it happens here.
    pub async fn depends_closure(
        &self,
        roots: &[&str],
        deny: &[Deny],
    ) -> Result<Vec<String>, ImageError> {
        let out = self
            .runner
            .run(
                &Cmd::new("apt-cache")
                    .args([
                        "depends",
                        "--recurse",
                        "--no-recommends",
                        "--no-suggests",
                        "--no-conflicts",
                        "--no-breaks",
                        "--no-replaces",
                        "--no-enhances",
                    ])
                    .args(roots)
                    .timeout(QUERY_TIMEOUT),
            )
            .await
            .map_err(ImageError::command("apt-cache depends"))?;
        let parsed = apt_query::parse_depends(&out.stdout_text());
        let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
        for (package, dependency) in &parsed.edges {
            graph
                .entry(package.as_str())
                .or_default()
                .push(dependency.as_str());
        }
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<&str> = roots.iter().copied().collect();
        while let Some(package) = queue.pop_front() {
            if is_denied(deny, package) || !seen.insert(package.to_string()) {
                continue;
            }
            queue.extend(graph.get(package).into_iter().flatten().copied());
        }
        for (package, group) in &parsed.unresolved {
            if seen.contains(package) {
                tracing::debug!(%package, %group, "skipping a dependency only virtual packages satisfy");
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// The exact .deb files (candidate versions) for `packages`.
    pub async fn deb_refs(&self, packages: &[String]) -> Result<Vec<DebRef>, ImageError> {
        let out = self
            .runner
            .run(
                &Cmd::new("apt-get")
                    .args(["download", "--print-uris", "-q"])
                    .args(packages)
                    .timeout(QUERY_TIMEOUT),
            )
            .await
            .map_err(ImageError::command("apt-get download --print-uris"))?;
        let mut debs = apt_query::parse_print_uris(&out.stdout_text()).map_err(|line| {
            ImageError::AptOutput {
                command: "apt-get download --print-uris",
                line,
            }
        })?;
        debs.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(debs)
    }

    /// Makes sure every deb of `debs` is in `cache_dir` (downloading the missing ones
    /// into a private directory first, then renaming, so a cache file is never partial)
    /// and returns their paths in the same order.
    pub async fn fetch_debs(
        &self,
        debs: &[DebRef],
        cache_dir: &Path,
    ) -> Result<Vec<PathBuf>, ImageError> {
        fs_err::create_dir_all(cache_dir)?;
        let missing: Vec<&DebRef> = debs
            .iter()
            .filter(|deb| !is_cached(&cache_dir.join(&deb.filename), deb.size))
            .collect();
        if !missing.is_empty() {
            let partial = tempfile::Builder::new()
                .prefix(".download-")
                .tempdir_in(cache_dir)
                .map_err(ImageError::io(format!(
                    "cannot create a download directory in {}",
                    cache_dir.display()
                )))?;
            let names: Vec<String> = missing
                .iter()
                .map(|deb| deb.package().to_string())
                .collect();
            // `name=version` pins exactly the file --print-uris named, even if the lists
            // change in between.
            let pinned: Vec<String> = missing
                .iter()
                .map(|deb| format!("{}={}", deb.package(), deb.version()))
                .collect();
            tracing::info!(count = names.len(), "downloading .deb files");
            self.runner
                .run(
                    &Cmd::new("apt-get")
                        .args(["download", "-q"])
                        .args(&pinned)
                        .cwd(partial.path())
                        .timeout(DOWNLOAD_TIMEOUT),
                )
                .await
                .map_err(ImageError::command("apt-get download"))?;
            for deb in &missing {
                let downloaded = partial.path().join(&deb.filename);
                if !downloaded.exists() {
                    return Err(ImageError::MissingDeb {
                        package: deb.package().to_string(),
                    });
                }
                fs_err::rename(&downloaded, cache_dir.join(&deb.filename))?;
            }
        }
        Ok(debs
            .iter()
            .map(|deb| cache_dir.join(&deb.filename))
            .collect())
    }

    /// The data tar of a .deb, in memory (a package's files, uncompressed).
    pub async fn data_tar(&self, deb: &Path) -> Result<Vec<u8>, ImageError> {
        let out = self
            .runner
            .run(
                &Cmd::new("dpkg-deb")
                    .arg("--fsys-tarfile")
                    .arg(deb)
                    .timeout(QUERY_TIMEOUT),
            )
            .await
            .map_err(ImageError::command("dpkg-deb --fsys-tarfile"))?;
        Ok(out.stdout)
    }

    /// What a fresh system installing `packages` (no Recommends) would get, as sorted
    /// `name=version` strings: `apt-get -s` against an empty dpkg status, which needs no
    /// root and changes nothing.
    pub async fn simulate_install(&self, packages: &[&str]) -> Result<Vec<String>, ImageError> {
        let out = self
            .runner
            .run(
                &Cmd::new("apt-get")
                    .args([
                        "-s",
                        "-q",
                        "-o",
                        "Dir::State::status=/dev/null",
                        "-o",
                        "APT::Install-Recommends=false",
                        "install",
                    ])
                    .args(packages)
                    .timeout(QUERY_TIMEOUT),
            )
            .await
            .map_err(ImageError::command("apt-get -s install"))?;
        Ok(apt_query::parse_simulated_installs(&out.stdout_text()))
    }
}

/// A cached .deb counts when its size is the one apt announced (files only ever appear
/// by rename, so a right-sized file is a complete download).
fn is_cached(path: &Path, size: u64) -> bool {
    fs_err::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use banger_exec::{CmdOutput, ExecError};

    /// Answers `apt-cache depends` from a table and records the package lists asked for.
    #[derive(Debug)]
    struct FakeAptCache {
        depends: HashMap<&'static str, &'static str>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl CommandRunner for FakeAptCache {
        fn run<'a>(
            &'a self,
            cmd: &'a Cmd,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<CmdOutput, ExecError>> + Send + 'a>,
        > {
            Box::pin(async move {
                let packages: Vec<String> = cmd
                    .get_args()
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .filter(|a| !a.starts_with('-') && a != "depends")
                    .collect();
                self.calls.lock().unwrap().push(packages.clone());
                assert!(cmd.get_args().iter().any(|a| a == "--recurse"));
                let mut stdout = String::new();
                let mut names: Vec<&str> = packages.iter().map(String::as_str).collect();
                names.extend(self.depends.keys().copied());
                for package in names {
                    stdout.push_str(package);
                    stdout.push('\n');
                    stdout.push_str(self.depends.get(package).copied().unwrap_or(""));
                }
                Ok(CmdOutput {
                    stdout: stdout.into_bytes(),
                    stderr: Vec::new(),
                })
            })
        }
    }

    #[tokio::test]
    async fn closure_walks_the_recursive_output_once_and_honours_deny() {
        // What `apt-cache depends --recurse` prints: every reachable package, including
        // ones below denied packages and all alternatives.
        let fake = FakeAptCache {
            depends: HashMap::from([
                (
                    "git",
                    "  Depends: libc6\n  Depends: perl\n  Depends: git-man\n  Depends: libcurl\n",
                ),
                ("dropbear-bin", "  Depends: libc6\n  Depends: zlib1g\n"),
                ("libc6", "  Depends: libgcc-s1\n"),
                (
                    "libcurl",
                    " |Depends: <virtual>\n  Depends: libssl\n  Depends: zlib1g\n",
                ),
                ("libgcc-s1", "  Depends: libc6\n"),
                ("libssl", "  PreDepends: debconf\n"),
                ("perl", "  Depends: perl-base\n  Depends: libperl5\n"),
                ("libperl5", "  Depends: libdb\n"),
                ("debconf", "  PreDepends: dash\n"),
            ]),
            calls: Mutex::new(Vec::new()),
        };
        let apt = Apt { runner: &fake };
        let deny = [
            Deny::Prefix("perl"),
            Deny::Exact("git-man"),
            Deny::Exact("debconf"),
        ];
        let closure = apt
            .depends_closure(&["busybox-static", "dropbear-bin", "git"], &deny)
            .await
            .unwrap();
        assert_eq!(
            closure,
            [
                "busybox-static",
                "dropbear-bin",
                "git",
                "libc6",
                "libcurl",
                "libgcc-s1",
                "libssl",
                "zlib1g"
            ]
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn deny_rules() {
        let deny = [
            Deny::Prefix("perl"),
            Deny::Prefix("libperl"),
            Deny::Exact("tar"),
        ];
        let cases = [
            ("perl", true),
            ("perl-base", true),
            ("perl-modules-5.36", true),
            ("libperl5.36", true),
            ("tar", true),
            ("tarball", false),
            ("liberror-perl", false),
            ("git", false),
        ];
        for (package, expected) in cases {
            assert_eq!(is_denied(&deny, package), expected, "{package}");
        }
    }
}
