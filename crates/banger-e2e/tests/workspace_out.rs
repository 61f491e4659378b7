//! Getting things out of a real tiny guest, and files both ways, on one shared VM:
//! `vm exec` forwards stdin (bytes exact, end of file closes the guest's stdin, a large
//! input streams with back-pressure); `vm cp` both ways keeps a tree's modes and
//! symlinks, renames like `docker cp`, and speaks tar on `-`; `vm workspace export`
//! round-trips a guest's edits, adds, deletes, chmod, rename, binary and symlink (and
//! commits with `--base-commit` or `--format mbox`) onto host clones exactly, without
//! touching the guest's index or status; `vm workspace apply` applies the same, runs no
//! hook, fsmonitor or filter of the host repository, and refuses a crafted patch that
//! writes into `.git` or through a host symlink, leaving the host untouched.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use banger_e2e::{TestHost, exit_code, require_vm, text};

const VM: &str = "wsout";

#[test]
fn exec_stdin_cp_and_workspace_export_on_a_real_guest() {
    require_vm!(Tool("git"));
    let host = TestHost::start().unwrap();
    host.create_vm(VM, &["--image", "tiny"]);
    exec_forwards_stdin(&host);
    cp_both_ways(&host);
    workspace_export_and_apply(&host);
    defaults_from_the_workspace_record(&host);
}

/// A VM made by `vm run PATH` has a workspace record: export finds the guest path in it,
/// `apply` the host repository and the prepared commit (so the guest's commit comes
/// along), and `--format mbox` starts at the prepared commit.
fn defaults_from_the_workspace_record(host: &TestHost) {
    let started = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    fs::create_dir(&repo).unwrap();
    git(host, &repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("kept.txt"), "kept\n").unwrap();
    fs::write(repo.join("edited.txt"), "one\n").unwrap();
    git(host, &repo, &["add", "-A"]);
    git(host, &repo, &["commit", "-qm", "host"]);
    let prepared = git(host, &repo, &["rev-parse", "HEAD"]).trim().to_string();
    let edits = "set -e; git config user.name Guest; git config user.email g@example.invalid
echo two >> edited.txt; git commit -qam 'guest edit'
printf 'new\\n' > added.txt; rm kept.txt";
    let out = host.banger(&[
        "vm",
        "run",
        "--image",
        "tiny",
        "--name",
        "wsout-run",
        repo.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        edits,
    ]);
    host.expect_success(&["vm", "run", "PATH", "--", "edits"], &out);
    let shown = host.vm_show("wsout-run");
    assert_eq!(
        shown["workspace"]["base_commit"],
        prepared.as_str(),
        "{shown}"
    );

    // mbox from the prepared commit onto a clone of the host repository.
    let mbox = host.banger(&["vm", "workspace", "export", "wsout-run", "--format", "mbox"]);
    host.expect_success(&["vm", "workspace", "export", "--format", "mbox"], &mbox);
    let am = clone(host, work.path(), &repo, "am");
    fs::write(work.path().join("run.mbox"), &mbox.stdout).unwrap();
    git(host, &am, &["am", "-q", "--3way", "../run.mbox"]);

    // apply with no flags: into the recorded host repository, from the prepared commit.
    let out = host.banger_json(&["vm", "workspace", "apply", "wsout-run"]);
    assert_eq!(out["base"], prepared.as_str(), "{out}");
    assert_eq!(
        fs::read_to_string(repo.join("edited.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(fs::read_to_string(repo.join("added.txt")).unwrap(), "new\n");
    assert!(!repo.join("kept.txt").exists());
    assert_eq!(
        host_tree(host, &am),
        host_tree(host, &repo),
        "mbox + git am = apply"
    );
    host.banger_ok(&["vm", "delete", "--force", "wsout-run"]);
    banger_e2e::report_timing(
        "workspace record defaults (vm run PATH, 4 calls)",
        started.elapsed(),
    );
}

/// git on the host, in `dir`, with a fixed identity; must succeed; stdout.
fn git(host: &TestHost, dir: &Path, args: &[&str]) -> String {
    let cmd = banger_exec::Cmd::new("git")
        .args([
            "-c",
            "user.name=Host",
            "-c",
            "user.email=host@example.invalid",
        ])
        .args(args)
        .cwd(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    match host.block_on(banger_exec::run(&cmd)) {
        Ok(out) => text(&out.stdout),
        Err(error) => panic!("git {args:?} in {}: {error}", dir.display()),
    }
}

/// The tree of everything in `dir`'s working tree (not ignored), as git hashes it.
fn host_tree(host: &TestHost, dir: &Path) -> String {
    git(host, dir, &["add", "-A"]);
    git(host, dir, &["write-tree"]).trim().to_string()
}

fn clone(host: &TestHost, work: &Path, origin: &Path, name: &str) -> std::path::PathBuf {
    let path = work.join(name);
    git(host, work, &["clone", "-q", origin.to_str().unwrap(), name]);
    path
}

const GUEST_EDITS: &str = "set -e; cd /root/repo
git config user.name Guest; git config user.email guest@example.invalid
echo 'changed in a commit' >> a.txt; git commit -qam 'guest commit'
echo 'uncommitted edit' >> b.txt
printf 'brand new\n' > 'new file.txt'
rm to-delete.txt
chmod +x script.sh
mv old-name.txt new-name.txt
head -c 3000 /dev/urandom > bin.dat; printf '\\000\\377' >> bin.dat
ln -s a.txt link
echo noise > junk.log";

fn workspace_export_and_apply(host: &TestHost) {
    let started = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    fs::create_dir(&origin).unwrap();
    git(host, &origin, &["init", "-q", "-b", "main"]);
    for (name, body) in [
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("script.sh", "#!/bin/sh\necho s\n"),
        (
            "old-name.txt",
            "a file that is renamed, long enough for rename detection\n",
        ),
        ("to-delete.txt", "bye\n"),
        (".gitignore", "*.log\n"),
    ] {
        fs::write(origin.join(name), body).unwrap();
    }
    git(host, &origin, &["add", "-A"]);
    git(host, &origin, &["commit", "-qm", "initial"]);
    let initial = git(host, &origin, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    host.banger_ok(&[
        "vm",
        "cp",
        origin.to_str().unwrap(),
        &format!("{VM}:/root/repo"),
    ]);
    host.exec_ok(VM, &["sh", "-c", GUEST_EDITS]);

    let guest_state = || {
        host.exec_ok(
            VM,
            &["sh", "-c", "cd /root/repo && git status --porcelain && sha256sum .git/index && git rev-parse HEAD"],
        )
    };
    let before = guest_state();

    // --base-commit: commits included; onto a clean clone it reproduces the guest tree.
    let patch = host.banger(&["vm", "workspace", "export", VM, "--base-commit", &initial]);
    host.expect_success(&["vm", "workspace", "export", "--base-commit"], &patch);
    let full = clone(host, work.path(), &origin, "full");
    fs::write(work.path().join("full.patch"), &patch.stdout).unwrap();
    git(host, &full, &["apply", "--index", "../full.patch"]);
    let guest_tree = host
        .exec_ok(
            VM,
            &["sh", "-c", "cd /root/repo && cp .git/index /tmp/i && GIT_INDEX_FILE=/tmp/i git add -A && GIT_INDEX_FILE=/tmp/i git write-tree"],
        )
        .trim()
        .to_string();
    assert_eq!(
        host_tree(host, &full),
        guest_tree,
        "export --base-commit + git apply = the guest's tree"
    );
    let full_text = String::from_utf8_lossy(&patch.stdout);
    assert!(
        full_text.contains("GIT binary patch"),
        "the binary file is in the patch"
    );
    assert!(
        full_text.contains("rename from old-name.txt"),
        "the rename is a rename"
    );
    assert!(!full_text.contains("junk.log"), "ignored files stay out");

    // Plain export: the uncommitted changes only (the guest's commit is not in it).
    let plain = host.banger_ok(&["vm", "workspace", "export", VM]);
    assert!(!plain.contains("changed in a commit"), "{plain}");
    assert!(plain.contains("uncommitted edit"), "{plain}");
    let listed = host.banger_json(&["vm", "workspace", "export", VM, "--base-commit", &initial]);
    assert_eq!(listed["base"], initial.as_str());
    let mut files: Vec<String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["status"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "added bin.dat",
            "added link",
            "added new file.txt",
            "deleted to-delete.txt",
            "modified a.txt",
            "modified b.txt",
            "modified script.sh",
            "renamed new-name.txt"
        ]
    );

    // mbox: the guest's commit keeps its message and author; the tree matches.
    let mbox = host.banger(&["vm", "workspace", "export", VM, "--format", "mbox"]);
    host.expect_success(&["vm", "workspace", "export", "--format", "mbox"], &mbox);
    let am = clone(host, work.path(), &origin, "am");
    fs::write(work.path().join("guest.mbox"), &mbox.stdout).unwrap();
    git(host, &am, &["am", "-q", "--3way", "../guest.mbox"]);
    let log = git(
        host,
        &am,
        &["log", "--format=%an|%s", &format!("{initial}..HEAD")],
    );
    assert_eq!(
        log,
        "Guest|Uncommitted changes in the guest workspace\nGuest|guest commit\n"
    );
    assert_eq!(
        host_tree(host, &am),
        guest_tree,
        "format mbox + git am = the guest's tree"
    );

    // Nothing in the guest moved.
    assert_eq!(
        guest_state(),
        before,
        "the guest's status, index and HEAD are unchanged"
    );

    // apply: into a clone whose hooks, fsmonitor and filters would leave a marker.
    let applied = clone(host, work.path(), &origin, "applied");
    let marker = work.path().join("marker");
    let touch = format!("touch {}", marker.display());
    for (key, value) in [
        ("core.fsmonitor", touch.as_str()),
        ("core.hooksPath", ".git/hooks"),
        ("filter.evil.clean", touch.as_str()),
        ("filter.evil.smudge", touch.as_str()),
        ("filter.evil.process", touch.as_str()),
        ("diff.external", touch.as_str()),
    ] {
        git(host, &applied, &["config", key, value]);
    }
    fs::write(
        applied.join(".git/info/attributes"),
        "* filter=evil diff=evil\n",
    )
    .unwrap();
    for hook in [
        "pre-applypatch",
        "post-applypatch",
        "post-checkout",
        "post-index-change",
    ] {
        let path = applied.join(".git/hooks").join(hook);
        fs::write(&path, format!("#!/bin/sh\n{touch}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = host.banger_json(&[
        "vm",
        "workspace",
        "apply",
        VM,
        "--to",
        applied.to_str().unwrap(),
        "--base-commit",
        &initial,
    ]);
    assert_eq!(out["files"].as_array().unwrap().len(), 8, "{out}");
    assert!(
        !marker.exists(),
        "no hook, fsmonitor or filter of the host repository ran"
    );
    fs::remove_file(applied.join(".git/info/attributes")).unwrap();
    for key in ["core.fsmonitor", "core.hooksPath", "diff.external"] {
        git(host, &applied, &["config", "--unset", key]);
    }
    git(
        host,
        &applied,
        &["config", "--remove-section", "filter.evil"],
    );
    assert_eq!(
        host_tree(host, &applied),
        guest_tree,
        "vm workspace apply = the guest's tree"
    );

    // apply again onto a host with uncommitted changes to a touched file: refused.
    let dirty = clone(host, work.path(), &origin, "dirty");
    fs::write(dirty.join("b.txt"), "host work\n").unwrap();
    let out = host.banger(&[
        "vm",
        "workspace",
        "apply",
        VM,
        "--to",
        dirty.to_str().unwrap(),
    ]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("uncommitted changes"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("b.txt"), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(dirty.join("b.txt")).unwrap(),
        "host work\n"
    );

    // A hostile guest: its `git diff` prints a crafted patch.
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let victim = clone(host, work.path(), &origin, "victim");
    symlink(&outside, victim.join("ext")).unwrap();
    git(host, &victim, &["add", "ext"]);
    git(
        host,
        &victim,
        &["commit", "-qm", "a symlink out of the repository"],
    );
    let crafted = [
        (
            "diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\nnew file mode 100755\nindex 0000000..1111111\n--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+touch /tmp/pwned\n",
            ".git/hooks/post-checkout",
        ),
        (
            "diff --git a/ext/planted b/ext/planted\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/ext/planted\n@@ -0,0 +1 @@\n+x\n",
            "ext/planted",
        ),
    ];
    let status_before = git(host, &victim, &["status", "--porcelain", "--ignored"]);
    for (patch, path) in crafted {
        host.exec_ok(
            VM,
            &["sh", "-c", &format!(
                "mkdir -p /usr/local/bin && cat > /root/crafted.patch <<'EOF_PATCH'\n{patch}EOF_PATCH\n\
                 printf '%s\\n' '#!/bin/sh' 'case \"$*\" in *\"diff --cached\"*) cat /root/crafted.patch;; *) exec /usr/bin/git \"$@\";; esac' > /usr/local/bin/git && chmod +x /usr/local/bin/git"
            )],
        );
        let out = host.banger(&[
            "vm",
            "workspace",
            "apply",
            VM,
            "--to",
            victim.to_str().unwrap(),
        ]);
        assert_eq!(exit_code(&out), Some(1), "{path}: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(path) && stderr.contains("nothing was applied"),
            "{stderr}"
        );
        assert_eq!(
            git(host, &victim, &["status", "--porcelain", "--ignored"]),
            status_before,
            "{path}"
        );
        assert!(!victim.join(".git/hooks/post-checkout").exists());
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
    }
    host.exec_ok(VM, &["rm", "/usr/local/bin/git"]);
    banger_e2e::report_timing("workspace export and apply (12 calls)", started.elapsed());
}

/// A tree with modes, an executable, a read-only directory, symlinks in and out of the
/// tree and awkward names.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("sub/secret"), b"s3cret").unwrap();
    fs::set_permissions(root.join("sub/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("sub/deep/with space 'q'"), vec![7u8; 100_000]).unwrap();
    symlink("/etc/passwd", root.join("link-out")).unwrap();
    symlink("sub/secret", root.join("link-in")).unwrap();
    fs::set_permissions(root.join("sub/deep"), fs::Permissions::from_mode(0o750)).unwrap();
}

/// Every entry under `root`: (relative name, mode, symlink target or content).
fn describe_tree(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let body = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            out.push((
                name,
                if meta.file_type().is_symlink() {
                    0
                } else {
                    mode
                },
                body,
            ));
        }
    }
    out.sort();
    out
}

fn cp_both_ways(host: &TestHost) {
    let started = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let tree_arg = tree.to_str().unwrap();

    // Into an existing guest directory: lands as /root/tree.
    host.banger_ok(&["vm", "cp", tree_arg, &format!("{VM}:/root/")]);
    let listing = host.exec_ok(
        VM,
        &[
            "sh",
            "-c",
            "cd /root/tree && stat -c '%a %n' run.sh sub/secret sub/deep && readlink link-out && readlink link-in && cat sub/secret",
        ],
    );
    assert_eq!(
        listing, "755 run.sh\n600 sub/secret\n750 sub/deep\n/etc/passwd\nsub/secret\ns3cret",
        "modes, symlinks and content in the guest"
    );

    // Back to a new host path: the same tree, modes and links included.
    let back = work.path().join("back");
    host.banger_ok(&[
        "vm",
        "cp",
        &format!("{VM}:/root/tree"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(
        describe_tree(&back),
        describe_tree(&tree),
        "round trip of the tree"
    );

    // A single file onto a new name, and back into an existing directory.
    let file = tree.join("run.sh");
    host.banger_ok(&[
        "vm",
        "cp",
        file.to_str().unwrap(),
        &format!("{VM}:/tmp/renamed.sh"),
    ]);
    assert_eq!(host.exec_ok(VM, &["/tmp/renamed.sh"]), "hi\n");
    let into = work.path().join("into");
    fs::create_dir(&into).unwrap();
    host.banger_ok(&[
        "vm",
        "cp",
        &format!("{VM}:/tmp/renamed.sh"),
        into.to_str().unwrap(),
    ]);
    let copied = into.join("renamed.sh");
    assert_eq!(
        fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // `-`: a tar stream in and out.
    let mut stream = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o640);
    stream
        .append_data(&mut header, "from-stdin.txt", &b"abc"[..])
        .unwrap();
    let stream = stream.into_inner().unwrap();
    let out = host.banger_with_input(&["vm", "cp", "-", &format!("{VM}:/tmp")], &stream);
    host.expect_success(&["vm", "cp", "-"], &out);
    assert_eq!(
        host.exec_ok(VM, &["stat", "-c", "%a %s", "/tmp/from-stdin.txt"]),
        "640 3\n"
    );
    let out = host.banger(&["vm", "cp", &format!("{VM}:/root/tree/sub"), "-"]);
    host.expect_success(&["vm", "cp", "VM:... -"], &out);
    let mut names: Vec<String> = tar::Archive::new(out.stdout.as_slice())
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sub", "sub/deep", "sub/deep/with space 'q'", "sub/secret"]
    );

    // A missing guest source and a missing parent are refused with the reason.
    let out = host.banger(&["vm", "cp", &format!("{VM}:/nope"), into.to_str().unwrap()]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );
    let out = host.banger(&["vm", "cp", tree_arg, &format!("{VM}:/no/such/dir")]);
    assert_eq!(exit_code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("parent directory does not exist"),
        "{}",
        text(&out.stderr)
    );
    banger_e2e::report_timing("vm cp both ways (8 calls)", started.elapsed());
}

/// `vm exec VM -- sh -c 'cat > f' < file` writes the file's exact bytes; a command that
/// reads all of its stdin ends (so EOF reached it); `-n` gives it nothing.
fn exec_forwards_stdin(host: &TestHost) {
    let started = std::time::Instant::now();
    let mut input: Vec<u8> = (0..=255u8).collect();
    input.extend_from_slice(b"\nlast line without newline");
    let out = host.banger_with_input(
        &["vm", "exec", VM, "--", "sh", "-c", "cat > /tmp/stdin.bin"],
        &input,
    );
    host.expect_success(&["vm", "exec", "cat > f"], &out);
    let back = host.exec(VM, &["cat", "/tmp/stdin.bin"]);
    assert_eq!(back.stdout, input, "the guest file has stdin's exact bytes");

    // 3 MiB through `wc -c`: more than the flow-control windows, so back-pressure works.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let out = host.banger_with_input(&["vm", "exec", VM, "--", "wc", "-c"], &big);
    host.expect_success(&["vm", "exec", "wc -c"], &out);
    assert_eq!(text(&out.stdout).trim(), big.len().to_string());

    // Output and exit code still pass through with stdin forwarded.
    let out = host.banger_with_input(
        &["vm", "exec", VM, "--", "sh", "-c", "tr a-z A-Z; exit 7"],
        b"shout\n",
    );
    assert_eq!(exit_code(&out), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SHOUT\n");

    // -n: the command reads /dev/null, whatever banger's stdin holds.
    let out = host.banger_with_input(&["vm", "exec", "-n", VM, "--", "wc", "-c"], b"ignored");
    host.expect_success(&["vm", "exec", "-n"], &out);
    assert_eq!(text(&out.stdout).trim(), "0");
    banger_e2e::report_timing("vm exec with stdin (4 calls, 3 MiB)", started.elapsed());
}
