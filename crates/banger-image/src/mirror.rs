//! Which Debian mirror the golden image is bootstrapped from: the host's own apt sources
//! (deb822 `*.sources` files and one-line `sources.list` files), so a machine behind a
//! local mirror or proxy builds from it. Parsing is pure; [`read_host_sources`] only
//! reads the files.

use std::path::Path;

/// One `deb` source: a URI with its suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// Parses a deb822 `.sources` file. Stanzas without `Types: deb`, or with `Enabled: no`,
/// are skipped; a stanza with several `URIs` yields one source per URI.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    // Stanzas are separated by blank lines; `#` lines are comments. A field may continue
    // on lines that start with a space.
    let mut stanza: Vec<(String, String)> = Vec::new();
    let mut flush = |stanza: &mut Vec<(String, String)>| {
        let field = |name: &str| {
            stanza
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            field(name)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let enabled = field("Enabled").is_none_or(|value| !value.trim().eq_ignore_ascii_case("no"));
        if enabled && words("Types").iter().any(|t| t == "deb") {
            for uri in words("URIs") {
                sources.push(AptSource {
                    uri,
                    suites: words("Suites"),
                    components: words("Components"),
                });
            }
        }
        stanza.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut stanza);
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    flush(&mut stanza);
    sources
}

/// Parses one-line `sources.list` syntax: `deb [options] URI SUITE [COMPONENT...]`.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default().trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            // Options in brackets may contain spaces: `[arch=amd64 signed-by=...]`.
            let rest = match rest.strip_prefix('[') {
                Some(after) => after.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(AptSource {
                uri,
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The `deb URI SUITE COMPONENTS` lines mmdebstrap should use for `release`: the release
/// itself plus its `-updates` and `-security` suites where the host has them (so the
/// image gets the same fixed packages the host sees), never backports. Only http(s)
/// mirrors qualify: a `file:` or `cdrom:` source is not reachable from mmdebstrap's
/// namespace. `None` when no source carries `release` itself.
pub fn bootstrap_sources(sources: &[AptSource], release: &str) -> Option<Vec<String>> {
    let wanted = [
        release.to_string(),
        format!("{release}-updates"),
        format!("{release}-security"),
    ];
    let mut lines: Vec<String> = Vec::new();
    for suite in &wanted {
        let source = sources.iter().find(|source| {
            (source.uri.starts_with("http://") || source.uri.starts_with("https://"))
                && source.suites.iter().any(|s| s == suite)
        });
        if let Some(source) = source {
            let components = if source.components.is_empty() {
                "main".to_string()
            } else {
                source.components.join(" ")
            };
            let line = format!(
                "deb {} {suite} {components}",
                source.uri.trim_end_matches('/')
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    let has_release = lines
        .iter()
        .any(|line| line.split_whitespace().nth(2) == Some(release));
    has_release.then_some(lines)
}

/// Reads `<apt_dir>/sources.list` and `<apt_dir>/sources.list.d/*.{list,sources}` (files
/// with other suffixes, such as `.disabled`, are ignored like apt ignores them).
pub fn read_host_sources(apt_dir: &Path) -> Vec<AptSource> {
    let mut sources = Vec::new();
    if let Ok(text) = fs_err::read_to_string(apt_dir.join("sources.list")) {
        sources.extend(parse_one_line(&text));
    }
    let mut files: Vec<_> = match fs_err::read_dir(apt_dir.join("sources.list.d")) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for path in files {
        let Ok(text) = fs_err::read_to_string(&path) else {
            continue;
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            Some("list") => sources.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security/
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
";

    #[test]
    fn deb822_stanzas() {
        let sources = parse_deb822(DEBIAN_SOURCES);
        assert_eq!(
            sources,
            vec![
                AptSource {
                    uri: "http://deb.debian.org/debian".into(),
                    suites: vec!["bookworm".into(), "bookworm-updates".into()],
                    components: vec!["main".into()],
                },
                AptSource {
                    uri: "http://deb.debian.org/debian-security/".into(),
                    suites: vec!["bookworm-security".into()],
                    components: vec!["main".into(), "contrib".into()],
                },
            ]
        );
    }

    #[test]
    fn deb822_continuation_lines_and_several_uris() {
        let text = "Types: deb\nURIs: http://a.example/debian\n http://b.example/debian\nSuites: bookworm\nComponents: main\n";
        let uris: Vec<String> = parse_deb822(text).into_iter().map(|s| s.uri).collect();
        assert_eq!(uris, ["http://a.example/debian", "http://b.example/debian"]);
    }

    /// `(uri, suite, components)`
    type Parsed<'a> = (&'a str, &'a str, &'a [&'a str]);

    #[test]
    fn one_line_sources() {
        let cases: &[(&str, Option<Parsed>)] = &[
            (
                "deb http://deb.debian.org/debian bookworm-backports main",
                Some((
                    "http://deb.debian.org/debian",
                    "bookworm-backports",
                    &["main"],
                )),
            ),
            (
                "deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main contrib # x",
                Some(("https://m.example/debian", "bookworm", &["main", "contrib"])),
            ),
            ("# deb http://x/debian bookworm main", None),
            ("deb-src http://x/debian bookworm main", None),
            ("deb http://x/debian", None),
        ];
        for (line, expected) in cases {
            let got = parse_one_line(line);
            let got = got.first().map(|s| {
                (
                    s.uri.as_str(),
                    s.suites[0].as_str(),
                    s.components.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            });
            let expected = expected.map(|(u, s, c)| (u, s, c.to_vec()));
            assert_eq!(got, expected, "{line}");
        }
    }

    #[test]
    fn bootstrap_lines_for_bookworm() {
        let mut sources =
            parse_one_line("deb http://deb.debian.org/debian bookworm-backports main\n");
        sources.extend(parse_deb822(DEBIAN_SOURCES));
        assert_eq!(
            bootstrap_sources(&sources, "bookworm"),
            Some(vec![
                "deb http://deb.debian.org/debian bookworm main".to_string(),
                "deb http://deb.debian.org/debian bookworm-updates main".to_string(),
                "deb http://deb.debian.org/debian-security bookworm-security main contrib"
                    .to_string(),
            ])
        );
    }

    #[test]
    fn bootstrap_lines_need_the_release_and_an_http_mirror() {
        let cases: &[(&str, Option<usize>)] = &[
            ("", None),
            ("deb http://x/debian bookworm-backports main", None),
            ("deb file:///srv/mirror bookworm main", None),
            ("deb cdrom:[Debian]/ bookworm main", None),
            ("deb http://x/debian trixie main", None),
            (
                "deb http://x/debian bookworm main\ndeb http://y/debian bookworm main",
                Some(1),
            ),
            (
                "deb https://x/debian bookworm\ndeb http://x/debian bookworm-updates main",
                Some(2),
            ),
        ];
        for (text, expected) in cases {
            let got = bootstrap_sources(&parse_one_line(text), "bookworm");
            assert_eq!(got.as_ref().map(Vec::len), *expected, "{text}");
        }
    }

    #[test]
    fn reads_files_by_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sources.list.d");
        fs_err::create_dir_all(&d).unwrap();
        fs_err::write(
            dir.path().join("sources.list"),
            "deb http://a/debian bookworm main\n",
        )
        .unwrap();
        fs_err::write(d.join("debian.sources"), DEBIAN_SOURCES).unwrap();
        fs_err::write(d.join("x.list"), "deb http://b/debian bookworm main\n").unwrap();
        fs_err::write(
            d.join("y.list.disabled-by-farm"),
            "deb http://c/debian bookworm main\n",
        )
        .unwrap();
        let uris: Vec<String> = read_host_sources(dir.path())
            .into_iter()
            .map(|s| s.uri)
            .collect();
        assert_eq!(
            uris,
            [
                "http://a/debian",
                "http://deb.debian.org/debian",
                "http://deb.debian.org/debian-security/",
                "http://b/debian"
            ]
        );
    }
}
