//! Workspaces on real tiny guests: `vm run PATH` copies the repository in as a disk
//! built on the host, the command runs in PATH's copy and banger exits with its code; a
//! PATH outside any git working tree is refused with no VM row or process left; what
//! arrives (names, contents, link targets, hashed in the guest) is exactly the
//! `--dry-run` list, tracked files only by default, untracked ones with
//! `--include-untracked`, ignored ones never; the workspace is recorded (`vm show`,
//! `vm list`), survives a daemon restart, and is mounted again after a stop/start.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use banger_e2e::{TestHost, exit_code, git, require_vm, text};
use sha2::{Digest, Sha256};

fn write(dir: &Path, rel: impl AsRef<Path>, data: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A repository with hostile names, a link out of it, a binary, a subdirectory, an
/// uncommitted edit, a deleted file, an untracked and an ignored file.
fn fixture(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    write(&repo, "README", b"hello\n");
    write(&repo, "sub/deeper/file.txt", b"deep\n");
    write(&repo, "with space", b"s");
    write(&repo, "new\nline", b"n");
    write(&repo, "-dash", b"d");
    write(&repo, OsStr::from_bytes(b"bad\xffutf8"), b"b");
    write(&repo, "gone.txt", b"deleted before the copy");
    write(&repo, ".gitignore", b"*.log\n");
    let binary: Vec<u8> = (0..3u32 << 20).map(|i| (i * 31 % 253) as u8).collect();
    write(&repo, "blob.bin", &binary);
    std::os::unix::fs::symlink("/etc/passwd", repo.join("outside")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "fixture"]);
    write(&repo, "README", b"hello, edited\n");
    std::fs::remove_file(repo.join("gone.txt")).unwrap();
    write(&repo, "untracked.txt", b"u");
    write(&repo, "build.log", b"ignored");
    // From here on the repository would run a command of its own if banger let git
    // consult its fsmonitor, hooks or filters: each touches `marker` next to it.
    let marker = marker(root);
    let script = root.join("evil.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\ncat\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hooks = root.join("hooks");
    for hook in [
        "post-index-change",
        "reference-transaction",
        "post-checkout",
    ] {
        write(
            &hooks,
            hook,
            format!("#!/bin/sh\n'{}' >/dev/null\n", script.display()).as_bytes(),
        );
        std::fs::set_permissions(
            hooks.join(hook),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let script = script.to_str().unwrap();
    for (key, value) in [
        ("core.fsmonitor", script),
        ("filter.evil.clean", script),
        ("filter.evil.smudge", script),
        ("diff.evil.textconv", script),
        ("core.hooksPath", hooks.to_str().unwrap()),
    ] {
        git(&repo, &["config", key, value]);
    }
    std::fs::write(
        repo.join(".git/info/attributes"),
        "* filter=evil diff=evil\n",
    )
    .unwrap();
    repo
}

/// The file the fixture's hooks, fsmonitor and filters would touch.
fn marker(root: &Path) -> PathBuf {
    root.join("marker")
}

fn assert_no_marker(root: &Path, after: &str) {
    let marker = marker(root);
    assert!(
        !marker.exists(),
        "the repository ran a command during {after}: {:?}",
        std::fs::read_to_string(&marker)
    );
}

/// Undoes `listing::quote_path`'s C quoting.
fn unquote(line: &str) -> Vec<u8> {
    let Some(inner) = line.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return line.as_bytes().to_vec();
    };
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            _ => {
                let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap();
                out.push(u8::from_str_radix(octal, 8).unwrap());
                i += 4;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// What the host says will arrive: path -> "F <sha256>" or "L <target>".
fn expected(host: &TestHost, repo: &Path, extra: &[&str]) -> BTreeMap<Vec<u8>, String> {
    let mut args = vec!["vm", "run", "--dry-run"];
    args.extend_from_slice(extra);
    let repo_arg = repo.to_str().unwrap();
    args.push(repo_arg);
    let listing = host.banger_json(&args);
    let mut out = BTreeMap::new();
    for line in listing["files"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        if line.ends_with('/') {
            continue;
        }
        let (path, link) = match line.split_once(" -> ") {
            Some((path, target)) => (unquote(path), Some(unquote(target))),
            None => (unquote(line), None),
        };
        let full = repo.join(OsStr::from_bytes(&path));
        let desc = match link {
            Some(target) => format!("L {}", String::from_utf8_lossy(&target)),
            None => format!(
                "F {}",
                hex::encode(Sha256::digest(std::fs::read(&full).unwrap()))
            ),
        };
        out.insert(path, desc);
    }
    out
}

/// Lists the guest's tree under `dir` the same way, hashing in the guest.
const GUEST_HASH: &str = r#"cd "$1" && find . \( -type f -o -type l \) -print0 | xargs -0 sh -c 'for f; do if [ -L "$f" ]; then printf "L %s\0%s\0" "$(readlink "$f")" "${f#./}"; else printf "F %s\0%s\0" "$(sha256sum < "$f" | cut -d" " -f1)" "${f#./}"; fi; done' hash"#;

fn parse_guest(stdout: &[u8]) -> BTreeMap<Vec<u8>, String> {
    let fields: Vec<&[u8]> = stdout.split(|b| *b == 0).collect();
    let mut out = BTreeMap::new();
    for pair in fields.chunks(2) {
        if let [desc, path] = pair {
            out.insert(path.to_vec(), String::from_utf8_lossy(desc).into_owned());
        }
    }
    out
}

fn diff(expected: &BTreeMap<Vec<u8>, String>, got: &BTreeMap<Vec<u8>, String>) -> String {
    let mut lines = Vec::new();
    for (path, desc) in expected {
        if got.get(path) != Some(desc) {
            lines.push(format!(
                "expected {:?}: {desc} got {:?}",
                String::from_utf8_lossy(path),
                got.get(path)
            ));
        }
    }
    for path in got.keys().filter(|p| !expected.contains_key(*p)) {
        lines.push(format!("unexpected {:?}", String::from_utf8_lossy(path)));
    }
    lines.join("\n")
}

#[test]
fn vm_run_copies_the_repository_in_and_runs_in_the_matching_directory() {
    require_vm!();
    let mut host = TestHost::start().unwrap();
    let repo = fixture(host.root());

    // Refused before any VM exists: not a repository, a file, a missing path.
    let plain = host.root().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for (path, message) in [
        (plain.clone(), "is not inside a git working tree"),
        (repo.join("README"), "is not a directory"),
        (repo.join("nope"), "does not exist"),
    ] {
        let out = host.banger(&[
            "vm",
            "run",
            "--image",
            "tiny",
            path.to_str().unwrap(),
            "--",
            "true",
        ]);
        assert_eq!(exit_code(&out), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
        host.assert_no_vm_left("after a refused PATH");
    }

    // Tracked files (as in the working tree), .git, no untracked, no ignored.
    let tracked = expected(&host, &repo, &[]);
    assert!(tracked.contains_key(&b"README"[..]) && tracked.contains_key(&b".git/HEAD"[..]));
    assert!(
        !tracked.contains_key(&b"untracked.txt"[..]) && !tracked.contains_key(&b"gone.txt"[..])
    );

    let started = std::time::Instant::now();
    let sub = repo.join("sub/deeper");
    let out = host.banger(&[
        "vm",
        "run",
        "--image",
        "tiny",
        "--name",
        "ws",
        sub.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "pwd; cat file.txt; exit 42",
    ]);
    banger_e2e::report_timing("vm run ./repo/sub (tiny)", started.elapsed());
    assert_eq!(exit_code(&out), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/root/repo/sub/deeper\ndeep\n");
    assert!(
        text(&out.stderr).contains("1 untracked file is not copied (--include-untracked"),
        "{}",
        text(&out.stderr)
    );

    assert_no_marker(host.root(), "vm run and --dry-run");
    let hashed = host.exec("ws", &["sh", "-c", GUEST_HASH, "sh", "/root/repo"]);
    assert_eq!(exit_code(&hashed), Some(0), "{}", text(&hashed.stderr));
    let got = parse_guest(&hashed.stdout);
    assert!(
        got == tracked,
        "guest tree differs from the dry run:\n{}",
        diff(&tracked, &got)
    );

    // The record: vm show --json and the WORKSPACE column; git works in the guest.
    let show = host.vm_show("ws");
    let ws = &show["workspace"];
    assert_eq!(ws["guest_path"], "/root/repo");
    assert_eq!(ws["mode"], "overlay");
    assert_eq!(ws["delivery"], "disk");
    assert_eq!(
        ws["source"],
        std::fs::canonicalize(&repo).unwrap().to_str().unwrap()
    );
    assert_eq!(ws["base_commit"].as_str().unwrap().len(), 40);
    let list = host.banger_ok(&["vm", "list"]);
    assert!(list.contains(repo.to_str().unwrap()), "{list}");

    // After a daemon restart and a stop/start, the workspace is still there and mounted.
    host.kill_daemon(9).unwrap();
    host.start_daemon().unwrap();
    assert_eq!(host.vm_show("ws")["workspace"], *ws);
    host.banger_ok(&["vm", "stop", "ws"]);
    host.banger_ok(&["vm", "start", "ws"]);
    let readme = host.exec_ok("ws", &["cat", "/root/repo/README"]);
    assert_eq!(readme, "hello, edited\n");
    host.banger_ok(&["vm", "delete", "--force", "ws"]);

    // --include-untracked: the untracked file too, the ignored one still not.
    let with_untracked = expected(&host, &repo, &["--include-untracked"]);
    assert!(with_untracked.contains_key(&b"untracked.txt"[..]));
    assert!(!with_untracked.contains_key(&b"build.log"[..]));
    let out = host.banger(&[
        "vm",
        "run",
        "--rm",
        "--image",
        "tiny",
        "--include-untracked",
        repo.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        GUEST_HASH,
        "sh",
        "/root/repo",
    ]);
    assert_eq!(exit_code(&out), Some(0), "stderr: {}", text(&out.stderr));
    let got = parse_guest(&out.stdout);
    assert!(
        got == with_untracked,
        "guest tree differs from the dry run:\n{}",
        diff(&with_untracked, &got)
    );
    host.assert_no_vm_left("after vm run --rm");
    assert_no_marker(host.root(), "vm run --include-untracked");
}

#[test]
fn prepare_streams_into_a_running_vm_exec_runs_there_and_stop_does_not_wait() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let repo = fixture(host.root());
    host.create_vm("live", &["--image", "tiny"]);

    // No workspace yet: exec runs where the agent starts.
    assert_eq!(host.exec_ok("live", &["pwd"]), "/root\n");

    let started = std::time::Instant::now();
    let out = host.banger(&["vm", "workspace", "prepare", "live", repo.to_str().unwrap()]);
    banger_e2e::report_timing("vm workspace prepare (tiny, fixture)", started.elapsed());
    assert_eq!(exit_code(&out), Some(0), "stderr: {}", text(&out.stderr));
    let tracked = expected(&host, &repo, &[]);
    let hashed = host.exec("live", &["sh", "-c", GUEST_HASH, "sh", "/root/repo"]);
    assert_eq!(exit_code(&hashed), Some(0), "{}", text(&hashed.stderr));
    let got = parse_guest(&hashed.stdout);
    assert!(
        got == tracked,
        "guest tree differs from the dry run:\n{}",
        diff(&tracked, &got)
    );
    assert_eq!(host.vm_show("live")["workspace"]["delivery"], "stream");
    assert_no_marker(host.root(), "vm workspace prepare");

    // exec runs in the workspace; --cwd wins; no warning while nothing changed.
    let out = host.exec("live", &["pwd"]);
    assert_eq!(text(&out.stdout), "/root/repo\n");
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    let out = host.banger_ok(&["vm", "exec", "live", "--cwd", "/tmp", "--", "pwd"]);
    assert_eq!(out, "/tmp\n");

    // The host moves on: a tracked edit, then a commit; exec says so.
    write(&repo, "README", b"edited on the host again\n");
    let out = host.exec("live", &["cat", "README"]);
    assert!(
        text(&out.stderr).contains("tracked files changed"),
        "{}",
        text(&out.stderr)
    );
    git(&repo, &["commit", "-qam", "more"]);
    // The test's own commit ran the repository's hooks and filters (it is plain git).
    assert!(
        marker(host.root()).exists(),
        "control: plain git runs the repository's commands"
    );
    std::fs::remove_file(marker(host.root())).unwrap();
    let out = host.exec("live", &["true"]);
    assert!(
        text(&out.stderr).contains("HEAD is"),
        "{}",
        text(&out.stderr)
    );

    // --auto-prepare copies it again first.
    let out = host.banger(&[
        "vm",
        "exec",
        "live",
        "--auto-prepare",
        "--",
        "cat",
        "README",
    ]);
    assert_eq!(exit_code(&out), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "edited on the host again\n");
    let out = host.exec("live", &["true"]);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    assert_no_marker(host.root(), "vm exec's change check and --auto-prepare");

    // A prepare that fails on the host (not a repository) leaves the guest as it was.
    let plain = host.root().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let out = host.banger(&[
        "vm",
        "workspace",
        "prepare",
        "live",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(exit_code(&out), Some(1));
    assert_eq!(
        host.exec_ok("live", &["cat", "/root/repo/README"]),
        "edited on the host again\n"
    );

    // `vm stop` does not queue behind a copy: it takes the lifecycle lock only.
    // 32 MiB of incompressible files: seconds of streaming under TCG.
    let started = std::time::Instant::now();
    let big = host.root().join("big");
    std::fs::create_dir_all(&big).unwrap();
    git(&big, &["init", "-q"]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut data = vec![0u8; 1 << 20];
    for i in 0..32 {
        for chunk in data.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        write(&big, format!("blob{i:02}.bin"), &data);
    }
    git(&big, &["add", "-A"]);
    git(&big, &["commit", "-qm", "big"]);
    banger_e2e::report_timing("big repository generated", started.elapsed());
    let mut prepare =
        host.spawn_banger(&["vm", "workspace", "prepare", "live", big.to_str().unwrap()]);
    banger_e2e::wait_until(
        "the copy has started in the guest",
        std::time::Duration::from_secs(60),
        || {
            let out = host.exec("live", &["sh", "-c", "ls /root/repo | grep -c ^blob"]);
            match text(&out.stdout).trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(()),
                _ => Err(text(&out.stdout)),
            }
        },
    );
    // The stop takes the lifecycle lock only: it goes ahead and the copy is cut short.
    // Had it waited for the copy, the prepare would have finished first, successfully.
    let started = std::time::Instant::now();
    host.banger_ok(&["vm", "stop", "live"]);
    banger_e2e::report_timing("vm stop during a prepare", started.elapsed());
    let status = prepare.wait().unwrap();
    assert!(
        !status.success(),
        "the prepare should have been cut short by the stop"
    );
    assert_eq!(host.vm_show("live")["state"], "stopped");
    assert_eq!(
        host.vm_show("live")["workspace"]["source"],
        std::fs::canonicalize(&repo).unwrap().to_str().unwrap(),
        "a cut-short prepare records nothing"
    );
    host.banger_ok(&["vm", "delete", "live"]);
}
