//! `vm prune -f` deletes the stopped VMs and only them: a running VM keeps its row, its
//! files and its process, and still answers.

use banger_e2e::{TestHost, require_vm};

#[test]
fn prune_deletes_only_stopped_vms() {
    require_vm!();
    let host = TestHost::start().unwrap();
    let keep = host.create_vm("keep", &["--image", "tiny"]);
    let gone = host.create_vm("gone", &["--image", "tiny"]);
    host.banger_ok(&["vm", "stop", "gone"]);
    let keep_pid = host.vm_show("keep")["pid"].as_u64().unwrap() as u32;

    // The deleted VMs' records, the shape `vm delete --json` prints.
    let pruned = host.banger_json(&["vm", "prune", "-f"]);
    let names: Vec<&str> = pruned
        .as_array()
        .unwrap_or_else(|| panic!("an array: {pruned}"))
        .iter()
        .filter_map(|vm| vm["name"].as_str())
        .collect();
    assert_eq!(names, ["gone"], "{pruned}");

    assert_eq!(host.vm_names(), vec!["keep".to_string()]);
    let gone_dir = gone["dir"].as_str().unwrap();
    assert!(
        !std::path::Path::new(gone_dir).exists(),
        "{gone_dir} removed"
    );
    let keep_dir = keep["dir"].as_str().unwrap();
    assert!(std::path::Path::new(keep_dir).is_dir(), "{keep_dir} kept");
    assert_eq!(host.vmm_pids(), vec![keep_pid]);
    let kept = host.vm_show("keep");
    assert_eq!(kept["state"], "running", "{kept}");
    assert_eq!(kept["pid"].as_u64(), Some(u64::from(keep_pid)));
    assert_eq!(
        host.exec_ok("keep", &["echo", "still here"]),
        "still here\n"
    );

    // Nothing left to prune: a second prune deletes nothing.
    let again = host.banger_json(&["vm", "prune", "-f"]);
    assert_eq!(again, serde_json::json!([]), "{again}");
    assert_eq!(host.vm_names(), vec!["keep".to_string()]);
}
