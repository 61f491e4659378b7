//! banger-ssh against the real OpenSSH tools, the reference for every format involved:
//! `ssh-keygen` creates the keypair (also under concurrent first use), `ssh-keygen -F`
//! finds what `KnownHosts` recorded, and `ssh -G` (which prints the configuration a
//! connection would use, without connecting) accepts `ssh_args` and the config block.

use std::path::Path;
use std::time::Duration;

use banger_exec::{Cmd, SystemRunner};
use banger_requires::require;
use banger_ssh::{
    Keypair, KnownHosts, SshTarget, generate_host_key, host_patterns, parse_host_public_key,
    ssh_args, ssh_config_block,
};

/// Runs a tool; None when it is not installed.
async fn run(program: &str, args: &[&str]) -> Option<String> {
    let cmd = Cmd::new(program)
        .args(args.iter().copied())
        .timeout(Duration::from_secs(30));
    match banger_exec::run(&cmd).await {
        Ok(output) => Some(output.stdout_text()),
        Err(err) if err.is_not_found() => None,
        Err(err) => panic!("{err}"),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keypair_with_real_ssh_keygen() {
    require!(Tool("ssh-keygen"));
    let config = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let dir = config.path().to_path_buf();
            tokio::spawn(async move { Keypair::ensure(&dir, &SystemRunner).await })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap().unwrap());
    }
    let first = keys[0].clone();
    assert!(keys.iter().all(|k| *k == first), "one key for all callers");
    let public = first.public_key();
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    assert!(public.ends_with(" banger"), "{public}");
    // The private key really is the pair of the public one.
    let derived = run(
        "ssh-keygen",
        &["-y", "-f", path_str(first.private_key_file())],
    )
    .await
    .unwrap();
    assert_eq!(derived.trim(), public);
    let mut names: Vec<String> = std::fs::read_dir(config.path().join("ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["id_ed25519", "id_ed25519.pub"]);
    let again = Keypair::ensure(config.path(), &SystemRunner).await.unwrap();
    assert_eq!(again, first);
}

#[tokio::test]
async fn host_keys_are_new_pairs_and_leave_nothing_behind() {
    use std::os::unix::fs::PermissionsExt as _;
    require!(Tool("ssh-keygen"));
    let scratch = tempfile::tempdir().unwrap();
    let one = generate_host_key(scratch.path(), &SystemRunner)
        .await
        .unwrap();
    let two = generate_host_key(scratch.path(), &SystemRunner)
        .await
        .unwrap();
    assert_ne!(one.public, two.public, "each call makes a new key");
    assert!(one.public.starts_with("ssh-ed25519 AAAA"), "{}", one.public);
    assert!(
        one.private
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "an OpenSSH private key file"
    );
    assert!(
        !format!("{one:?}").contains("PRIVATE"),
        "Debug hides the private key"
    );
    // The private half really derives the public one.
    let file = scratch.path().join("copy");
    std::fs::write(&file, &one.private).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let derived = run("ssh-keygen", &["-y", "-f", path_str(&file)])
        .await
        .unwrap();
    assert_eq!(derived.trim(), one.public);
    std::fs::remove_file(&file).unwrap();
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "scratch directories removed: {left:?}");
}

/// Whether `program` is absent from the PATH banger runs commands with.
#[tokio::test]
async fn recorded_host_keys_are_found_by_ssh_keygen() {
    require!(Tool("ssh-keygen"));
    let dir = tempfile::tempdir().unwrap();
    // A real host key, as a guest would have it.
    let host_key = dir.path().join("ssh_host_ed25519_key");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "root@web",
            "-f",
            path_str(&host_key),
        ],
    )
    .await
    .unwrap();
    let pub_text = std::fs::read_to_string(dir.path().join("ssh_host_ed25519_key.pub")).unwrap();
    let line = parse_host_public_key(&pub_text).unwrap();

    let known_hosts = KnownHosts::new(dir.path());
    known_hosts
        .record(&host_patterns("web", "172.30.0.5"), &line)
        .unwrap();
    known_hosts
        .record(&host_patterns("db", "172.30.0.6"), &line)
        .unwrap();
    let file = path_str(known_hosts.path()).to_string();
    for host in ["web.vm", "172.30.0.5", "db.vm"] {
        let found = run("ssh-keygen", &["-F", host, "-f", &file]).await.unwrap();
        assert!(found.contains(&line), "{host}: {found}");
    }
    known_hosts.remove("web.vm").unwrap();
    // ssh-keygen -F exits 1 when nothing is found.
    let missing =
        banger_exec::run(&Cmd::new("ssh-keygen").args(["-F", "web.vm", "-f", &file])).await;
    assert_eq!(missing.unwrap_err().exit_code(), Some(1));
}

/// `ssh -G` output as (lowercase key, value) lines.
async fn effective_config(args: &[&str]) -> Option<Vec<String>> {
    Some(
        run("ssh", args)
            .await?
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

#[tokio::test]
async fn ssh_accepts_the_arguments_and_the_config_block() {
    require!(Tool("ssh"));
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("my config");
    let target = SshTarget::for_vm(&config_dir, "web", "172.30.0.5");
    // ssh ignores (with a warning) an `-i` file that does not exist.
    std::fs::create_dir_all(target.identity_file.parent().unwrap()).unwrap();
    std::fs::write(&target.identity_file, "").unwrap();
    let mut args = vec!["-G".to_string(), "-F".to_string(), "/dev/null".to_string()];
    args.extend(ssh_args(&target));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = effective_config(&args).await.unwrap();
    let ssh_dir = config_dir.join("ssh");
    for expected in [
        "user root".to_string(),
        "hostname 172.30.0.5".to_string(),
        "hostkeyalias web.vm".to_string(),
        "stricthostkeychecking true".to_string(),
        "identitiesonly yes".to_string(),
        "loglevel ERROR".to_string(),
        format!("identityfile {}", ssh_dir.join("id_ed25519").display()),
        format!(
            "userknownhostsfile {}",
            ssh_dir.join("known_hosts").display()
        ),
    ] {
        assert!(
            config.contains(&expected),
            "missing `{expected}` in {config:#?}"
        );
    }

    let block_file = dir.path().join("banger_config");
    std::fs::write(
        &block_file,
        ssh_config_block(&config_dir, Path::new("/opt/my tools/banger")),
    )
    .unwrap();
    let config = effective_config(&["-G", "-F", path_str(&block_file), "web.vm"])
        .await
        .unwrap();
    for expected in [
        "user root".to_string(),
        "hostname web.vm".to_string(),
        "stricthostkeychecking true".to_string(),
        "identitiesonly yes".to_string(),
        format!("identityfile {}", ssh_dir.join("id_ed25519").display()),
        format!(
            "userknownhostsfile {}",
            ssh_dir.join("known_hosts").display()
        ),
        "proxycommand '/opt/my tools/banger' ssh-proxy %h %p".to_string(),
    ] {
        assert!(
            config.contains(&expected),
            "missing `{expected}` in {config:#?}"
        );
    }
    let other = effective_config(&["-G", "-F", path_str(&block_file), "example.com"])
        .await
        .unwrap();
    assert!(!other.contains(&"hostkeyalias web.vm".to_string()));
    assert!(!other.iter().any(|l| l.starts_with("proxycommand")));
    assert!(
        !other
            .iter()
            .any(|l| l.starts_with("identityfile") && l.contains("my config"))
    );
}
