//! Pure parsers for the output of apt's query commands: `apt-cache search` (kernel
//! package names), `apt-cache depends` (dependency edges), `apt-get download
//! --print-uris` (exact .deb files) and `apt-get -s install` (a resolved package set).
//! The commands run elsewhere; keeping the parsing here makes every format table-tested.

use serde::{Deserialize, Serialize};

/// The newest kernel package of a series and flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPackage {
    /// e.g. `linux-image-6.1.0-41-cloud-amd64`.
    pub package: String,
    /// e.g. `6.1.0-41-cloud-amd64` (the `uname -r` of the kernel).
    pub kernel_version: String,
    /// The ABI number `N` in `6.1.0-N`.
    pub abi: u32,
}

/// Picks the highest `linux-image-<series>-N-<flavour>` from `apt-cache search` output,
/// comparing N as a number (so 100 beats 99). Other packages (e.g. `-unsigned`, `-dbg`)
/// are ignored.
pub fn newest_kernel_package(
    search_output: &str,
    series: &str,
    flavour: &str,
) -> Option<KernelPackage> {
    let prefix = format!("linux-image-{series}-");
    let suffix = format!("-{flavour}");
    search_output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|package| {
            let abi = package.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
            if abi.is_empty() || !abi.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let abi: u32 = abi.parse().ok()?;
            Some(KernelPackage {
                package: package.to_string(),
                kernel_version: package["linux-image-".len()..].to_string(),
                abi,
            })
        })
        .max_by_key(|kernel| kernel.abi)
}

/// The `apt-cache search --names-only` pattern matching the packages above.
pub fn kernel_search_pattern(series: &str, flavour: &str) -> String {
    format!(
        "^linux-image-{}-[0-9]+-{}$",
        series.replace('.', "\\."),
        flavour.replace('.', "\\.")
    )
}

/// What `apt-cache depends` says about one package's hard dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependsEdges {
    /// `(package, dependency)`: the first real (non-virtual) alternative of each group.
    pub edges: Vec<(String, String)>,
    /// `(package, group)` for groups whose alternatives are all virtual packages.
    pub unresolved: Vec<(String, String)>,
}

/// Parses `apt-cache depends --no-recommends ...` output. Lines look like
/// ```text
/// libpam-modules
///   PreDepends: libc6
///  |PreDepends: debconf
///   PreDepends: <debconf-2.0>
///     cdebconf
/// ```
/// A `|` marks "or the next line"; `<name>` is a virtual package, whose providers follow
/// indented by four spaces (ignored: the first real alternative of the group is taken).
pub fn parse_depends(output: &str) -> DependsEdges {
    let mut result = DependsEdges::default();
    let mut package: Option<String> = None;
    let mut group: Vec<String> = Vec::new();
    for line in output.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            package = Some(line.trim().to_string());
            group.clear();
            continue;
        }
        let (continues_group, rest) = match line.strip_prefix(" |") {
            Some(rest) => (true, rest),
            None => match line.strip_prefix("  ") {
                Some(rest) if !rest.starts_with(' ') => (false, rest),
                // Four spaces: a provider of the virtual package above.
                _ => continue,
            },
        };
        let Some((kind, name)) = rest.split_once(':') else {
            continue;
        };
        if kind != "Depends" && kind != "PreDepends" {
            continue;
        }
        let name = name.trim();
        let name = name.strip_suffix(":any").unwrap_or(name);
        group.push(name.to_string());
        if continues_group {
            continue;
        }
        if let Some(owner) = &package {
            match group
                .iter()
                .find(|alternative| !alternative.starts_with('<'))
            {
                Some(real) => result.edges.push((owner.clone(), real.clone())),
                None => result.unresolved.push((owner.clone(), group.join(" | "))),
            }
        }
        group.clear();
    }
    result
}

/// One .deb as `apt-get download --print-uris` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebRef {
    pub url: String,
    /// The file name apt-get download writes, e.g. `git_1%3a2.39.5-0+deb12u3_amd64.deb`.
    pub filename: String,
    pub size: u64,
    /// Lower-case hex sha256 of the .deb.
    pub sha256: String,
}

impl DebRef {
    /// The package name (the part of the file name before the first `_`).
    pub fn package(&self) -> &str {
        self.filename.split('_').next().unwrap_or(&self.filename)
    }

    /// The version, with apt's `%3a` turned back into the epoch colon.
    pub fn version(&self) -> String {
        self.filename
            .split('_')
            .nth(1)
            .unwrap_or_default()
            .replace("%3a", ":")
    }
}

/// Parses `apt-get download --print-uris` lines:
/// `'URL' FILENAME SIZE SHA256:HEX`. Returns the first line it cannot read as an error.
pub fn parse_print_uris(output: &str) -> Result<Vec<DebRef>, String> {
    let mut debs = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let parsed = (|| {
            let url = fields.next()?.strip_prefix('\'')?.strip_suffix('\'')?;
            let filename = fields.next()?;
            let size = fields.next()?.parse().ok()?;
            let sha256 = fields.next()?.strip_prefix("SHA256:")?;
            if !filename.ends_with(".deb") || filename.contains('/') || sha256.len() != 64 {
                return None;
            }
            Some(DebRef {
                url: url.to_string(),
                filename: filename.to_string(),
                size,
                sha256: sha256.to_ascii_lowercase(),
            })
        })();
        match parsed {
            Some(deb) => debs.push(deb),
            None => return Err(line.to_string()),
        }
    }
    Ok(debs)
}

/// Parses the `Inst NAME (VERSION ...)` lines of `apt-get -s install`: the packages a
/// fresh system would get, as sorted `name=version` strings.
pub fn parse_simulated_installs(output: &str) -> Vec<String> {
    let mut installs: Vec<String> = output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let version = rest.strip_prefix('(')?.split_whitespace().next()?;
            Some(format!("{name}={version}"))
        })
        .collect();
    installs.sort();
    installs.dedup();
    installs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_sorts_abi_numerically() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            (
                "linux-image-6.1.0-9-cloud-amd64 - Linux\n",
                Some("6.1.0-9-cloud-amd64"),
            ),
            (
                "linux-image-6.1.0-9-cloud-amd64 - a\nlinux-image-6.1.0-41-cloud-amd64 - b\n\
                 linux-image-6.1.0-100-cloud-amd64 - c\nlinux-image-6.1.0-56-cloud-amd64 - d\n",
                Some("6.1.0-100-cloud-amd64"),
            ),
            (
                // -unsigned, -dbg, other flavours and series are not candidates.
                "linux-image-6.1.0-99-cloud-amd64-unsigned - a\n\
                 linux-image-6.1.0-99-cloud-amd64-dbg - b\n\
                 linux-image-6.1.0-99-amd64 - c\n\
                 linux-image-6.12.0-99-cloud-amd64 - d\n\
                 linux-image-6.1.0-rc1-cloud-amd64 - e\n\
                 linux-image-6.1.0-47-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)\n",
                Some("6.1.0-47-cloud-amd64"),
            ),
        ];
        for (output, expected) in cases {
            let got = newest_kernel_package(output, "6.1.0", "cloud-amd64");
            assert_eq!(
                got.as_ref().map(|k| k.kernel_version.as_str()),
                *expected,
                "{output}"
            );
            if let Some(kernel) = got {
                assert_eq!(
                    kernel.package,
                    format!("linux-image-{}", kernel.kernel_version)
                );
            }
        }
    }

    #[test]
    fn kernel_pattern_escapes_dots() {
        assert_eq!(
            kernel_search_pattern("6.1.0", "cloud-amd64"),
            r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$"
        );
    }

    #[test]
    fn depends_takes_first_real_alternative() {
        let output = "\
git
  Depends: libc6
  Depends: perl
  Depends: git-man
  Depends: git-man
busybox-static
libpam-modules
  PreDepends: libaudit1
 |PreDepends: debconf
  PreDepends: <debconf-2.0>
    cdebconf
    debconf
  PreDepends: libpam-modules-bin
foo
 |Depends: <virtual-a>
  Depends: real-b
  Depends: <only-virtual>
    provider
  Depends: libx:any
<default-mta>
";
        let parsed = parse_depends(output);
        let edges: Vec<(&str, &str)> = parsed
            .edges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            edges,
            vec![
                ("git", "libc6"),
                ("git", "perl"),
                ("git", "git-man"),
                ("git", "git-man"),
                ("libpam-modules", "libaudit1"),
                ("libpam-modules", "debconf"),
                ("libpam-modules", "libpam-modules-bin"),
                ("foo", "real-b"),
                ("foo", "libx"),
            ]
        );
        assert_eq!(
            parsed.unresolved,
            vec![("foo".to_string(), "<only-virtual>".to_string())]
        );
    }

    #[test]
    fn print_uris_lines() {
        let output = "'http://deb.debian.org/debian/pool/main/g/git/git_2.39.5-0%2bdeb12u3_amd64.deb' git_1%3a2.39.5-0+deb12u3_amd64.deb 7264380 SHA256:637a85ddd6247fab13bdd0592f2f39aff04ce4dbf0655d3ab553ac359a38ce6f\n";
        let debs = parse_print_uris(output).unwrap();
        assert_eq!(debs.len(), 1);
        assert_eq!(debs[0].package(), "git");
        assert_eq!(debs[0].version(), "1:2.39.5-0+deb12u3");
        assert_eq!(debs[0].size, 7264380);
        assert!(debs[0].url.starts_with("http://deb.debian.org/"));

        let bad = [
            "git_1.deb 12 SHA256:00",
            "'u' ../evil.deb 1 SHA256:637a85ddd6247fab13bdd0592f2f39aff04ce4dbf0655d3ab553ac359a38ce6f",
            "'u' x.deb notanumber SHA256:637a85ddd6247fab13bdd0592f2f39aff04ce4dbf0655d3ab553ac359a38ce6f",
            "'u' x.deb 1 MD5Sum:abc",
        ];
        for line in bad {
            assert_eq!(parse_print_uris(line), Err(line.to_string()), "{line}");
        }
    }

    #[test]
    fn simulated_installs() {
        let output = "\
NOTE: This is only a simulation!
Inst libgcc-s1 (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []
Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])
Inst git (1:2.39.5-0+deb12u3 Debian:12.15/oldstable [amd64])
";
        assert_eq!(
            parse_simulated_installs(output),
            vec![
                "git=1:2.39.5-0+deb12u3",
                "libc6=2.36-9+deb12u14",
                "libgcc-s1=12.2.0-14+deb12u1"
            ]
        );
    }
}
