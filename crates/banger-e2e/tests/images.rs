//! Images on real guests. The `tiny` root filesystem is pushed to a real registry
//! (Debian's `docker-registry` on a random loopback port) as a two-layer OCI image with
//! whiteouts, an opaque directory, owners and a setuid bit; `banger image import` makes
//! it an image, a VM boots it (banger's init, no systemd) and `vm exec` checks inside the
//! guest what the layers said. The same run checks that a VM's image cannot be deleted,
//! that the import is recorded once, and that a stopped VM's disk can be promoted. A
//! second test kills the daemon (SIGKILL) in the middle of an import: after a restart
//! there is no image and no staging directory, and the import then succeeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_api::Event;
use banger_api::methods::{ImageImport, ImageImportParams};
use banger_e2e::registry::{LayerBuilder, Registry, image_config};
use banger_e2e::{TestHost, exit_code, require_vm, target_dir, text};

/// The tiny root filesystem as a tar, exported once per run into the shared cache (one
/// file, replaced by rename, so runs in parallel never see a partial one).
fn tiny_tar() -> PathBuf {
    static TAR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TAR.get_or_init(|| {
        let cache = target_dir().join("e2e-cache");
        let out = cache.join("tiny-rootfs.tar");
        let partial = cache.join(format!(".tiny-rootfs.tar.{}", std::process::id()));
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let service = banger_image::ImageService::new(
            cache.clone(),
            cache.clone(),
            Arc::new(banger_exec::SystemRunner),
        );
        runtime
            .block_on(service.export_tiny_tar(&partial, &banger_model::progress::NoProgress))
            .expect("the tiny rootfs tar");
        std::fs::rename(&partial, &out).expect("publish the tiny rootfs tar");
        out
    })
    .clone()
}

/// Pushes tiny as `tiny/layers:v1`: the whole tree plus files the top layer changes.
fn push_tiny(registry: &Registry, tar: &Path) {
    let base = LayerBuilder::new()
        .extend_from_tar(tar, &|_| false)
        .expect("copy the tiny tree")
        .file("etc/motd-old", 0o644, b"whited out by the top layer\n")
        .dir("opt/old", 0o755)
        .file("opt/old/hidden", 0o644, b"hidden by the opaque marker\n")
        .gzip();
    let top = LayerBuilder::new()
        .file("etc/.wh.motd-old", 0o644, b"")
        .file("opt/old/.wh..wh..opq", 0o644, b"")
        .file("opt/old/new", 0o644, b"from the top layer\n")
        .owned_file("home/u/notes", 0o600, (1000, 1000), b"mine\n")
        .file("usr/local/bin/setuid-tool", 0o4755, b"#!/bin/sh\necho hi\n")
        .zstd();
    let config = image_config(&["GREETING=hello from the image config"]);
    registry
        .push("tiny/layers", "v1", &config, &[base, top])
        .unwrap_or_else(|e| panic!("push: {e}\n{}", registry.log()));
}

#[test]
fn an_imported_oci_image_boots_and_answers_exec() {
    require_vm!(Tool(banger_e2e::registry::REGISTRY_PROGRAM));
    let registry = Registry::start().unwrap();
    push_tiny(&registry, &tiny_tar());
    let host = TestHost::start().unwrap();
    let reference = format!("{}/tiny/layers:v1", registry.host());
    let image = host.banger_json(&["image", "import", &reference, "--name", "imported"]);
    assert_eq!(image["source"], "oci", "{image}");
    assert_eq!(image["updated"], true, "{image}");
    assert_eq!(image["init"], "busybox", "{image}");
    assert!(
        image["origin"].as_str().unwrap().contains("@sha256:"),
        "{image}"
    );

    // Importing the same image again changes nothing, and says so.
    let again = host.banger(&["image", "import", &reference, "--name", "imported"]);
    assert_eq!(exit_code(&again), Some(0), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("already current"),
        "{}",
        text(&again.stderr)
    );

    host.create_vm("imp", &["--image", "imported"]);
    // PID 1 is banger's init, run by banger's static busybox.
    let init = host.exec_ok("imp", &["cat", "/proc/1/cmdline"]);
    assert!(
        init.starts_with("/usr/lib/banger/busybox\0sh\0/sbin/init"),
        "{init:?}"
    );
    // What the layers said.
    let gone = host.exec("imp", &["ls", "/etc/motd-old"]);
    assert_ne!(exit_code(&gone), Some(0), "the whiteout removed it");
    assert_eq!(host.exec_ok("imp", &["ls", "/opt/old"]).trim(), "new");
    assert_eq!(
        host.exec_ok("imp", &["stat", "-c", "%u:%g %a", "/home/u/notes"])
            .trim(),
        "1000:1000 600"
    );
    assert_eq!(
        host.exec_ok("imp", &["stat", "-c", "%a", "/usr/local/bin/setuid-tool"])
            .trim(),
        "4755"
    );
    let env = host.exec_ok(
        "imp",
        &["sh", "-c", ". /etc/banger/image.env && echo \"$GREETING\""],
    );
    assert_eq!(env.trim(), "hello from the image config");
    // The guest wrote to its own disk, not the image's.
    host.exec_ok("imp", &["sh", "-c", "echo changed > /opt/old/new && sync"]);

    // The image is in use: deleting it is refused, naming the VM.
    let refused = host.banger(&["image", "delete", "imported"]);
    assert_ne!(exit_code(&refused), Some(0));
    assert!(
        text(&refused.stderr).contains("imp"),
        "{}",
        text(&refused.stderr)
    );
    let shown = host.banger_json(&["image", "show", "imported"]);
    assert_eq!(shown["used_by"], serde_json::json!(["imp"]), "{shown}");

    // A stopped VM's disk becomes an image carrying the guest's change.
    host.banger_ok(&["vm", "stop", "imp"]);
    let promoted = host.banger_json(&["image", "promote", "imp", "imp-golden"]);
    assert_eq!(promoted["source"], "promoted", "{promoted}");
    let path = promoted["path"].as_str().unwrap().to_string();
    let debugfs = host
        .block_on(banger_exec::run(
            &banger_exec::Cmd::new("debugfs")
                .args(["-R", "cat /opt/old/new"])
                .arg(&path),
        ))
        .unwrap();
    assert_eq!(debugfs.stdout_text().trim(), "changed");
    host.banger_ok(&["vm", "delete", "imp"]);
    host.banger_ok(&["image", "delete", "imp-golden"]);
    host.banger_ok(&["image", "delete", "imported"]);
    assert!(
        !Path::new(&path).exists(),
        "the promoted image's file went with it"
    );
}

#[test]
fn a_daemon_killed_mid_import_leaves_no_half_image() {
    require_vm!(Tool(banger_e2e::registry::REGISTRY_PROGRAM));
    let registry = Registry::start().unwrap();
    push_tiny(&registry, &tiny_tar());
    let mut host = TestHost::start().unwrap();
    let reference = format!("{}/tiny/layers:v1", registry.host());
    let params = ImageImportParams {
        reference: reference.clone(),
        name: Some("killed".into()),
        force: false,
    };
    // SIGKILL as soon as the flattened tree starts streaming into mkfs.ext4.
    let pid = host.daemon_pid().expect("the daemon runs");
    let killed = host.block_on(async {
        let mut client = host.client().await.expect("a client");
        let mut killed = false;
        let call = client.call::<ImageImport>(&params, |event| {
            if let Event::Stage { stage, .. } = &event
                && stage == "mkfs.ext4"
                && !killed
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                killed = true;
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(600), call).await;
        killed
    });
    assert!(killed, "the import reached mkfs.ext4");
    host.kill_daemon(9).ok();
    let images = host.state_dir().join("images");
    let staging_left = || -> Vec<String> {
        std::fs::read_dir(&images)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".staging-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !staging_left().is_empty(),
        "the kill left a staging directory"
    );

    host.start_daemon().unwrap();
    // The daemon serves its first request after its startup housekeeping.
    let list = host.banger_json(&["image", "list"]);
    assert_eq!(
        list,
        serde_json::json!([]),
        "no half-published image: {list}"
    );
    assert!(
        staging_left().is_empty(),
        "restart cleaned {:?}",
        staging_left()
    );
    let published: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ext4"))
        .collect();
    assert!(published.is_empty(), "no image file: {published:?}");

    // The layers the first attempt cached are reused; the import now completes.
    let image = host.banger_json(&["image", "import", &reference, "--name", "killed"]);
    assert_eq!(image["name"], "killed");
    assert!(Path::new(image["path"].as_str().unwrap()).exists());
}
