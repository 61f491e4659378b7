//! Creates that cannot succeed fail with the cause and leave nothing: a catalog bundle
//! that is not ext4, a bundle whose checksum does not match, and an ext4 image without
//! an init, whose guest kernel panics (banger passes `panic=-1` and QEMU `-no-reboot`,
//! so the VMM exits and the error carries the serial console's last lines). The bundles
//! are served by a local HTTP server and added through `<config>/catalog.json`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_e2e::{FileServer, HostOptions, TestHost, exit_code, report_timing, require_vm, text};
use sha2::{Digest as _, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that are no filesystem (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// An ext4 image of a tree that has `/etc` and `/bin` but no `/sbin/init`.
fn ext4_without_init() -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tree = dir.path().join("tree");
    for sub in ["etc", "bin", "sbin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(tree.join(sub)).map_err(|e| e.to_string())?;
    }
    std::fs::write(tree.join("etc/hostname"), "noinit\n").map_err(|e| e.to_string())?;
    let image = dir.path().join("noinit.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("64M")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
    if !status.success() {
        return Err(format!("mkfs.ext4 failed ({status})"));
    }
    std::fs::read(&image).map_err(|e| e.to_string())
}

fn bundle(name: &str, url: String, sha256: String) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "description": format!("e2e bundle {name}"),
        "recipe": {"kind": "bundle", "url": url, "sha256": sha256, "init": "busybox"},
        "kernel": "debian-6.1-cloud",
    })
}

/// Runs `vm create --image IMAGE`, expects exit 1, and returns stderr.
fn create_fails(host: &TestHost, image: &str) -> String {
    let started = Instant::now();
    let out = host.banger(&["vm", "create", "--name", "doomed", "--image", image]);
    report_timing(&format!("failed create ({image})"), started.elapsed());
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), Some(1), "create with {image}: {stderr}");
    stderr
}

#[test]
fn broken_bundles_fail_with_the_cause_and_leave_nothing() {
    require_vm!();
    let random = noise(4 << 20);
    let server = FileServer::start(vec![("random.ext4".into(), random.clone())]).unwrap();
    let catalog = serde_json::json!({"images": [
        bundle("random", server.url("random.ext4"), sha256_hex(&random)),
        bundle("mismatch", server.url("random.ext4"), "ab".repeat(32)),
        bundle("missing", server.url("missing.ext4"), "cd".repeat(32)),
    ]});
    let host = TestHost::start_with(HostOptions {
        catalog: Some(catalog),
        ..HostOptions::default()
    })
    .unwrap();

    // (image, words the error must contain)
    let cases: &[(&str, &[&str])] = &[
        ("random", &["not an ext4"]),
        ("mismatch", &["sha256", "abab"]),
        ("missing", &["404"]),
    ];
    for (image, words) in cases {
        let stderr = create_fails(&host, image);
        for word in *words {
            assert!(
                stderr.to_lowercase().contains(&word.to_lowercase()),
                "{image}: the error mentions {word:?}: {stderr}"
            );
        }
        host.assert_no_vm_left(&format!("after the failed create with {image}"));
    }
}

#[test]
fn guest_without_init_fails_promptly_with_the_console_tail() {
    require_vm!();
    let image = match ext4_without_init() {
        Ok(image) => image,
        Err(reason) => {
            banger_e2e::banger_requires::skip!("cannot build the test image: {reason}")
        }
    };
    let server = FileServer::start(vec![("noinit.ext4".into(), image.clone())]).unwrap();
    let catalog = serde_json::json!({"images": [
        bundle("noinit", server.url("noinit.ext4"), sha256_hex(&image)),
    ]});
    // A ready timeout long enough for any boot here but far below the default, so a
    // regression (waiting for an agent that cannot come) fails in minutes, not five.
    let host = TestHost::start_with(HostOptions {
        catalog: Some(catalog),
        env: vec![("BANGER_READY_TIMEOUT".into(), "120".into())],
        ..HostOptions::default()
    })
    .unwrap();

    let started = Instant::now();
    let stderr = create_fails(&host, "noinit");
    let elapsed = started.elapsed();
    eprintln!("the failed create said:\n{stderr}");
    assert!(
        stderr.contains("Kernel panic") || stderr.contains("No working init"),
        "the error shows the console's panic: {stderr}"
    );
    assert!(
        stderr.contains("/sbin/init"),
        "the excerpt keeps the cause printed before the panic: {stderr}"
    );
    assert!(
        stderr.contains("exited"),
        "the error says the VMM exited rather than that the agent timed out: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(100),
        "a panicking guest is noticed when its VMM exits, not at the ready timeout \
         ({}s)",
        elapsed.as_secs()
    );
    host.assert_no_vm_left("after the guest without init");
}
