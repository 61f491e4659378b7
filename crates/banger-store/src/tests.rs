//! Store tests: migrations (fresh, upgrade from version 1, too new, interrupted,
//! concurrent), connection settings, and round trips of every table.

use std::path::Path;

use banger_model::{ByteSize, VmId, VmName, VmRecord, VmRuntime, VmSpec, VmState};
use rusqlite::Connection;

use super::*;

fn vm(id: u64, name: &str, state: VmState) -> VmRecord {
    VmRecord {
        id: VmId::from_random(id),
        name: VmName::parse(name).unwrap(),
        state,
        image: "debian-bookworm".into(),
        kernel: "debian-6.1-cloud".into(),
        spec: VmSpec::default(),
        nat: false,
        policy: None,
        driver: "qemu".into(),
        runtime: VmRuntime::default(),
        workspace: None,
        created_at: format!("2026-01-01T00:00:{id:02}Z"),
    }
}

fn image(name: &str) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        source: "catalog".into(),
        digest: "sha256:00ff".into(),
        path: format!("/state/images/{name}.ext4"),
        size_bytes: 3 << 30,
        kernel: "debian-6.1-cloud".into(),
        init: "/sbin/init".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        origin: String::new(),
        layers: Vec::new(),
    }
}

#[test]
fn images_keep_origin_and_layers_and_insert_refuses_a_taken_name() {
    let store = Store::open_in_memory().unwrap();
    let mut imported = image("app");
    imported.source = "oci".into();
    imported.origin = "localhost:5000/app:v1@sha256:aa".into();
    imported.layers = vec!["sha256:11".into(), "sha256:22".into()];
    assert!(store.insert_image(&imported).unwrap());
    assert_eq!(store.get_image("app").unwrap(), Some(imported.clone()));
    let mut other = image("app");
    other.digest = "sha256:other".into();
    assert!(!store.insert_image(&other).unwrap());
    assert_eq!(
        store.get_image("app").unwrap().unwrap().digest,
        imported.digest
    );
}

fn kernel(name: &str) -> KernelRecord {
    KernelRecord {
        name: name.into(),
        version: "6.1.0-28-cloud-amd64".into(),
        vmlinux: format!("/cache/kernels/{name}/vmlinux"),
        initramfs: format!("/cache/kernels/{name}/initrd.img"),
        created_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn operation(id: &str, started_at: &str) -> OperationRecord {
    OperationRecord {
        id: id.into(),
        kind: "vm.create".into(),
        target: "web".into(),
        state: OperationState::Running,
        stages: vec![],
        error: None,
        started_at: started_at.into(),
        finished_at: None,
    }
}

fn pragma<T: rusqlite::types::FromSql>(conn: &Connection, name: &str) -> T {
    conn.pragma_query_value(None, name, |row| row.get(0))
        .unwrap()
}

#[test]
fn fresh_file_is_migrated_with_wal_foreign_keys_and_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    let store = Store::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(store.path(), Some(path.as_path()));
    assert_eq!(store.journal_mode().unwrap(), "wal");
    assert_eq!(pragma::<String>(&store.conn, "journal_mode"), "wal");
    assert_eq!(pragma::<i64>(&store.conn, "foreign_keys"), 1);
    assert_eq!(pragma::<i64>(&store.conn, "busy_timeout"), 5000);
    // synchronous=NORMAL is 1.
    assert_eq!(pragma::<i64>(&store.conn, "synchronous"), 1);

    // WAL is persistent: a plain connection sees it too.
    drop(store);
    let plain = Connection::open(&path).unwrap();
    assert_eq!(pragma::<String>(&plain, "journal_mode"), "wal");
}

#[test]
fn in_memory_is_migrated_with_foreign_keys() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(store.path(), None);
    assert_eq!(store.journal_mode().unwrap(), "memory");
    assert_eq!(pragma::<i64>(&store.conn, "foreign_keys"), 1);
}

#[test]
fn open_does_not_create_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("banger.db");
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Sqlite { .. }), "{error:?}");
    assert!(error.to_string().contains("opening"), "{error}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn reopening_keeps_data_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    Store::open(&path)
        .unwrap()
        .insert_vm(&vm(1, "web", VmState::Stopped))
        .unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(store.list_vms().unwrap().len(), 1);
}

/// Builds a database at schema version 1 the way an old banger would have left it.
fn create_version_1(path: &Path) {
    let mut conn = Connection::open(path).unwrap();
    migrate::apply(&mut conn, path, &migrate::MIGRATIONS[..1]).unwrap();
    assert_eq!(pragma::<u32>(&conn, "user_version"), 1);
    conn.execute_batch(
        r#"
        INSERT INTO vms (id, name, state, image, kernel, vcpus, memory_bytes, disk_bytes, nat,
                         driver, runtime, workspace, created_at)
        VALUES ('00000000000000aa', 'old-web', 'stopped', 'tiny', 'debian-6.1-cloud', 2,
                1073741824, 4294967296, 1, 'qemu', '{"address":"172.30.0.5"}',
                '{"source":"/src/repo"}', '2025-06-01T10:00:00Z');
        INSERT INTO images (name, source, digest, path, size_bytes, kernel, created_at)
        VALUES ('tiny', 'catalog', 'sha256:abcd', '/state/images/tiny.ext4', 104857600,
                'debian-6.1-cloud', '2025-06-01T09:00:00Z');
        INSERT INTO kernels (name, version, vmlinux, initramfs, created_at)
        VALUES ('debian-6.1-cloud', '6.1.0-28-cloud-amd64', '/k/vmlinux', '/k/initrd',
                '2025-06-01T08:00:00Z');
        "#,
    )
    .unwrap();
    // The version-1 schema has no operations table yet.
    assert!(conn.prepare("SELECT * FROM operations").is_err());
}

#[test]
fn upgrade_from_version_1_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    create_version_1(&path);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);

    let old = store.find_vm_by_name("old-web").unwrap().unwrap();
    assert_eq!(old.id, VmId::parse("00000000000000aa").unwrap());
    assert_eq!(old.state, VmState::Stopped);
    assert_eq!(old.image, "tiny");
    assert_eq!(
        old.spec,
        VmSpec {
            vcpus: 2,
            memory: ByteSize::from_gib(1),
            disk: ByteSize::from_gib(4),
        }
    );
    assert!(old.nat);
    assert_eq!(old.runtime.address.as_deref(), Some("172.30.0.5"));
    // Migration 5 moved workspaces to their own table; the old JSON column (never
    // written by a release) is cleared.
    assert_eq!(old.workspace, None);

    // Migration 2 added `init` with a default for existing rows.
    let tiny = store.get_image("tiny").unwrap().unwrap();
    assert_eq!(tiny.init, "/sbin/init");
    assert_eq!(tiny.size_bytes, 100 << 20);
    assert_eq!(
        store
            .get_kernel("debian-6.1-cloud")
            .unwrap()
            .unwrap()
            .version,
        "6.1.0-28-cloud-amd64"
    );
    // ...and the operations table.
    store
        .insert_operation(&operation("op1", "2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(store.list_operations(10).unwrap().len(), 1);
}

#[test]
fn too_new_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
    }
    let error = Store::open(&path).unwrap_err();
    match &error {
        StoreError::TooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, LATEST_VERSION + 1);
            assert_eq!(*supported, LATEST_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("created by a newer banger"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");

    // Nothing was written: still the rollback journal and the newer version.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma::<String>(&conn, "journal_mode"), "delete");
    assert_eq!(pragma::<u32>(&conn, "user_version"), LATEST_VERSION + 1);
}

#[test]
fn a_failing_migration_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    let conn = Connection::open(&path).unwrap();
    let broken = [
        migrate::MIGRATIONS[0],
        "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;",
    ];
    let error = Store::configure(conn, Some(path.clone()), &broken).unwrap_err();
    assert!(
        error.to_string().contains("applying schema migration 2"),
        "{error}"
    );
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma::<u32>(&conn, "user_version"), 1);
    // The statement before the bad one was rolled back with it.
    assert!(conn.prepare("SELECT * FROM half").is_err());
}

#[test]
fn concurrent_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).map(|s| s.schema_version()))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap().unwrap(), LATEST_VERSION);
    }
}

#[test]
fn vm_round_trip() {
    let store = Store::open_in_memory().unwrap();
    let mut web = vm(1, "web", VmState::Creating);
    web.nat = true;
    web.spec = VmSpec {
        vcpus: 2,
        memory: ByteSize::from_mib(1536),
        disk: ByteSize::from_gib(8),
    };
    web.workspace = Some(workspace("/src"));
    store.insert_vm(&web).unwrap();
    store.insert_vm(&vm(2, "db", VmState::Stopped)).unwrap();

    assert_eq!(store.get_vm(&web.id).unwrap(), Some(web.clone()));
    assert_eq!(store.find_vm_by_name("web").unwrap(), Some(web.clone()));
    assert_eq!(store.find_vm_by_name("WEB").unwrap(), None);
    assert_eq!(store.get_vm(&VmId::from_random(99)).unwrap(), None);
    let names: Vec<String> = store
        .list_vms()
        .unwrap()
        .into_iter()
        .map(|v| v.name.to_string())
        .collect();
    assert_eq!(names, ["web", "db"], "oldest first");

    web.state = VmState::Running;
    web.runtime = VmRuntime {
        accelerator: Some("tcg".into()),
        address: Some("172.30.0.2".into()),
        boot_id: Some("b00t".into()),
        started_at: Some("2026-01-01T00:01:00Z".into()),
        last_error: None,
        dir: Some("/state/vms/web".into()),
        forked_from: Some(banger_model::ForkOrigin {
            snapshot: "base".into(),
            snapshot_id: "5a5a5a5a5a5a5a5a".into(),
            source_vm: "src".into(),
            restored_boot: true,
        }),
        started_from: Some("template".into()),
        template_builder: true,
    };
    web.workspace = None;
    store.update_vm(&web).unwrap();
    assert_eq!(store.get_vm(&web.id).unwrap(), Some(web.clone()));

    // A policy round-trips (migration 0007), deny-all included, and can be removed.
    for policy in [
        Some(banger_model::NetPolicy::parse(&["*.example.com:443", "10.0.0.0/8"]).unwrap()),
        Some(banger_model::NetPolicy::deny_all()),
        None,
    ] {
        web.policy = policy;
        store.update_vm(&web).unwrap();
        assert_eq!(store.get_vm(&web.id).unwrap(), Some(web.clone()));
    }

    assert!(store.delete_vm(&web.id).unwrap());
    assert!(!store.delete_vm(&web.id).unwrap());
    assert_eq!(store.get_vm(&web.id).unwrap(), None);
    assert_eq!(store.list_vms().unwrap().len(), 1);
}

#[test]
fn vm_uniqueness_and_missing_rows() {
    let store = Store::open_in_memory().unwrap();
    store.insert_vm(&vm(1, "web", VmState::Stopped)).unwrap();
    store.insert_vm(&vm(2, "db", VmState::Stopped)).unwrap();

    let cases: Vec<(VmRecord, &str, &str)> = vec![
        (vm(3, "web", VmState::Stopped), "VM", "web"),
        (
            vm(1, "other", VmState::Stopped),
            "VM id",
            "0000000000000001",
        ),
    ];
    for (record, what, name) in cases {
        match store.insert_vm(&record).unwrap_err() {
            StoreError::AlreadyExists { what: w, name: n } => {
                assert_eq!((w, n.as_str()), (what, name));
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(
        store
            .insert_vm(&vm(3, "web", VmState::Stopped))
            .unwrap_err()
            .to_string(),
        "VM \"web\" already exists"
    );

    // Renaming db onto web clashes; updating a VM that is not there is NotFound.
    let renamed = VmRecord {
        name: VmName::parse("web").unwrap(),
        ..vm(2, "db", VmState::Stopped)
    };
    assert!(matches!(
        store.update_vm(&renamed).unwrap_err(),
        StoreError::AlreadyExists { what: "VM", .. }
    ));
    assert!(matches!(
        store
            .update_vm(&vm(7, "ghost", VmState::Stopped))
            .unwrap_err(),
        StoreError::NotFound { what: "VM", .. }
    ));
    assert_eq!(store.list_vms().unwrap().len(), 2);
}

#[test]
fn counts_by_state_in_lifecycle_order() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.count_vms_by_state().unwrap(), vec![]);
    let states = [
        VmState::Stopped,
        VmState::Running,
        VmState::Error,
        VmState::Running,
        VmState::Stopped,
        VmState::Stopped,
    ];
    for (index, state) in states.into_iter().enumerate() {
        store
            .insert_vm(&vm(index as u64, &format!("vm-{index}"), state))
            .unwrap();
    }
    assert_eq!(
        store.count_vms_by_state().unwrap(),
        vec![
            (VmState::Running, 2),
            (VmState::Stopped, 3),
            (VmState::Error, 1)
        ]
    );
}

#[test]
fn undecodable_rows_are_corrupt_not_panics() {
    let cases = [
        ("runtime = 'not json'", "runtime JSON"),
        ("state = 'paused'", "unknown VM state"),
        ("name = 'Bad Name'", "VM name"),
        ("id = 'xyz'", "VM id"),
        ("memory_bytes = -1", "memory_bytes is negative"),
        ("vcpus = -2", "vcpus is out of range"),
    ];
    for (assignment, expected) in cases {
        let store = Store::open_in_memory().unwrap();
        store.insert_vm(&vm(1, "web", VmState::Stopped)).unwrap();
        store
            .conn
            .execute_batch(&format!("UPDATE vms SET {assignment}"))
            .unwrap();
        let error = store.list_vms().unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
        assert!(
            error.to_string().contains(expected),
            "{assignment}: {error}"
        );
    }
}

#[test]
fn out_of_range_sizes_are_refused() {
    let store = Store::open_in_memory().unwrap();
    let mut huge = vm(1, "web", VmState::Stopped);
    huge.spec.disk = ByteSize(u64::MAX);
    assert!(matches!(
        store.insert_vm(&huge).unwrap_err(),
        StoreError::OutOfRange { field: "disk", .. }
    ));
    let mut big_image = image("big");
    big_image.size_bytes = u64::MAX;
    assert!(matches!(
        store.upsert_image(&big_image).unwrap_err(),
        StoreError::OutOfRange { .. }
    ));
}

#[test]
fn image_round_trip() {
    let store = Store::open_in_memory().unwrap();
    store.upsert_image(&image("tiny")).unwrap();
    store.upsert_image(&image("debian-bookworm")).unwrap();
    assert_eq!(store.get_image("tiny").unwrap(), Some(image("tiny")));
    assert_eq!(store.get_image("nope").unwrap(), None);

    // Upsert replaces in place.
    let mut rebuilt = image("tiny");
    rebuilt.digest = "sha256:beef".into();
    rebuilt.init = "/bin/busybox-init".into();
    store.upsert_image(&rebuilt).unwrap();
    assert_eq!(store.get_image("tiny").unwrap(), Some(rebuilt));

    let names: Vec<String> = store
        .list_images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["debian-bookworm", "tiny"]);
    assert!(store.delete_image("tiny").unwrap());
    assert!(!store.delete_image("tiny").unwrap());
    assert_eq!(store.list_images().unwrap().len(), 1);
}

#[test]
fn kernel_round_trip() {
    let store = Store::open_in_memory().unwrap();
    store.upsert_kernel(&kernel("debian-6.1-cloud")).unwrap();
    store.upsert_kernel(&kernel("custom")).unwrap();
    assert_eq!(store.get_kernel("custom").unwrap(), Some(kernel("custom")));
    assert_eq!(store.get_kernel("nope").unwrap(), None);
    let mut newer = kernel("custom");
    newer.version = "6.1.0-30-cloud-amd64".into();
    store.upsert_kernel(&newer).unwrap();
    assert_eq!(store.get_kernel("custom").unwrap(), Some(newer));
    let names: Vec<String> = store
        .list_kernels()
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["custom", "debian-6.1-cloud"]);
    assert!(store.delete_kernel("custom").unwrap());
    assert!(!store.delete_kernel("custom").unwrap());
}

#[test]
fn operation_round_trip() {
    let store = Store::open_in_memory().unwrap();
    let mut op = operation("op-1", "2026-01-01T00:00:01Z");
    store.insert_operation(&op).unwrap();
    assert!(matches!(
        store.insert_operation(&op).unwrap_err(),
        StoreError::AlreadyExists {
            what: "operation",
            ..
        }
    ));
    assert_eq!(store.get_operation("op-1").unwrap(), Some(op.clone()));
    assert_eq!(store.get_operation("op-x").unwrap(), None);

    op.stages = vec![
        StageRecord {
            name: "resolve image".into(),
            started_ms: 0,
            finished_ms: Some(12),
            detail: Some("debian-bookworm".into()),
        },
        StageRecord {
            name: "boot".into(),
            started_ms: 12,
            finished_ms: None,
            detail: None,
        },
    ];
    op.state = OperationState::Failed;
    op.error = Some("guest did not come up".into());
    op.finished_at = Some("2026-01-01T00:01:00Z".into());
    store.update_operation(&op).unwrap();
    assert_eq!(store.get_operation("op-1").unwrap(), Some(op));

    assert!(matches!(
        store
            .update_operation(&operation("ghost", "2026-01-01T00:00:00Z"))
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[test]
fn operations_listing_failing_and_pruning() {
    let store = Store::open_in_memory().unwrap();
    for (id, at) in [
        ("a", "2026-01-01T00:00:01Z"),
        ("b", "2026-01-01T00:00:03Z"),
        ("c", "2026-01-01T00:00:02Z"),
    ] {
        store.insert_operation(&operation(id, at)).unwrap();
    }
    let ids = |ops: Vec<OperationRecord>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_operations(10).unwrap()), ["b", "c", "a"]);
    assert_eq!(ids(store.list_operations(2).unwrap()), ["b", "c"]);

    let mut done = store.get_operation("c").unwrap().unwrap();
    done.state = OperationState::Succeeded;
    store.update_operation(&done).unwrap();
    assert_eq!(
        store
            .fail_running_operations("2026-01-02T00:00:00Z", "daemon restarted")
            .unwrap(),
        2
    );
    let a = store.get_operation("a").unwrap().unwrap();
    assert_eq!(a.state, OperationState::Failed);
    assert_eq!(a.error.as_deref(), Some("daemon restarted"));
    assert_eq!(a.finished_at.as_deref(), Some("2026-01-02T00:00:00Z"));
    assert_eq!(
        store.get_operation("c").unwrap().unwrap().state,
        OperationState::Succeeded
    );

    assert_eq!(store.prune_operations(1).unwrap(), 2);
    assert_eq!(ids(store.list_operations(10).unwrap()), ["b"]);
}

#[test]
fn corrupt_operation_rows() {
    let store = Store::open_in_memory().unwrap();
    store
        .insert_operation(&operation("a", "2026-01-01T00:00:00Z"))
        .unwrap();
    for (assignment, expected) in [
        ("stages = 'nope'", "stages JSON"),
        ("state = 'paused'", "unknown state"),
    ] {
        store
            .conn
            .execute_batch(&format!("UPDATE operations SET {assignment}"))
            .unwrap();
        let error = store.get_operation("a").unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        store
            .conn
            .execute_batch("UPDATE operations SET stages = '[]', state = 'running'")
            .unwrap();
    }
}

/// A database that cannot grow (SQLite's own page cap, standing in for a full disk)
/// fails writes with an error that says so, and a delete still works once space is back.
#[test]
fn a_full_database_is_reported_as_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("banger.db")).unwrap();
    store.insert_vm(&vm(1, "web", VmState::Running)).unwrap();
    let pages: u32 = pragma(&store.conn, "page_count");
    store
        .conn
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let mut big = vm(2, "big", VmState::Stopped);
    big.runtime.last_error = Some("x".repeat(64 * 1024));
    let error = store.insert_vm(&big).unwrap_err();
    assert!(error.is_disk_full(), "{error:?}");
    let other = StoreError::NotFound {
        what: "VM",
        name: "web".into(),
    };
    assert!(!other.is_disk_full());
    store
        .conn
        .pragma_update(None, "max_page_count", 1_000_000)
        .unwrap();
    store.insert_vm(&big).unwrap();
}

fn workspace(host_path: &str) -> banger_model::Workspace {
    banger_model::Workspace {
        host_path: host_path.into(),
        guest_path: "/root/repo".into(),
        mode: "overlay".into(),
        head_commit: Some("a".repeat(40)),
        include_untracked: true,
        delivery: banger_model::WorkspaceDelivery::Disk,
        files: 12,
        bytes: 3456,
        tracked_signature: "ab12".into(),
        prepared_at: "2026-01-01T00:02:00Z".into(),
    }
}

#[test]
fn workspaces_survive_a_reopen_and_go_with_their_vm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    let mut web = vm(1, "web", VmState::Running);
    let db = vm(2, "db", VmState::Stopped);
    {
        let store = Store::open(&path).unwrap();
        web.workspace = Some(workspace("/src/web"));
        store.insert_vm(&web).unwrap();
        store.insert_vm(&db).unwrap();
        let mut changed = workspace("/src/web");
        changed.head_commit = None;
        changed.delivery = banger_model::WorkspaceDelivery::Stream;
        web.workspace = Some(changed);
        store.update_vm(&web).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get_vm(&web.id).unwrap(), Some(web.clone()));
    let listed = store.list_vms().unwrap();
    assert_eq!(listed[0].workspace, web.workspace);
    assert_eq!(listed[1].workspace, None);
    assert_eq!(
        store.find_vm_by_name("web").unwrap().unwrap().workspace,
        web.workspace
    );
    assert!(store.delete_vm(&web.id).unwrap());
    let left: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM vm_workspaces", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0, "the workspace row goes with its VM");
}

#[test]
fn published_ports_survive_a_reopen_replace_by_host_side_and_go_with_their_vm() {
    use banger_model::PortSpec;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    let web = vm(1, "web", VmState::Running);
    let db = vm(2, "db", VmState::Stopped);
    let http = PortSpec::parse("8080:80").unwrap();
    let dns = PortSpec::parse("0.0.0.0:5353:53/udp").unwrap();
    {
        let store = Store::open(&path).unwrap();
        store.insert_vm(&web).unwrap();
        store.insert_vm(&db).unwrap();
        store.put_published_port(&web.id, &http, "t1").unwrap();
        store.put_published_port(&web.id, &dns, "t1").unwrap();
        // The same host port may be recorded for another VM; the bind decides.
        store.put_published_port(&db.id, &http, "t1").unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.list_published_ports(&web.id).unwrap(),
        vec![http, dns]
    );
    // Same host side, other guest port: replaced, not added.
    let moved = PortSpec::parse("8080:81").unwrap();
    store.put_published_port(&web.id, &moved, "t2").unwrap();
    assert_eq!(
        store.list_published_ports(&web.id).unwrap(),
        vec![moved, dns]
    );
    assert!(store.delete_published_port(&web.id, &dns).unwrap());
    assert!(!store.delete_published_port(&web.id, &dns).unwrap());
    assert_eq!(store.list_published_ports(&web.id).unwrap(), vec![moved]);
    assert!(store.delete_vm(&web.id).unwrap());
    assert_eq!(store.list_published_ports(&web.id).unwrap(), vec![]);
    assert_eq!(store.list_published_ports(&db.id).unwrap(), vec![http]);
    // A port for a VM that does not exist fails its foreign key.
    assert!(store.put_published_port(&web.id, &http, "t3").is_err());
}
