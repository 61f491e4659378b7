//! The file set against real git repositories in temporary directories: tracked files as
//! in the working tree, untracked only on request, ignored never, `.git` per mode,
//! submodules, hostile names and links, repositories with no commits or a detached
//! HEAD, refusals, and a repository whose hooks, fsmonitor and filters would run a
//! command (they never do).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use banger_exec::SystemRunner;
use banger_workspace::plan::Origin;
use banger_workspace::{
    EntryKind, Mode, Plan, PlanOptions, WorkspaceError, discover, plan, write_tar,
};

/// Runs git as a test fixture builder (the repo's own config applies: this is the user).
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} in {}", dir.display());
}

fn write(dir: &Path, rel: impl AsRef<Path>, data: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn new_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
}

async fn plan_of(path: &Path, mode: Mode, include_untracked: bool) -> Plan {
    let repo = discover(&SystemRunner, path).await.unwrap();
    plan(
        &SystemRunner,
        &repo,
        PlanOptions {
            mode,
            include_untracked,
        },
    )
    .await
    .unwrap()
}

fn paths(plan: &Plan, origin: Origin) -> Vec<String> {
    plan.entries
        .iter()
        .filter(|e| e.origin == origin)
        .map(|e| e.path.to_string_lossy().into_owned())
        .collect()
}

fn has(plan: &Plan, path: &str) -> bool {
    plan.entries.iter().any(|e| e.path == Path::new(path))
}

/// What a tar holds: path -> (kind, content or link target).
fn unpack(plan: &Plan) -> BTreeMap<PathBuf, (char, Vec<u8>)> {
    let mut bytes = Vec::new();
    write_tar(plan, &mut bytes).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        let path = entry.path().unwrap().into_owned();
        let item = match header.entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                ('f', data)
            }
            tar::EntryType::Symlink => (
                'l',
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            ),
            tar::EntryType::Directory => ('d', Vec::new()),
            other => panic!("unexpected entry type {other:?}"),
        };
        out.insert(path.components().collect::<PathBuf>(), item);
    }
    out
}

#[tokio::test]
async fn tracked_files_as_in_the_working_tree_and_git_included() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    write(&repo, "a.txt", b"one");
    write(&repo, "gone.txt", b"bye");
    write(&repo, "sub/c.txt", b"c");
    write(&repo, ".gitignore", b"ignored.log\nbuild/\n");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "first"]);
    write(&repo, "a.txt", b"edited, not committed");
    std::fs::remove_file(repo.join("gone.txt")).unwrap();
    write(&repo, "new.txt", b"untracked");
    write(&repo, "sub/new2.txt", b"untracked too");
    write(&repo, "ignored.log", b"never");
    write(&repo, "build/out.o", b"never");

    let plan = plan_of(&repo, Mode::Overlay, false).await;
    assert_eq!(
        paths(&plan, Origin::Tracked),
        vec![".gitignore", "a.txt", "sub/c.txt"]
    );
    assert_eq!(plan.skipped_untracked, 2);
    assert!(has(&plan, ".git/HEAD") && has(&plan, ".git/index") && has(&plan, ".git/config"));
    assert!(plan.head.as_ref().is_some_and(|h| h.len() == 40));
    let files = unpack(&plan);
    assert_eq!(
        files[Path::new("a.txt")],
        ('f', b"edited, not committed".to_vec())
    );
    assert!(!files.contains_key(Path::new("gone.txt")));
    assert!(!files.contains_key(Path::new("ignored.log")));
    assert!(!files.contains_key(Path::new("new.txt")));
    assert_eq!(files[Path::new("sub")].0, 'd');
    let size: u64 = std::fs::metadata(repo.join("a.txt")).unwrap().len();
    assert!(plan.total_bytes >= size);

    let with = plan_of(&repo, Mode::Overlay, true).await;
    assert_eq!(
        paths(&with, Origin::Untracked),
        vec!["new.txt", "sub/new2.txt"]
    );
    assert_eq!(with.skipped_untracked, 0);
    assert!(!has(&with, "ignored.log") && !has(&with, "build/out.o"));
}

#[tokio::test]
async fn overlay_leaves_out_hooks_and_reflogs_full_copy_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    write(&repo, "f", b"x");
    git(&repo, &["add", "f"]);
    git(&repo, &["commit", "-qm", "c"]);
    write(&repo, ".git/hooks/pre-commit", b"#!/bin/sh\n");
    write(&repo, ".git/index.lock", b"");
    let overlay = plan_of(&repo, Mode::Overlay, false).await;
    let full = plan_of(&repo, Mode::FullCopy, false).await;
    assert!(!has(&overlay, ".git/hooks/pre-commit"));
    assert!(
        !overlay
            .entries
            .iter()
            .any(|e| e.path.starts_with(".git/logs"))
    );
    assert!(!has(&overlay, ".git/index.lock"));
    assert!(has(&full, ".git/hooks/pre-commit"));
    assert!(full.entries.iter().any(|e| e.path.starts_with(".git/logs")));
    assert!(has(&full, ".git/index.lock"));
    for plan in [&overlay, &full] {
        assert!(
            plan.entries
                .iter()
                .any(|e| e.path.starts_with(".git/objects"))
        );
    }
}

#[tokio::test]
async fn hostile_names_links_and_a_binary_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    let names: Vec<&[u8]> = vec![
        b"with space.txt",
        b"new\nline",
        b"-leading-dash",
        b"quo\"te's",
        b"bad\xffutf8",
        b"deep/dir/\xe9t\xe9",
    ];
    for name in &names {
        write(&repo, OsStr::from_bytes(name), name);
    }
    let binary: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    write(&repo, "blob.bin", &binary);
    std::os::unix::fs::symlink("/etc/passwd", repo.join("outside")).unwrap();
    std::os::unix::fs::symlink("../../blob.bin", repo.join("deep/dir/rel")).unwrap();
    write(&repo, "exec.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(
        repo.join("exec.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "hostile"]);

    let plan = plan_of(&repo, Mode::Overlay, false).await;
    let files = unpack(&plan);
    for name in &names {
        let path = Path::new(OsStr::from_bytes(name));
        assert_eq!(files[path], ('f', name.to_vec()), "{path:?}");
    }
    assert_eq!(files[Path::new("blob.bin")], ('f', binary));
    assert_eq!(files[Path::new("outside")], ('l', b"/etc/passwd".to_vec()));
    assert_eq!(
        files[Path::new("deep/dir/rel")],
        ('l', b"../../blob.bin".to_vec())
    );
    let outside = plan
        .entries
        .iter()
        .find(|e| e.path == Path::new("outside"))
        .unwrap();
    assert!(matches!(outside.kind, EntryKind::Symlink { .. }));
    let exec = plan
        .entries
        .iter()
        .find(|e| e.path == Path::new("exec.sh"))
        .unwrap();
    assert!(matches!(exec.kind, EntryKind::File { mode: 0o755, .. }));
    // The listing is one line per entry, whatever the names hold.
    let listing = banger_workspace::listing::render(&plan);
    assert_eq!(listing.lines().count(), plan.entries.len());
}

#[tokio::test]
async fn a_tracked_path_under_a_directory_now_a_symlink_is_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let secret = tmp.path().join("secret");
    new_repo(&repo);
    write(&repo, "d/f", b"in repo");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "c"]);
    write(&secret, "f", b"host secret");
    std::fs::remove_dir_all(repo.join("d")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("d")).unwrap();
    let plan = plan_of(&repo, Mode::Overlay, true).await;
    assert!(!has(&plan, "d/f"));
    let files = unpack(&plan);
    assert!(!files.values().any(|(_, data)| data == b"host secret"));
}

#[tokio::test]
async fn empty_repo_no_commits_and_detached_head() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    new_repo(&empty);
    let plan = plan_of(&empty, Mode::Overlay, false).await;
    assert_eq!(plan.head, None);
    assert!(plan.entries.iter().all(|e| e.origin == Origin::Git));
    assert!(has(&plan, ".git/HEAD"));
    // Empty directories git needs are kept.
    assert!(unpack(&plan).contains_key(Path::new(".git/refs/heads")));

    let staged = tmp.path().join("staged");
    new_repo(&staged);
    write(&staged, "s.txt", b"staged, never committed");
    git(&staged, &["add", "s.txt"]);
    let plan = plan_of(&staged, Mode::Overlay, false).await;
    assert_eq!(plan.head, None);
    assert_eq!(paths(&plan, Origin::Tracked), vec!["s.txt"]);

    let detached = tmp.path().join("detached");
    new_repo(&detached);
    write(&detached, "x", b"1");
    git(&detached, &["add", "x"]);
    git(&detached, &["commit", "-qm", "one"]);
    write(&detached, "x", b"2");
    git(&detached, &["commit", "-qam", "two"]);
    git(&detached, &["checkout", "-q", "--detach", "HEAD~1"]);
    let plan = plan_of(&detached, Mode::Overlay, false).await;
    assert!(plan.head.is_some());
    assert_eq!(unpack(&plan)[Path::new("x")], ('f', b"1".to_vec()));
}

#[tokio::test]
async fn submodules_bring_their_checked_out_content_uninitialised_ones_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    new_repo(&lib);
    write(&lib, "lib.c", b"int f;");
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-qm", "lib"]);
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    write(&repo, "main.c", b"int main;");
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &[
            "submodule",
            "-q",
            "add",
            lib.to_str().unwrap(),
            "vendor/lib",
        ],
    );
    git(&repo, &["commit", "-qm", "with submodule"]);

    let plan = plan_of(&repo, Mode::Overlay, false).await;
    assert!(has(&plan, "vendor/lib/lib.c"));
    assert!(has(&plan, "vendor/lib/.git"));
    assert!(
        plan.entries
            .iter()
            .any(|e| e.path.starts_with(".git/modules/vendor/lib"))
    );
    assert!(has(&plan, ".gitmodules"));

    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let plan = plan_of(&clone, Mode::Overlay, false).await;
    let sub = plan
        .entries
        .iter()
        .find(|e| e.path == Path::new("vendor/lib"))
        .unwrap();
    assert_eq!(sub.kind, EntryKind::Dir);
    assert!(
        !plan
            .entries
            .iter()
            .any(|e| e.path.starts_with("vendor/lib") && e.path != Path::new("vendor/lib"))
    );
    assert_eq!(unpack(&plan)[Path::new("vendor/lib")].0, 'd');
}

#[tokio::test]
async fn discovery_finds_the_root_and_refuses_what_is_not_a_working_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    write(&repo, "sub/deeper/f", b"x");
    let found = discover(&SystemRunner, &repo.join("sub/deeper"))
        .await
        .unwrap();
    assert_eq!(found.root, std::fs::canonicalize(&repo).unwrap());
    assert_eq!(found.subdir, Path::new("sub/deeper"));
    assert_eq!(found.guest_cwd("/root/repo"), "/root/repo/sub/deeper");

    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let refused = discover(&SystemRunner, &plain).await;
    assert!(
        matches!(refused, Err(WorkspaceError::NotARepo(_))),
        "{refused:?}"
    );
    assert!(matches!(
        discover(&SystemRunner, &repo.join("sub/deeper/f")).await,
        Err(WorkspaceError::NotADirectory(_))
    ));
    assert!(matches!(
        discover(&SystemRunner, &repo.join("nope")).await,
        Err(WorkspaceError::NotFound(_))
    ));
    assert!(matches!(
        discover(&SystemRunner, &repo.join(".git")).await,
        Err(WorkspaceError::NotARepo(_))
    ));
}

#[tokio::test]
async fn a_linked_worktree_becomes_a_standalone_git_dir_in_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    new_repo(&repo);
    write(&repo, "f", b"main");
    git(&repo, &["add", "f"]);
    git(&repo, &["commit", "-qm", "on main"]);
    let worktree = tmp.path().join("wt");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            worktree.to_str().unwrap(),
        ],
    );
    write(&worktree, "f", b"side");
    git(&worktree, &["commit", "-qam", "on side"]);
    write(&worktree, "f", b"side, edited");

    let plan = plan_of(&worktree, Mode::Overlay, false).await;
    assert!(plan.repo.linked.is_some());
    assert!(
        !plan
            .entries
            .iter()
            .any(|e| e.path.starts_with(".git/worktrees"))
    );
    let files = unpack(&plan);
    assert_eq!(
        files[Path::new(".git/HEAD")],
        ('f', b"ref: refs/heads/side\n".to_vec())
    );
    assert_eq!(files[Path::new("f")], ('f', b"side, edited".to_vec()));

    // The copy is a repository of its own: same HEAD, and only the edit shows.
    let mut bytes = Vec::new();
    write_tar(&plan, &mut bytes).unwrap();
    let copy = tmp.path().join("copy");
    tar::Archive::new(&bytes[..]).unpack(&copy).unwrap();
    let git_out = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "git {args:?} in {}", dir.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        git_out(&copy, &["rev-parse", "HEAD"]),
        git_out(&worktree, &["rev-parse", "HEAD"])
    );
    assert_eq!(git_out(&copy, &["status", "--porcelain"]), " M f\n");
}

#[tokio::test]
async fn hooks_fsmonitor_and_filters_of_the_repo_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let marker = tmp.path().join("marker");
    new_repo(&repo);
    let script = tmp.path().join("evil.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho ran \"$@\" >> {}\ncat\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    write(&repo, ".gitattributes", b"* filter=evil diff=evil\n");
    write(&repo, "f.txt", b"content");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "c"]);
    for (key, value) in [
        ("core.fsmonitor", script),
        ("filter.evil.clean", script),
        ("filter.evil.smudge", script),
        ("filter.evil.process", script),
        ("diff.evil.textconv", script),
        ("core.hooksPath", tmp.path().join("hooks").to_str().unwrap()),
    ] {
        git(&repo, &["config", key, value]);
    }
    for hook in [
        "post-index-change",
        "reference-transaction",
        "post-checkout",
    ] {
        write(
            &tmp.path().join("hooks"),
            hook,
            format!("#!/bin/sh\n{script}\n").as_bytes(),
        );
        std::fs::set_permissions(
            tmp.path().join("hooks").join(hook),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let _ = std::fs::remove_file(&marker);
    write(&repo, "f.txt", b"edited so git would want to look");
    write(&repo, "u.txt", b"untracked");

    for mode in [Mode::Overlay, Mode::FullCopy] {
        let plan = plan_of(&repo, mode, true).await;
        unpack(&plan);
        banger_workspace::tracked_signature(&SystemRunner, &plan.repo)
            .await
            .unwrap();
    }
    assert!(
        !marker.exists(),
        "the repository ran a command: {:?}",
        std::fs::read_to_string(&marker)
    );

    // The fixture is hostile: plain git on it does run the repository's commands.
    git(&repo, &["status", "--porcelain"]);
    assert!(
        marker.exists(),
        "control: plain `git status` should run the fsmonitor/filter"
    );
}
