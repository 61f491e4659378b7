//! The config file's guest setup on a real `debian-bookworm` guest (it has git): the
//! host user's git identity (from a test HOME's `.gitconfig`) is what `git config
//! user.email` says in the guest (a new VM's config copied in as a file, a restarted VM's
//! edited in place, never duplicated); `[[file_sync]]` copies a file and a directory from the
//! home (a private key inside the directory stays out), and a source that is a symlink
//! to outside the home is refused, naming it, before any VM exists.
//!
//! `--host-ca` needs the network lab and lives in `network.rs`.

use banger_e2e::{TestHost, exit_code, require_vm, text};

#[test]
fn git_identity_and_file_sync_reach_the_guest_and_escapes_are_refused() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let home = host.root().join("home");
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = Ada Tester\n\temail = ada@example.test\n",
    )
    .unwrap();
    std::fs::write(home.join(".npmrc"), "registry=https://npm.example.test/\n").unwrap();
    let tool = home.join(".config/tool");
    std::fs::create_dir_all(&tool).unwrap();
    std::fs::write(tool.join("settings.toml"), "colour = true\n").unwrap();
    std::fs::write(tool.join("id_tool"), "not for the guest\n").unwrap();
    let config = host.config_dir().join("config.toml");
    std::fs::write(
        &config,
        "[[file_sync]]\nsource = \"~/.npmrc\"\n\n\
         [[file_sync]]\nsource = \"~/.config/tool\"\ndest = \"/etc/tool\"\n",
    )
    .unwrap();

    let out = host.banger(&[
        "vm",
        "create",
        "--name",
        "setup",
        "--image",
        "debian-bookworm",
    ]);
    host.expect_success(&["vm", "create"], &out);
    let notes = text(&out.stderr);
    assert!(
        notes.contains("synced ~/.npmrc -> /root/.npmrc, ~/.config/tool -> /etc/tool"),
        "{notes}"
    );
    assert!(
        notes.contains("left out") && notes.contains("id_tool"),
        "{notes}"
    );
    assert!(
        notes.contains("git identity: Ada Tester <ada@example.test>"),
        "{notes}"
    );

    assert_eq!(
        host.exec_ok("setup", &["git", "config", "user.email"]),
        "ada@example.test\n"
    );
    assert_eq!(
        host.exec_ok("setup", &["git", "config", "user.name"]),
        "Ada Tester\n"
    );
    // A new VM's config is copied in as a file of root's, not written by a process.
    assert_eq!(
        host.exec_ok("setup", &["stat", "-c", "%a %U", "/root/.gitconfig"]),
        "644 root\n"
    );
    // Started again, the VM has a config: it is edited in place, nothing duplicated.
    let out = host.banger(&["vm", "stop", "setup"]);
    host.expect_success(&["vm", "stop"], &out);
    let out = host.banger(&["vm", "start", "setup"]);
    host.expect_success(&["vm", "start"], &out);
    assert_eq!(
        host.exec_ok("setup", &["git", "config", "--get-all", "user.email"]),
        "ada@example.test\n"
    );
    assert_eq!(
        host.exec_ok("setup", &["cat", "/root/.npmrc"]),
        "registry=https://npm.example.test/\n"
    );
    assert_eq!(
        host.exec_ok("setup", &["cat", "/etc/tool/settings.toml"]),
        "colour = true\n"
    );
    let key = host.exec("setup", &["test", "-e", "/etc/tool/id_tool"]);
    assert_eq!(
        exit_code(&key),
        Some(1),
        "the private key must not be copied"
    );

    // A symlink in the home pointing outside it is refused before a VM exists.
    let outside = host.root().join("outside-secret");
    std::fs::write(&outside, "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, home.join(".escape")).unwrap();
    std::fs::write(&config, "[[file_sync]]\nsource = \"~/.escape\"\n").unwrap();
    let out = host.banger(&[
        "vm",
        "create",
        "--name",
        "escape",
        "--image",
        "debian-bookworm",
    ]);
    assert_eq!(exit_code(&out), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("~/.escape") && err.contains("outside your home"),
        "{err}"
    );
    assert!(err.contains(&outside.display().to_string()), "{err}");
    assert_eq!(host.vm_names(), ["setup"], "no VM for a refused sync");

    // A bad config file fails `vm create` with its line, before a VM exists.
    std::fs::write(&config, "nat = true\nmemroy = \"1GiB\"\n").unwrap();
    let out = host.banger(&["vm", "create", "--name", "bad", "--image", "tiny"]);
    assert_eq!(exit_code(&out), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:2: memroy: unknown field", config.display())),
        "{err}"
    );
    assert_eq!(host.vm_names(), ["setup"]);
}
