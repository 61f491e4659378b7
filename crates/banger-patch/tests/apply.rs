//! `apply_to_repo` on real repositories (git on the host, no guest): a patch made by git
//! reproduces the other tree; a host with uncommitted changes to a touched file, a
//! leading host symlink, or a crafted `.git` write is refused with nothing applied; and
//! the repository's hooks, fsmonitor and filters never run.

use std::os::unix::fs::symlink;
use std::path::Path;

use banger_exec::{Cmd, SystemRunner};
use banger_patch::{ApplyError, apply_to_repo};

async fn git(dir: &Path, args: &[&str]) -> String {
    let cmd = Cmd::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .cwd(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    let out = banger_exec::run(&cmd).await.unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with a few files, and a clone of it.
async fn repo_and_clone(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]).await;
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    std::fs::write(repo.join("b.txt"), "b\n").unwrap();
    git(&repo, &["add", "-A"]).await;
    git(&repo, &["commit", "-qm", "one"]).await;
    git(root, &["clone", "-q", "repo", "clone"]).await;
    (repo, root.join("clone"))
}

/// What `git diff --binary` gives for everything changed in `dir`, as the guest runs it.
async fn patch_of(dir: &Path) -> Vec<u8> {
    git(dir, &["add", "-A"]).await;
    let cmd = Cmd::new("git")
        .args(["diff", "--cached", "--binary", "--full-index", "-M", "HEAD"])
        .cwd(dir);
    banger_exec::run(&cmd).await.unwrap().stdout
}

#[tokio::test]
async fn a_git_patch_reproduces_the_tree() {
    let root = tempfile::tempdir().unwrap();
    let (repo, guest) = repo_and_clone(root.path()).await;
    std::fs::write(guest.join("a.txt"), "a\nmore\n").unwrap();
    std::fs::remove_file(guest.join("b.txt")).unwrap();
    std::fs::write(guest.join("bin"), [0u8, 255, 1, 2, 0]).unwrap();
    std::fs::create_dir(guest.join("dir with space")).unwrap();
    std::fs::write(guest.join("dir with space/\"q\""), "q\n").unwrap();
    symlink("a.txt", guest.join("link")).unwrap();
    let patch = patch_of(&guest).await;
    let report = apply_to_repo(&SystemRunner, &repo, &patch).await.unwrap();
    assert_eq!(report.changes.len(), 5);
    git(&repo, &["add", "-A"]).await;
    assert_eq!(
        git(&repo, &["write-tree"]).await,
        git(&guest, &["write-tree"]).await
    );
    // Empty: nothing to do, still fine.
    assert!(
        apply_to_repo(&SystemRunner, &repo, b"")
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

#[tokio::test]
async fn refusals_leave_the_host_untouched() {
    let root = tempfile::tempdir().unwrap();
    let (repo, guest) = repo_and_clone(root.path()).await;
    std::fs::write(guest.join("a.txt"), "guest\n").unwrap();
    let patch = patch_of(&guest).await;

    // Uncommitted host change to a touched file.
    std::fs::write(repo.join("a.txt"), "host work\n").unwrap();
    match apply_to_repo(&SystemRunner, &repo, &patch).await {
        Err(ApplyError::Dirty(paths)) => assert_eq!(paths, ["a.txt"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(repo.join("a.txt")).unwrap(),
        "host work\n"
    );
    // Staged counts too.
    git(&repo, &["add", "a.txt"]).await;
    assert!(matches!(
        apply_to_repo(&SystemRunner, &repo, &patch).await,
        Err(ApplyError::Dirty(_))
    ));
    git(&repo, &["reset", "-q", "--hard"]).await;

    // Through a symlink the host repository has.
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    symlink(&outside, repo.join("ext")).unwrap();
    let through = b"diff --git a/ext/x b/ext/x\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/ext/x\n@@ -0,0 +1 @@\n+x\n";
    let error = apply_to_repo(&SystemRunner, &repo, through)
        .await
        .unwrap_err();
    assert!(
        format!(
            "{error}: {}",
            std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default()
        )
        .contains("ext/x"),
        "{error:?}"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // Into .git.
    let hooks = b"diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\nindex 0000000..1111111\n--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n";
    assert!(matches!(
        apply_to_repo(&SystemRunner, &repo, hooks).await,
        Err(ApplyError::Refused(_))
    ));
    assert!(!repo.join(".git/hooks/pre-commit").exists());

    // A hunk that does not apply: nothing of the patch is written, not even the part
    // that would have.
    let partial = b"diff --git a/b.txt b/b.txt\nindex 0000000..1111111 100644\n--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-b\n+B\ndiff --git a/a.txt b/a.txt\nindex 0000000..1111111 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-not there\n+x\n";
    assert!(matches!(
        apply_to_repo(&SystemRunner, &repo, partial).await,
        Err(ApplyError::DoesNotApply(_))
    ));
    assert_eq!(std::fs::read_to_string(repo.join("b.txt")).unwrap(), "b\n");
}

#[tokio::test]
async fn the_repository_runs_nothing_of_its_own() {
    let root = tempfile::tempdir().unwrap();
    let (repo, guest) = repo_and_clone(root.path()).await;
    std::fs::write(guest.join("a.txt"), "guest\n").unwrap();
    std::fs::write(guest.join("new.txt"), "new\n").unwrap();
    let patch = patch_of(&guest).await;
    let marker = root.path().join("marker");
    let touch = format!("touch {}", marker.display());
    for (key, value) in [
        ("core.fsmonitor", touch.as_str()),
        ("filter.evil.clean", touch.as_str()),
        ("filter.evil.smudge", touch.as_str()),
        ("filter.evil.required", "true"),
    ] {
        git(&repo, &["config", key, value]).await;
    }
    std::fs::write(repo.join(".git/info/attributes"), "* filter=evil\n").unwrap();
    for hook in ["pre-applypatch", "post-applypatch", "post-index-change"] {
        let path = repo.join(".git/hooks").join(hook);
        std::fs::write(&path, format!("#!/bin/sh\n{touch}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    apply_to_repo(&SystemRunner, &repo, &patch).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(repo.join("new.txt")).unwrap(),
        "new\n"
    );
    assert!(!marker.exists(), "a hook, fsmonitor or filter ran");
}
