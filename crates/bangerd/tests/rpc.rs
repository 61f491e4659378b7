//! The daemon over a real Unix socket in a temporary directory: every error code the
//! server can produce, the connection surviving bad input, peer-uid checks, socket
//! takeover rules, and the binary's own start/stop.
//!
//! Not covered here: a long operation surviving a client disconnect over RPC. No method
//! runs a long operation yet; `ops` unit-tests the same guarantee on `run_op` directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_api::methods::{self as m, CompleteKind, CompleteParams, Empty, VmRef};
use banger_api::{
    Client, ClientError, ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ResponseBody, ResponseFrame,
};
use banger_model::dirs::Dirs;
use bangerd::DaemonContext;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything a test waits on.
const WAIT: Duration = Duration::from_secs(20);

fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn test_dirs(root: &Path) -> Dirs {
    Dirs {
        state: root.join("state"),
        cache: root.join("cache"),
        runtime: root.join("run"),
        config: root.join("config"),
        socket: root.join("run/bangerd.sock"),
    }
}

/// A daemon running in this process on a socket in a temporary directory.
struct TestDaemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    ctx: Arc<DaemonContext>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestDaemon {
    async fn start() -> TestDaemon {
        Self::start_with_owner(current_uid()).await
    }

    async fn start_with_owner(owner_uid: u32) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let dirs = test_dirs(dir.path());
        let socket = dirs.socket.clone();
        let listener = bangerd::socket::bind(&socket, current_uid()).await.unwrap();
        let ctx = Arc::new(DaemonContext::new(owner_uid, dirs));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bangerd::run(
            listener,
            async {
                let _ = stopped.await;
            },
            Arc::clone(&ctx),
        ));
        TestDaemon {
            dir,
            socket,
            ctx,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.socket).await.unwrap()
    }

    async fn raw(&self) -> RawConn {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (read, write) = stream.into_split();
        RawConn {
            reader: BufReader::new(read),
            writer: write,
        }
    }

    /// Stops the server and waits for it to finish.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops within the grace period")
                .unwrap()
                .unwrap();
        }
    }
}

/// A connection speaking raw lines, for input the typed client would never send.
struct RawConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawConn {
    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn request(&mut self, value: serde_json::Value) {
        let mut line = serde_json::to_vec(&value).unwrap();
        line.push(b'\n');
        self.send(&line).await;
    }

    /// The next frame, or None when the daemon closed the connection.
    async fn frame(&mut self) -> Option<ResponseFrame> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("the daemon answers")
            .unwrap();
        if n == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad frame {line:?}: {e}")))
    }

    /// The next frame, which must be an error; returns (id, code, message).
    async fn error(&mut self) -> (u64, ErrorCode, String) {
        let frame = self
            .frame()
            .await
            .expect("a frame, not a closed connection");
        match frame.body {
            ResponseBody::Error { error } => (frame.id, error.code, error.message),
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    /// Sends a ping with `id` and checks the answer, proving the connection still serves.
    async fn ping_ok(&mut self, id: u64) {
        self.request(serde_json::json!({"v": PROTOCOL_VERSION, "id": id, "method": "ping"}))
            .await;
        let frame = self.frame().await.expect("a ping answer");
        assert_eq!(frame.id, id);
        assert!(
            matches!(frame.body, ResponseBody::Result { .. }),
            "{frame:?}"
        );
    }
}

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> banger_api::ApiError {
    match result {
        Err(ClientError::Api(error)) => error,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn ping_answers_version_and_protocol() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let pong = client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    assert_eq!(pong.protocol, PROTOCOL_VERSION);
    assert_eq!(pong.daemon_version, env!("CARGO_PKG_VERSION"));
    daemon.shutdown().await;
}

#[tokio::test]
async fn null_params_mean_no_params() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    raw.request(serde_json::json!({"v": 1, "id": 3, "method": "ping", "params": null}))
        .await;
    let frame = raw.frame().await.unwrap();
    assert!(
        matches!(frame.body, ResponseBody::Result { .. }),
        "{frame:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn health_reports_store_and_drivers() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let health = client
        .call::<m::HealthCheck>(&Empty {}, |_| {})
        .await
        .unwrap();
    assert_eq!(health.protocol, PROTOCOL_VERSION);
    assert_eq!(health.pid, std::process::id());
    assert!(health.store.ok, "{:?}", health.store);
    assert!(health.store.error.is_none());
    assert_eq!(health.store.schema_version, banger_store::LATEST_VERSION);
    assert_eq!(
        PathBuf::from(&health.store.path),
        daemon.dir.path().join("state/banger.db")
    );
    assert!(daemon.dir.path().join("state/banger.db").exists());
    let names: Vec<&str> = health.drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["qemu", "firecracker"]);
    assert!(["kvm", "tcg"].contains(&health.accelerator.as_str()));
    assert!(health.vms.is_empty(), "{:?}", health.vms);
    daemon.shutdown().await;
}

#[tokio::test]
async fn health_reports_a_broken_store_instead_of_failing() {
    let daemon = TestDaemon::start().await;
    // A directory where the database file should be: it cannot be opened.
    std::fs::create_dir_all(daemon.dir.path().join("state/banger.db")).unwrap();
    let mut client = daemon.client().await;
    let health = client
        .call::<m::HealthCheck>(&Empty {}, |_| {})
        .await
        .unwrap();
    assert!(!health.store.ok);
    let error = health.store.error.expect("the store error is reported");
    assert!(error.contains("banger.db"), "{error}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn unknown_method_is_named() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let err = api_error(
        client
            .call_raw("vm.teleport", serde_json::json!({}), &mut |_| {})
            .await,
    );
    assert_eq!(err.code, ErrorCode::UnknownMethod);
    assert!(err.message.contains("vm.teleport"), "{}", err.message);
    daemon.shutdown().await;
}

#[tokio::test]
async fn other_protocol_version_is_bad_version() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    raw.request(serde_json::json!({"v": PROTOCOL_VERSION + 1, "id": 9, "method": "ping"}))
        .await;
    let (id, code, message) = raw.error().await;
    assert_eq!((id, code), (9, ErrorCode::BadVersion));
    assert!(
        message.contains(&(PROTOCOL_VERSION + 1).to_string()),
        "{message}"
    );
    raw.ping_ok(10).await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_bad_request_and_the_connection_keeps_serving() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    raw.send(b"{\"v\":1,\"id\":3,\"method\":\n").await;
    let (id, code, message) = raw.error().await;
    assert_eq!((id, code), (0, ErrorCode::BadRequest));
    assert!(message.contains("malformed JSON"), "{message}");
    raw.ping_ok(4).await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_is_bad_request_and_the_connection_keeps_serving() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    // A syntactically valid request whose line is larger than the limit.
    let padding = "x".repeat(MAX_FRAME_BYTES + 1);
    raw.request(serde_json::json!({"v": 1, "id": 5, "method": "ping", "params": {"pad": padding}}))
        .await;
    let (id, code, message) = raw.error().await;
    assert_eq!((id, code), (0, ErrorCode::BadRequest));
    assert!(message.contains("larger than"), "{message}");
    raw.ping_ok(6).await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn params_of_the_wrong_type_are_bad_request() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let err = api_error(
        client
            .call_raw("vm.show", serde_json::json!({"vm": 42}), &mut |_| {})
            .await,
    );
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("invalid type"), "{}", err.message);
    assert!(err.message.contains("vm.show"), "{}", err.message);
    let err = api_error(
        client
            .call_raw(
                "complete.names",
                serde_json::json!({"kind": "planet"}),
                &mut |_| {},
            )
            .await,
    );
    assert_eq!(err.code, ErrorCode::BadRequest);
    daemon.shutdown().await;
}

#[tokio::test]
async fn requests_on_one_connection_are_answered_in_order() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    // Three requests in one write; the answers must come back in the same order.
    let mut batch = Vec::new();
    for (id, method) in [(1, "health"), (2, "ping"), (3, "vm.list")] {
        batch.extend(
            serde_json::to_vec(&serde_json::json!({"v":1,"id":id,"method":method})).unwrap(),
        );
        batch.push(b'\n');
    }
    raw.send(&batch).await;
    let ids: Vec<u64> = [
        raw.frame().await.unwrap(),
        raw.frame().await.unwrap(),
        raw.frame().await.unwrap(),
    ]
    .iter()
    .map(|frame| frame.id)
    .collect();
    assert_eq!(ids, [1, 2, 3]);
    daemon.shutdown().await;
}

/// Input frames for no running request (late stdin, a confused client) are dropped:
/// they get no answer and the requests around them are answered in order. Input sent
/// with a request that reads none does not hold its answer back.
#[tokio::test]
async fn stray_input_frames_are_dropped_and_requests_still_answered() {
    let daemon = TestDaemon::start().await;
    let mut raw = daemon.raw().await;
    let mut batch = Vec::new();
    for line in [
        serde_json::json!({"v":1,"id":9,"input":"data","data":"aGk="}),
        serde_json::json!({"v":1,"id":1,"method":"ping"}),
        serde_json::json!({"v":1,"id":1,"input":"data","data":"aGk="}),
        serde_json::json!({"v":1,"id":1,"input":"eof"}),
        serde_json::json!({"v":1,"id":2,"method":"vm.list"}),
        serde_json::json!({"v":1,"id":7,"input":"eof"}),
        serde_json::json!({"v":1,"id":3,"method":"ping"}),
    ] {
        batch.extend(serde_json::to_vec(&line).unwrap());
        batch.push(b'\n');
    }
    raw.send(&batch).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let frame = raw.frame().await.unwrap();
        assert!(frame.body.is_final(), "{frame:?}");
        ids.push(frame.id);
    }
    assert_eq!(ids, [1, 2, 3]);
    daemon.shutdown().await;
}

#[tokio::test]
async fn vm_show_of_a_missing_vm_is_not_found() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let err = api_error(
        client
            .call::<m::VmShow>(&VmRef { vm: "ghost".into() }, |_| {})
            .await,
    );
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("ghost"), "{}", err.message);
    daemon.shutdown().await;
}

#[tokio::test]
async fn vm_list_is_empty_on_a_fresh_store() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let vms = client.call::<m::VmList>(&Empty {}, |_| {}).await.unwrap();
    assert!(vms.is_empty(), "{vms:?}");
    daemon.shutdown().await;
}

fn stored_vm(name: &str, id_bits: u64) -> banger_model::VmRecord {
    banger_model::VmRecord {
        id: banger_model::VmId::from_random(id_bits),
        name: banger_model::VmName::parse(name).unwrap(),
        state: banger_model::VmState::Stopped,
        image: "tiny".into(),
        kernel: "debian-6.1-cloud".into(),
        spec: banger_model::VmSpec::default(),
        nat: false,
        policy: None,
        driver: "qemu".into(),
        runtime: banger_model::VmRuntime::default(),
        workspace: None,
        created_at: "2026-01-02T03:04:05Z".into(),
    }
}

impl TestDaemon {
    async fn insert_vms(&self, vms: Vec<banger_model::VmRecord>) {
        self.ctx
            .with_store(move |store| {
                for vm in &vms {
                    store.insert_vm(vm).unwrap();
                }
                Ok(())
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn vm_show_of_an_ambiguous_prefix_lists_the_candidates() {
    let daemon = TestDaemon::start().await;
    daemon
        .insert_vms(vec![stored_vm("web-1", 0x1111), stored_vm("web-2", 0x2222)])
        .await;
    let mut client = daemon.client().await;
    let err = api_error(
        client
            .call::<m::VmShow>(&VmRef { vm: "web".into() }, |_| {})
            .await,
    );
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("web-1, web-2"), "{}", err.message);
    assert!(err.hint.is_some());
    // A unique prefix and an id prefix both resolve.
    let vm = client
        .call::<m::VmShow>(&VmRef { vm: "web-2".into() }, |_| {})
        .await
        .unwrap();
    assert_eq!(vm.name, "web-2");
    let vm = client
        .call::<m::VmShow>(
            &VmRef {
                vm: "0000000000001".into(),
            },
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(vm.name, "web-1");
    assert_eq!(vm.memory_mib, 512);
    let all = client.call::<m::VmList>(&Empty {}, |_| {}).await.unwrap();
    let names: Vec<&str> = all.iter().map(|vm| vm.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2"]);
    let completions = client
        .call::<m::CompleteNames>(
            &CompleteParams {
                kind: CompleteKind::Vm,
            },
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(completions, ["web-1", "web-2"]);
    let health = client
        .call::<m::HealthCheck>(&Empty {}, |_| {})
        .await
        .unwrap();
    assert_eq!(health.vms, [(banger_model::VmState::Stopped, 2)]);
    daemon.shutdown().await;
}

/// `vm set` checks memory against the host's, as it checks vCPUs against its cores, and
/// refuses a disk the state directory's file system could not hold; the VM is unchanged.
#[tokio::test]
async fn vm_set_checks_memory_and_disk_against_the_host() {
    let daemon = TestDaemon::start().await;
    daemon.insert_vms(vec![stored_vm("sized", 0x5151)]).await;
    let mut client = daemon.client().await;
    let set = |memory_mib, disk_mib| m::VmSetParams {
        vm: "sized".into(),
        vcpus: None,
        memory_mib,
        disk_mib,
    };
    let tib_in_mib = 1024 * 1024;
    let cases = [
        (set(Some(tib_in_mib), None), "this host's memory"),
        (set(None, Some(2 * tib_in_mib)), "free"),
    ];
    for (params, fragment) in cases {
        let err = api_error(client.call::<m::VmSet>(&params, |_| {}).await);
        assert_eq!(err.code, ErrorCode::BadRequest, "{params:?}: {err:?}");
        assert!(
            err.message.contains(fragment),
            "{params:?}: {}",
            err.message
        );
    }
    let shown = client
        .call::<m::VmShow>(&VmRef { vm: "sized".into() }, |_| {})
        .await
        .unwrap();
    assert_eq!((shown.memory_mib, shown.disk_mib), (512, 4096));
    daemon.shutdown().await;
}

/// One character of an id or name is enough for `vm show`, never for `vm delete` or
/// `vm kill`: those need the full name or id (the CLI confirms a prefix with the user
/// and then sends the full name).
#[tokio::test]
async fn destructive_commands_refuse_prefixes() {
    let daemon = TestDaemon::start().await;
    daemon
        .insert_vms(vec![stored_vm("scratch", 0xabcd_ef01)])
        .await;
    let mut client = daemon.client().await;
    let shown = client
        .call::<m::VmShow>(&VmRef { vm: "s".into() }, |_| {})
        .await
        .unwrap();
    assert_eq!(shown.name, "scratch");
    let id_prefixes = [&shown.id[..1], &shown.id[..3], &shown.id[..8]];
    for short in ["s", "scr", "scratc"].into_iter().chain(id_prefixes) {
        let err = api_error(
            client
                .call::<m::VmDelete>(
                    &m::VmDeleteParams {
                        vm: short.into(),
                        force: true,
                    },
                    |_| {},
                )
                .await,
        );
        assert_eq!(err.code, ErrorCode::BadRequest, "{short}: {err:?}");
        assert!(
            err.message
                .contains("is only a prefix of \"scratch\"; destructive commands need the full"),
            "{short}: {}",
            err.message
        );
        let err = api_error(
            client
                .call::<m::VmKill>(
                    &m::VmKillParams {
                        vm: short.into(),
                        signal: "KILL".into(),
                    },
                    |_| {},
                )
                .await,
        );
        assert!(
            err.message.contains("is only a prefix of"),
            "{}",
            err.message
        );
    }
    // Still there; its full id deletes it.
    let all = client.call::<m::VmList>(&Empty {}, |_| {}).await.unwrap();
    assert_eq!(all.len(), 1);
    let deleted = client
        .call::<m::VmDelete>(
            &m::VmDeleteParams {
                vm: shown.id.clone(),
                force: false,
            },
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(deleted.name, "scratch");
    let all = client.call::<m::VmList>(&Empty {}, |_| {}).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn another_users_connection_is_unauthorized() {
    let daemon = TestDaemon::start_with_owner(current_uid() + 1).await;
    let mut raw = daemon.raw().await;
    let (id, code, message) = raw.error().await;
    assert_eq!((id, code), (0, ErrorCode::Unauthorized));
    assert!(message.contains(&current_uid().to_string()), "{message}");
    // The daemon closes after the one error frame.
    assert!(raw.frame().await.is_none());
    // The typed client sees the same error.
    let mut client = daemon.client().await;
    let err = api_error(client.call::<m::Ping>(&Empty {}, |_| {}).await);
    assert_eq!(err.code, ErrorCode::Unauthorized);
    daemon.shutdown().await;
}

#[tokio::test]
async fn unfinished_features_are_not_yet_available() {
    // VMs and images are implemented now; repository workspaces are not yet.
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    // An import with a bad reference is refused before any work: the method exists.
    let err = api_error(
        client
            .call::<m::ImageImport>(
                &m::ImageImportParams {
                    reference: "Not A Reference".into(),
                    name: None,
                    force: false,
                },
                |_| {},
            )
            .await,
    );
    assert_eq!(err.code, ErrorCode::BadRequest, "{}", err.message);
    let err = api_error(
        client
            .call::<m::WorkspaceExport>(
                &m::WorkspaceExportParams {
                    vm: "web".into(),
                    base_commit: None,
                    guest_path: None,
                    format: m::ExportFormat::Diff,
                },
                |_| {},
            )
            .await,
    );
    // Export is implemented: an unknown VM is not found.
    assert_eq!(err.code, ErrorCode::NotFound, "{}", err.message);
    daemon.shutdown().await;
}

#[tokio::test]
async fn completion_offers_catalog_names() {
    let daemon = TestDaemon::start().await;
    let mut client = daemon.client().await;
    let images = client
        .call::<m::CompleteNames>(
            &CompleteParams {
                kind: CompleteKind::Image,
            },
            |_| {},
        )
        .await
        .unwrap();
    for (name, _) in banger_model::catalog::BUILTIN_IMAGES {
        assert!(images.iter().any(|n| n == name), "{name} in {images:?}");
    }
    let vms = client
        .call::<m::CompleteNames>(
            &CompleteParams {
                kind: CompleteKind::Vm,
            },
            |_| {},
        )
        .await
        .unwrap();
    assert!(vms.is_empty(), "{vms:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_live_socket_is_never_taken_over() {
    let daemon = TestDaemon::start().await;
    let err = bangerd::socket::bind(&daemon.socket, current_uid())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    let mut client = daemon.client().await;
    client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_removed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = test_dirs(dir.path());
    std::fs::create_dir_all(&dirs.runtime).unwrap();
    // What a crashed daemon leaves behind: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&dirs.socket).unwrap());
    let listener = bangerd::socket::bind(&dirs.socket, current_uid())
        .await
        .unwrap();
    let socket = dirs.socket.clone();
    let ctx = Arc::new(DaemonContext::new(current_uid(), dirs));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(bangerd::run(
        listener,
        async {
            let _ = stopped.await;
        },
        ctx,
    ));
    let mut client = Client::connect(&socket).await.unwrap();
    client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(!socket.exists(), "the socket file is removed on shutdown");
    // The idle connection was closed by the shutdown.
    let err = client.call::<m::Ping>(&Empty {}, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "{err:?}"
    );
}

/// What a restart used to break: the old daemon, finishing its shutdown, deleted the
/// socket a newer daemon had bound at the same path, leaving the newer one unreachable.
/// A server removes only the socket it bound itself.
#[tokio::test]
async fn a_socket_bound_by_another_daemon_survives_our_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = test_dirs(dir.path());
    let socket = dirs.socket.clone();
    let listener = bangerd::socket::bind(&socket, current_uid()).await.unwrap();
    let ctx = Arc::new(DaemonContext::new(current_uid(), dirs));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(bangerd::run(
        listener,
        async {
            let _ = stopped.await;
        },
        ctx,
    ));
    // Another daemon takes the path over (as a restart that found the old socket dead
    // would) while the first one is still running. The file system may well give the
    // new socket the old one's inode number.
    std::fs::remove_file(&socket).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(socket.exists(), "the newer daemon's socket was removed");
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let (_conn, _) = newer.accept().unwrap();
}
