//! How stored VM records are shown to clients: the record-to-[`VmInfo`] mapping, and
//! resolving a user's reference (name, unique prefix, id prefix) to one record with the
//! protocol's error codes.

use banger_api::ApiError;
use banger_api::types::{VmInfo, WorkspaceInfo};
use banger_model::{RefError, VmRecord, resolve_ref};

/// The protocol view of a stored VM. Process-bound facts (the VMM pid) are not in the
/// record; the VM service fills them in for running VMs.
pub fn vm_info(record: &VmRecord) -> VmInfo {
    VmInfo {
        id: record.id.to_string(),
        name: record.name.to_string(),
        state: record.state,
        image: record.image.clone(),
        kernel: record.kernel.clone(),
        vcpus: record.spec.vcpus,
        memory_mib: record.spec.memory.as_mib(),
        disk_mib: record.spec.disk.as_mib(),
        nat: record.nat,
        policy: record.policy.as_ref().map(|p| p.rule_strings()),
        policy_dropped_packets: None,
        policy_denied_destinations: None,
        driver: record.driver.clone(),
        accelerator: record.runtime.accelerator.clone(),
        address: record.runtime.address.clone(),
        boot_id: record.runtime.boot_id.clone(),
        pid: None,
        workspace: record.workspace.as_ref().map(workspace_info),
        created_at: record.created_at.clone(),
        started_at: record.runtime.started_at.clone(),
        last_error: record.runtime.last_error.clone(),
        dir: record.runtime.dir.clone(),
        forked_from: record.runtime.forked_from.as_ref().map(|origin| {
            banger_api::types::ForkedFrom {
                snapshot: origin.snapshot.clone(),
                source_vm: origin.source_vm.clone(),
                shares_boot_id: origin.restored_boot,
            }
        }),
        started_from: record.runtime.started_from.clone(),
    }
}

/// The protocol view of a VM's workspace.
pub fn workspace_info(w: &banger_model::Workspace) -> WorkspaceInfo {
    WorkspaceInfo {
        source: w.host_path.clone(),
        base_commit: w.head_commit.clone().unwrap_or_default(),
        guest_path: w.guest_path.clone(),
        mode: w.mode.clone(),
        include_untracked: w.include_untracked,
        delivery: w.delivery.as_str().to_string(),
        files: w.files,
        bytes: w.bytes,
        tracked_signature: w.tracked_signature.clone(),
        prepared_at: w.prepared_at.clone(),
    }
}

/// The one VM `query` names, or `not_found` / `bad_request` (ambiguous) naming the
/// candidates.
pub fn resolve<'a>(records: &'a [VmRecord], query: &str) -> Result<&'a VmRecord, ApiError> {
    resolve_ref(query, records, |vm| vm.id.as_str(), |vm| vm.name.as_str()).map_err(|error| {
        match error {
            RefError::NotFound { query } => ApiError::not_found(format!(
                "no VM is named {query:?} or has an id starting with it"
            ))
            .with_hint("`banger vm list` shows the VMs that exist"),
            RefError::Ambiguous { query, candidates } => ApiError::bad_request(format!(
                "{query:?} matches more than one VM: {}",
                candidates.join(", ")
            ))
            .with_hint("use the full name, or a longer prefix of the name or id"),
            too_short @ RefError::PrefixOnly { .. } => ApiError::bad_request(too_short.to_string())
                .with_hint("`banger vm list` shows the full names and ids"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::ErrorCode;
    use banger_model::{VmId, VmName, VmRuntime, VmSpec, VmState};

    fn record(name: &str, id_bits: u64) -> VmRecord {
        VmRecord {
            id: VmId::from_random(id_bits),
            name: VmName::parse(name).unwrap(),
            state: VmState::Stopped,
            image: "tiny".into(),
            kernel: "debian-6.1-cloud".into(),
            spec: VmSpec::default(),
            nat: false,
            policy: None,
            driver: "qemu".into(),
            runtime: VmRuntime::default(),
            workspace: Some(banger_model::Workspace {
                host_path: "/src/repo".into(),
                guest_path: "/root/repo".into(),
                mode: "overlay".into(),
                head_commit: Some("abc123".into()),
                include_untracked: false,
                delivery: banger_model::WorkspaceDelivery::Disk,
                files: 2,
                bytes: 3,
                tracked_signature: "s".into(),
                prepared_at: "2026-01-02T03:04:06Z".into(),
            }),
            created_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn info_carries_the_record() {
        let info = vm_info(&record("web", 0xabc));
        assert_eq!(info.name, "web");
        assert_eq!(info.id, "0000000000000abc");
        assert_eq!((info.vcpus, info.memory_mib, info.disk_mib), (1, 512, 4096));
        assert_eq!(info.workspace.unwrap().base_commit, "abc123");
        assert_eq!(info.pid, None);
    }

    #[test]
    fn references_resolve_to_codes() {
        let records = [
            record("web-1", 0x1),
            record("web-2", 0x2),
            record("db", 0x3),
        ];
        // (query, Ok(name) or Err((code, text the message contains)))
        type Expected = Result<&'static str, (ErrorCode, &'static str)>;
        let cases: &[(&str, Expected)] = &[
            ("web-1", Ok("web-1")),
            ("d", Ok("db")),
            ("web", Err((ErrorCode::BadRequest, "web-1, web-2"))),
            ("ghost", Err((ErrorCode::NotFound, "\"ghost\""))),
        ];
        for (query, expected) in cases {
            match (resolve(&records, query), expected) {
                (Ok(vm), Ok(name)) => assert_eq!(vm.name.as_str(), *name),
                (Err(error), Err((code, needle))) => {
                    assert_eq!(error.code, *code, "{query}");
                    assert!(error.message.contains(needle), "{}", error.message);
                    assert!(error.hint.is_some());
                }
                (got, _) => panic!("{query}: unexpected {got:?}"),
            }
        }
    }
}
