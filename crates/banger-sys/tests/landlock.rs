//! A child confined with `banger_sys::landlock` (the helper the VMM drivers use) reaches
//! what its ruleset allows and nothing else, and runs with no new privileges.

use std::path::Path;
use std::sync::Arc;

use banger_requires::skip;
use banger_sys::landlock::{Access, Ruleset};

/// Runs `script` under `sh` confined to the system directories plus `rules`; returns
/// (exit code, stdout, stderr).
async fn run_confined(abi: u32, script: &str, rules: &[(&Path, Access)]) -> (i32, String, String) {
    let mut ruleset = Ruleset::with_abi(abi).expect("a ruleset on a kernel with Landlock");
    for system in ["/usr", "/bin", "/lib", "/lib64", "/etc"] {
        if Path::new(system).exists() {
            ruleset
                .allow(Path::new(system), Access::ReadExecute)
                .unwrap();
        }
    }
    ruleset
        .allow(Path::new("/dev/null"), Access::Device)
        .unwrap();
    ruleset.allow(Path::new("/proc"), Access::Read).unwrap();
    for (path, access) in rules {
        ruleset.allow(path, *access).unwrap();
    }
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    banger_sys::landlock::confine(&mut command, Arc::new(ruleset));
    let output = command.output().await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_confined_child_reaches_only_its_own_files() {
    let Some(abi) = banger_sys::landlock::abi_version() else {
        skip!("this kernel has no Landlock (not built or not in lsm=)");
    };
    let own = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let readonly = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("mine"), "mine\n").unwrap();
    std::fs::write(other.path().join("secret"), "secret\n").unwrap();
    std::fs::write(readonly.path().join("kernel"), "kernel\n").unwrap();
    let script = format!(
        "cat {own}/mine && echo written > {own}/new && cat {own}/new && cat {ro}/kernel \
         && if echo x >> {ro}/kernel; then echo WROTE-READONLY; fi \
         && if cat {other}/secret; then echo READ-OTHER; fi \
         && grep NoNewPrivs /proc/self/status",
        own = own.path().display(),
        ro = readonly.path().display(),
        other = other.path().display(),
    );
    let (code, stdout, stderr) = run_confined(
        abi,
        &script,
        &[
            (own.path(), Access::Own),
            (&readonly.path().join("kernel"), Access::Read),
        ],
    )
    .await;
    assert_eq!(code, 0, "ABI {abi}; stdout {stdout:?}; stderr {stderr:?}");
    assert_eq!(
        stdout, "mine\nwritten\nkernel\nNoNewPrivs:\t1\n",
        "stderr {stderr:?}"
    );
    assert!(!stdout.contains("READ-OTHER") && !stdout.contains("WROTE-READONLY"));
    assert_eq!(
        stderr.matches("Permission denied").count(),
        2,
        "both refusals come from the kernel: {stderr:?}"
    );
    // The files outside are untouched, and the unconfined parent still reads them.
    assert_eq!(
        std::fs::read_to_string(other.path().join("secret")).unwrap(),
        "secret\n"
    );
    assert_eq!(
        std::fs::read_to_string(readonly.path().join("kernel")).unwrap(),
        "kernel\n"
    );
}

#[tokio::test]
async fn older_abis_still_confine_files() {
    let Some(kernel_abi) = banger_sys::landlock::abi_version() else {
        skip!("this kernel has no Landlock (not built or not in lsm=)");
    };
    let own = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("secret"), "secret\n").unwrap();
    let script = format!(
        "echo ok > {own}/file && cat {own}/file && if cat {other}/secret; then echo READ-OTHER; fi",
        own = own.path().display(),
        other = other.path().display(),
    );
    // ABI 1 (Linux 5.13) and 3 (6.2, truncation): what older kernels enforce.
    for abi in [1, 3].into_iter().filter(|&abi| abi <= kernel_abi) {
        let (code, stdout, stderr) = run_confined(abi, &script, &[(own.path(), Access::Own)]).await;
        assert_eq!(code, 0, "ABI {abi}: {stderr:?}");
        assert_eq!(stdout, "ok\n", "ABI {abi}: {stderr:?}");
        assert!(
            stderr.contains("Permission denied"),
            "ABI {abi}: {stderr:?}"
        );
    }
}

#[tokio::test]
async fn an_unconfined_child_reads_the_same_file() {
    // The control: the refusal above is Landlock's, not the file's mode.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("secret"), "secret\n").unwrap();
    let output = tokio::process::Command::new("/bin/cat")
        .arg(other.path().join("secret"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "secret\n");
}
