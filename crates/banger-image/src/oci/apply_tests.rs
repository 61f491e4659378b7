//! Layer application as tables: each case is a stack of crafted layers and either the
//! resulting tree or the refusal it must produce. Names are written into the tar headers
//! raw, so hostile names (`../x`, `/etc`) reach the code exactly as an attacker's
//! archive would deliver them.

use std::io::Read;

use super::*;

/// One crafted tar entry.
#[derive(Clone)]
enum E {
    Dir(&'static str, u32),
    File(&'static str, u32, &'static str),
    Owned(&'static str, u32, u64, u64, &'static str),
    Sym(&'static str, &'static str),
    Hard(&'static str, &'static str),
    Char(&'static str),
    Fifo(&'static str),
    Xattr(&'static str, &'static str, &'static [u8]),
}

fn raw_header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1);
    header.set_size(size);
    header
}

fn set_link(header: &mut tar::Header, link: &str) {
    let gnu = header.as_gnu_mut().unwrap();
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut append = |mut header: tar::Header, data: &[u8]| {
            header.set_cksum();
            builder.append(&header, data).unwrap();
        };
        match entry {
            E::Dir(name, mode) => {
                append(raw_header(name, tar::EntryType::Directory, *mode, 0), b"")
            }
            E::File(name, mode, data) => append(
                raw_header(name, tar::EntryType::Regular, *mode, data.len() as u64),
                data.as_bytes(),
            ),
            E::Owned(name, mode, uid, gid, data) => {
                let mut header =
                    raw_header(name, tar::EntryType::Regular, *mode, data.len() as u64);
                header.set_uid(*uid);
                header.set_gid(*gid);
                append(header, data.as_bytes())
            }
            E::Sym(name, target) => {
                let mut header = raw_header(name, tar::EntryType::Symlink, 0o777, 0);
                set_link(&mut header, target);
                append(header, b"")
            }
            E::Hard(name, target) => {
                let mut header = raw_header(name, tar::EntryType::Link, 0o644, 0);
                set_link(&mut header, target);
                append(header, b"")
            }
            E::Char(name) => append(raw_header(name, tar::EntryType::Char, 0o600, 0), b""),
            E::Fifo(name) => append(raw_header(name, tar::EntryType::Fifo, 0o644, 0), b""),
            E::Xattr(name, key, value) => {
                builder
                    .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), *value)])
                    .unwrap();
                let mut header = raw_header(name, tar::EntryType::Regular, 0o755, 1);
                header.set_cksum();
                builder.append(&header, &b"x"[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Layers written to files (as the cache holds them) and applied in order.
struct Applied {
    _dir: tempfile::TempDir,
    sources: Vec<std::fs::File>,
    stack: LayerStack,
}

fn apply_all(layers: &[Vec<E>]) -> Result<Applied, ApplyError> {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = LayerStack::new();
    let mut sources = Vec::new();
    for (index, entries) in layers.iter().enumerate() {
        let path = dir.path().join(format!("layer{index}.tar"));
        std::fs::write(&path, layer(entries)).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        stack.apply(index as u32, &file)?;
        sources.push(file);
    }
    Ok(Applied {
        _dir: dir,
        sources,
        stack,
    })
}

/// `path kind [content]` lines for every entry, as the final image would have them.
fn listing(applied: &Applied) -> Vec<String> {
    applied
        .stack
        .tree
        .iter()
        .map(|(path, node)| match &node.kind {
            Kind::Dir => format!("{path}/"),
            Kind::Spilled {
                source,
                offset,
                len,
            } => {
                let mut text = String::new();
                crate::tree::SourceReader {
                    file: &applied.sources[*source as usize],
                    offset: *offset,
                    remaining: *len,
                }
                .read_to_string(&mut text)
                .unwrap();
                format!("{path} = {text}")
            }
            Kind::Symlink(target) => format!("{path} -> {target}"),
            Kind::Hardlink(target) => format!("{path} => {target}"),
            Kind::Fifo => format!("{path} |"),
            other => format!("{path} {other:?}"),
        })
        .collect()
}

/// What a case is called, its layers, and the listing they must give.
type Case = (&'static str, Vec<Vec<E>>, Vec<&'static str>);

#[test]
fn layers_stack_with_whiteouts_and_opaque_dirs() {
    use E::*;
    let cases: Vec<Case> = vec![
        (
            "a later layer replaces a file and adds to a directory",
            vec![
                vec![Dir("etc", 0o755), File("etc/os", 0o644, "one")],
                vec![File("etc/os", 0o644, "two"), File("etc/new", 0o644, "n")],
            ],
            vec!["etc/", "etc/new = n", "etc/os = two"],
        ),
        (
            "a whiteout removes a file and a directory tree of the layers below",
            vec![
                vec![
                    File("a/keep", 0o644, "k"),
                    File("a/gone", 0o644, "g"),
                    File("b/c/d", 0o644, "d"),
                ],
                vec![File("a/.wh.gone", 0o644, ""), File(".wh.b", 0o644, "")],
            ],
            vec!["a/", "a/keep = k"],
        ),
        (
            "an opaque directory hides the lower layers, not its own layer",
            vec![
                vec![File("d/old", 0o644, "o"), File("d/x/older", 0o644, "o")],
                vec![
                    File("d/new", 0o644, "n"),
                    Dir("d/x", 0o755),
                    File("d/.wh..wh..opq", 0o644, ""),
                    File("d/x/newer", 0o644, "n"),
                ],
            ],
            vec!["d/", "d/new = n", "d/x/", "d/x/newer = n"],
        ),
        (
            "a whiteout of something absent changes nothing",
            vec![
                vec![File("f", 0o644, "f")],
                vec![File(".wh.nothing", 0o644, "")],
            ],
            vec!["f = f"],
        ),
        (
            "a file replaces a directory and its children",
            vec![
                vec![File("x/y", 0o644, "y")],
                vec![File("x", 0o644, "now a file")],
            ],
            vec!["x = now a file"],
        ),
        (
            "entries under a merged-/usr symlink land in its target; absolute names stay inside",
            vec![
                vec![Dir("usr/lib", 0o755), Sym("lib", "usr/lib")],
                vec![
                    File("lib/libx.so", 0o644, "x"),
                    File("/etc/abs", 0o644, "a"),
                ],
            ],
            vec![
                "etc/",
                "etc/abs = a",
                "lib -> usr/lib",
                "usr/",
                "usr/lib/",
                "usr/lib/libx.so = x",
            ],
        ),
        (
            "hard links survive the removal of the file they point at",
            vec![
                vec![
                    File("bin/tool", 0o755, "T"),
                    Hard("bin/alias", "bin/tool"),
                    Hard("bin/alias2", "bin/tool"),
                ],
                vec![File("bin/.wh.tool", 0o644, "")],
            ],
            vec!["bin/", "bin/alias = T", "bin/alias2 => bin/alias"],
        ),
        (
            "device nodes are skipped, fifos kept",
            vec![vec![Char("dev/console"), Fifo("run/pipe")]],
            vec!["run/", "run/pipe |"],
        ),
    ];
    for (what, layers, expected) in cases {
        let applied = apply_all(&layers).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(listing(&applied), expected, "{what}");
    }
}

#[test]
fn hostile_entries_are_refused_by_name() {
    use E::*;
    let cases: Vec<(&str, Vec<Vec<E>>, &str)> = vec![
        (
            "../ traversal",
            vec![vec![File("../../etc/passwd", 0o644, "x")]],
            "layer entry \"../../etc/passwd\" is refused: `..` in the path",
        ),
        (
            "traversal in the middle",
            vec![vec![File("usr/../../x", 0o644, "x")]],
            "layer entry \"usr/../../x\" is refused: `..` in the path",
        ),
        (
            "a symlink in a parent path pointing outside",
            vec![vec![
                Sym("escape", "../../../../tmp"),
                File("escape/owned", 0o644, "x"),
            ]],
            "layer entry \"escape/owned\" is refused: the symlink escape in its parent path points outside the image",
        ),
        (
            "an absolute symlink that climbs above the root",
            vec![vec![Sym("up", "/../host"), File("up/owned", 0o644, "x")]],
            "layer entry \"up/owned\" is refused: the symlink up in its parent path points outside the image",
        ),
        (
            "a hard link to a path outside the tree",
            vec![vec![Hard("shadow", "../../etc/shadow")]],
            "layer entry \"shadow\" is a hard link to \"../../etc/shadow\", outside the image",
        ),
        (
            "a hard link to an absolute host path that the image does not have",
            vec![vec![Hard("shadow", "/etc/shadow")]],
            "layer entry \"shadow\" is a hard link to \"/etc/shadow\", which is not a file extracted before it",
        ),
        (
            "a hard link to a not-yet-extracted path",
            vec![vec![Hard("early", "later"), File("later", 0o644, "x")]],
            "layer entry \"early\" is a hard link to \"later\", which is not a file extracted before it",
        ),
        (
            "a hard link through a symlink that leaves the image",
            vec![vec![Sym("out", "../.."), Hard("x", "out/etc/shadow")]],
            "layer entry \"x\" is a hard link to \"out/etc/shadow\", outside the image",
        ),
        (
            "a whiteout that escapes",
            vec![vec![File("d/../../.wh.etc", 0o644, "")]],
            "layer entry \"d/../../.wh.etc\" is refused: `..` in the path",
        ),
        (
            "a whiteout through a symlink that leaves the image",
            vec![vec![Sym("out", "../../.."), File("out/.wh.etc", 0o644, "")]],
            "layer entry \"out/.wh.etc\" is refused: the symlink out in its parent path points outside the image",
        ),
        (
            "a whiteout naming `..`",
            vec![vec![File("d/.wh...", 0o644, "")]],
            "layer entry \"d/.wh...\" is a whiteout that does not name an entry of its directory",
        ),
    ];
    for (what, layers, expected) in cases {
        match apply_all(&layers) {
            Ok(applied) => panic!("{what}: accepted, giving {:?}", listing(&applied)),
            Err(error) => assert_eq!(error.to_string(), expected, "{what}"),
        }
    }
}

#[test]
fn devices_are_listed_and_metadata_kept() {
    use E::*;
    let applied = apply_all(&[vec![
        Char("dev/null"),
        Owned("usr/bin/sudo", 0o4755, 0, 0, "S"),
        Owned("home/u/f", 0o600, 1000, 1001, "f"),
        Xattr("usr/bin/ping", "security.capability", b"\x01\x02"),
    ]])
    .unwrap();
    let stack = &applied.stack;
    assert_eq!(stack.skipped_devices, vec!["dev/null".to_string()]);
    let sudo = stack.tree.get("usr/bin/sudo").unwrap();
    assert_eq!(sudo.meta.perm, 0o4755);
    let f = stack.tree.get("home/u/f").unwrap();
    assert_eq!((f.meta.uid, f.meta.gid, f.meta.perm), (1000, 1001, 0o600));
    assert_eq!(
        stack.tree.xattrs("usr/bin/ping"),
        &[("security.capability".to_string(), vec![1, 2])]
    );
}

#[test]
fn a_truncated_layer_is_a_read_error() {
    let data = layer(&[E::File("f", 0o644, "0123456789"), E::File("g", 0o644, "x")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.tar");
    std::fs::write(&path, &data[..515]).unwrap();
    let error = LayerStack::new()
        .apply(0, &std::fs::File::open(&path).unwrap())
        .unwrap_err();
    assert!(matches!(error, ApplyError::Read(_)), "{error}");
}
