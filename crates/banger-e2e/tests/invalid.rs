//! Invalid VM specs fail cleanly: the CLI rejects what it can check (exit 2), the daemon
//! rejects the rest (exit 1, `bad_request`/`already_exists`), and no failed create leaves
//! a row, a VM directory or a VMM process behind. The daemon's own validation is also
//! exercised directly through the API, bypassing the CLI's.

use banger_api::methods::{VmCreate, VmCreateParams};
use banger_api::{ClientError, ErrorCode};
use banger_e2e::{TestHost, exit_code, require_vm, text};

#[test]
fn invalid_specs_fail_without_leaving_anything() {
    require_vm!();
    let host = TestHost::start().unwrap();
    // (arguments, exit code, a word the error must contain)
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--memory", "64MiB"], 2, "memory"),
        (&["--memory", "lots"], 2, "memory"),
        (&["--vcpu", "0"], 2, "vcpu"),
        // The vCPU ceiling depends on the daemon's host, so only the daemon knows it.
        (&["--vcpu", "99"], 1, "vcpus"),
        (&["--disk", "100MiB"], 2, "disk"),
        (&["--name", "Bad"], 2, "name"),
        (&["--name=-dash"], 2, "name"),
        (&["--image", "no-such-image"], 1, "no-such-image"),
    ];
    for (extra, code, word) in cases {
        let mut args = vec!["vm", "create"];
        if !extra.contains(&"--image") {
            args.extend(["--image", "tiny"]);
        }
        args.extend_from_slice(extra);
        let out = host.banger(&args);
        let stderr = text(&out.stderr);
        assert_eq!(exit_code(&out), Some(*code), "{extra:?}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(word),
            "{extra:?}: the error mentions {word}: {stderr}"
        );
        host.assert_no_vm_left(&format!("after vm create {extra:?}"));
    }
}

#[test]
fn daemon_rejects_invalid_specs_sent_straight_to_it() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let tiny = || VmCreateParams {
        image: Some("tiny".into()),
        ..VmCreateParams::default()
    };
    let cases = [
        (
            "memory 64MiB",
            VmCreateParams {
                memory_mib: Some(64),
                ..tiny()
            },
        ),
        (
            "0 vCPUs",
            VmCreateParams {
                vcpus: Some(0),
                ..tiny()
            },
        ),
        (
            "99 vCPUs",
            VmCreateParams {
                vcpus: Some(99),
                ..tiny()
            },
        ),
        (
            "disk 100MiB",
            VmCreateParams {
                disk_mib: Some(100),
                ..tiny()
            },
        ),
        (
            "name Bad",
            VmCreateParams {
                name: Some("Bad".into()),
                ..tiny()
            },
        ),
        (
            "image ../x",
            VmCreateParams {
                image: Some("../x".into()),
                ..tiny()
            },
        ),
    ];
    for (label, params) in cases {
        let result = host.block_on(async {
            let mut client = host.client().await?;
            client.call::<VmCreate>(&params, |_| {}).await
        });
        match result {
            Err(ClientError::Api(err)) => {
                assert_eq!(err.code, ErrorCode::BadRequest, "{label}: {err}");
            }
            other => panic!("{label}: expected bad_request, got {other:?}"),
        }
        host.assert_no_vm_left(&format!("after API create with {label}"));
    }
}

#[test]
fn duplicate_name_is_refused_and_the_original_is_untouched() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let original = host.create_vm("dup", &["--image", "tiny"]);
    let dirs = host.vm_dirs();
    let pids = host.vmm_pids();

    let out = host.banger(&["vm", "create", "--image", "tiny", "--name", "dup"]);
    assert_eq!(exit_code(&out), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(host.vm_names(), vec!["dup".to_string()]);
    assert_eq!(host.vm_dirs(), dirs, "no new VM directory");
    assert_eq!(host.vmm_pids(), pids, "no new VMM");
    let now = host.vm_show("dup");
    assert_eq!(now["id"], original["id"]);
    assert_eq!(now["state"], "running");
    assert_eq!(host.exec_ok("dup", &["echo", "ok"]), "ok\n");
}
