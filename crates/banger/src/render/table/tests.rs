//! `vm list` and friends rendered from fixture records, as text and as JSON.

use banger_api::types::{VmState, WorkspaceInfo};

use super::*;

fn now() -> jiff::Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn fixture_vms() -> Vec<VmInfo> {
    vec![
        VmInfo {
            id: "0f3c2a9e4b7d".into(),
            name: "web".into(),
            state: VmState::Running,
            image: "debian-bookworm".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 2,
            memory_mib: 2048,
            disk_mib: 8192,
            nat: true,
            policy: None,
            policy_dropped_packets: None,
            policy_denied_destinations: None,
            driver: "qemu".into(),
            accelerator: Some("tcg".into()),
            address: Some("10.77.0.2".into()),
            boot_id: Some("6f1d9c1e-1a7b-4b5e-9b1c-2f9e0c7d1a11".into()),
            pid: Some(4242),
            workspace: Some(WorkspaceInfo {
                source: "/home/u/src/app".into(),
                base_commit: "3b18e512dba79e4c8300dd08aeb37f8e728b8dad".into(),
                guest_path: "/root/app".into(),
                ..WorkspaceInfo::default()
            }),
            created_at: "2026-03-01T11:55:00Z".into(),
            started_at: Some("2026-03-01T11:55:04Z".into()),
            last_error: None,
            dir: Some("/home/u/.local/state/banger/vms/0f3c2a9e4b7d".into()),
            forked_from: None,
            started_from: None,
        },
        VmInfo {
            id: "9a8b7c6d5e4f".into(),
            name: "build-cache-01".into(),
            state: VmState::Stopped,
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            vcpus: 1,
            memory_mib: 512,
            disk_mib: 1536,
            nat: false,
            policy: None,
            policy_dropped_packets: None,
            policy_denied_destinations: None,
            driver: "firecracker".into(),
            accelerator: None,
            address: None,
            boot_id: None,
            pid: None,
            workspace: None,
            created_at: "2026-02-27T08:00:00Z".into(),
            started_at: None,
            last_error: Some("guest agent did not answer within 30s".into()),
            dir: None,
            forked_from: None,
            started_from: None,
        },
    ]
}

#[test]
fn vm_list_table() {
    insta::assert_snapshot!(vms(&fixture_vms(), now()));
}

#[test]
fn vm_list_json() {
    insta::assert_json_snapshot!(fixture_vms());
}

#[test]
fn vm_show_detail() {
    let all = fixture_vms()
        .iter()
        .map(|vm| crate::render::detail::vm(vm, now()))
        .collect::<Vec<_>>()
        .join("---\n");
    insta::assert_snapshot!(all);
}

#[test]
fn columns_stay_the_same_without_rows() {
    assert_eq!(
        vms(&[], now()),
        "NAME  STATE  IMAGE  VCPU  MEMORY  DISK  ADDRESS  WORKSPACE  CREATED\n"
    );
}

#[test]
fn catalog_and_ports_tables() {
    let catalog = catalog(&[
        CatalogEntry {
            name: "debian-bookworm".into(),
            description: "Debian 12 (bookworm) with systemd, ssh and git".into(),
            kind: "build".into(),
            pulled: true,
            default: true,
        },
        CatalogEntry {
            name: "tiny".into(),
            description: "busybox + dropbear + git, boots in ~3 s".into(),
            kind: "build".into(),
            pulled: false,
            default: false,
        },
    ]);
    let ports = ports(&[PortInfo {
        proto: "tcp".into(),
        port: 8080,
        bind: "0.0.0.0".into(),
        endpoint: "web.vm:8080".into(),
        address_endpoint: Some("172.30.0.2:8080".into()),
        process: Some("python3".into()),
    }]);
    insta::assert_snapshot!(format!("{catalog}\n{ports}"));
}
