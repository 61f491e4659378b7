//! The VM service's lifecycle against a fake VMM and agent (`support`): create, stop,
//! start, kill and delete; every failure of create leaving nothing (no row, directory or
//! process); racing creates of one name (exactly one wins); a daemon crash at each stage
//! of a create, after which a new service's reconcile leaves either a usable VM or
//! nothing; and a delete waiting on the VM lock a create holds. Real disks (mkfs.ext4,
//! e2fsck, debugfs), real processes; no guest. The suite takes seconds, most of it the
//! agent timeouts the failure cases wait out.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banger_model::progress::{NoProgress, ProgressSink, RESERVE_NAME_STAGE};
use banger_model::{GuestSignal, VmState};
use banger_requires::require;
use banger_vm::{CreateRequest, VmError};
use support::{Bench, Faults, IMAGE};

fn request(name: &str) -> CreateRequest {
    CreateRequest {
        name: Some(name.into()),
        image: Some(IMAGE.into()),
        disk_mib: Some(1024),
        memory_mib: Some(256),
        vcpus: Some(1),
        ..CreateRequest::default()
    }
}

macro_rules! require_disk_tools {
    () => {
        require!(
            Tool("mkfs.ext4"),
            Tool("e2fsck"),
            Tool("debugfs"),
            Tool("resize2fs")
        )
    };
}

/// Asserts that nothing of any VM is left: no rows, no directories, no fake VMMs.
fn assert_nothing_left(bench: &Bench, service: &banger_vm::VmService) {
    assert_eq!(service.list().unwrap(), Vec::new(), "rows");
    assert_eq!(bench.vm_dirs(), Vec::<String>::new(), "VM directories");
    assert_eq!(bench.driver.live_pids(), Vec::<u32>::new(), "VMM processes");
}

#[tokio::test]
async fn create_stop_start_kill_delete() {
    require_disk_tools!();
    let bench = Bench::new();
    let service = bench.service();
    let started = Instant::now();

    let vm = service.create(request("web"), &NoProgress).await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    let pid = service.pid_of(&vm.id).expect("a live VMM");
    assert_eq!(
        vm.runtime.boot_id.as_deref(),
        Some(format!("boot-{pid}").as_str())
    );
    assert_eq!(bench.driver.live_pids(), [pid]);

    let stopped = service.stop("web", None).await.unwrap();
    assert_eq!(stopped.state, VmState::Stopped);
    assert!(stopped.runtime.boot_id.is_none());
    assert!(bench.driver.live_pids().is_empty(), "the VMM is gone");

    let restarted = service.start("web", &NoProgress).await.unwrap();
    assert_eq!(restarted.state, VmState::Running);
    let second = service.pid_of(&vm.id).unwrap();
    assert_ne!(second, pid, "a new VMM process");
    assert_ne!(restarted.runtime.boot_id, vm.runtime.boot_id, "a new boot");

    let killed = service.kill("web", GuestSignal::Kill).await.unwrap();
    assert_eq!(killed.state, VmState::Stopped);
    assert!(killed.runtime.last_error.unwrap().contains("killed with"));
    assert!(bench.driver.live_pids().is_empty());

    service.start("web", &NoProgress).await.unwrap();
    let running_delete = service.delete("web", false).await.unwrap_err();
    assert!(
        matches!(running_delete, VmError::Conflict(_)),
        "{running_delete}"
    );
    service.delete("web", true).await.unwrap();
    assert_nothing_left(&bench, &service);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_failed_create_leaves_nothing() {
    require_disk_tools!();
    let bench = Bench::new();
    let service = bench.service();
    let cases = [
        (
            "launch fails",
            Faults {
                launch_fails: Some("qemu: could not open the disk".into()),
                ..Faults::default()
            },
            "could not open the disk",
        ),
        (
            "agent never answers",
            Faults {
                agent_silent: true,
                ..Faults::default()
            },
            "did not answer",
        ),
        (
            "VMM exits during boot",
            Faults {
                exits_at_once: true,
                ..Faults::default()
            },
            "exited during boot",
        ),
    ];
    for (what, faults, expected) in cases {
        bench.driver.set_faults(faults);
        let error = service
            .create(request("doomed"), &NoProgress)
            .await
            .unwrap_err();
        let text = banger_vm::chain(&error);
        assert!(text.contains(expected), "{what}: {text}");
        assert_nothing_left(&bench, &service);
    }
    // A bad image name and a spec too large fail before anything is made.
    bench.driver.set_faults(Faults::default());
    let launches = *bench.driver.launches.lock().unwrap();
    let mut missing = request("noimage");
    missing.image = Some("nosuchimage".into());
    missing.kernel = Some("fake-kernel".into());
    assert!(service.create(missing, &NoProgress).await.is_err());
    let mut huge = request("huge");
    huge.disk_mib = Some(1 << 40);
    let error = service.create(huge, &NoProgress).await.unwrap_err();
    assert!(matches!(error, VmError::BadRequest(_)), "{error}");
    assert_eq!(*bench.driver.launches.lock().unwrap(), launches);
    assert_nothing_left(&bench, &service);
    // And a start that fails leaves the VM `error` with the reason, and no process.
    service.create(request("later"), &NoProgress).await.unwrap();
    service.stop("later", None).await.unwrap();
    bench.driver.set_faults(Faults {
        agent_silent: true,
        ..Faults::default()
    });
    let error = service.start("later", &NoProgress).await.unwrap_err();
    assert!(banger_vm::chain(&error).contains("did not answer"));
    let vm = service.find("later").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert!(vm.runtime.last_error.unwrap().contains("did not answer"));
    assert!(bench.driver.live_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_of_one_name_have_exactly_one_winner() {
    require_disk_tools!();
    let bench = Bench::new();
    let service = bench.service();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let service = Arc::clone(&service);
            tokio::spawn(async move { service.create(request("same"), &NoProgress).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(vm) => {
                won += 1;
                assert_eq!(vm.state, VmState::Running);
            }
            Err(VmError::AlreadyExists(name)) => assert_eq!(name, "same"),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(service.list().unwrap().len(), 1);
    assert_eq!(bench.driver.live_pids().len(), 1);
    service.delete("same", true).await.unwrap();
    assert_nothing_left(&bench, &service);
}

/// Stops the create dead at one stage event, as a daemon killed there would: with
/// `crash`, the create's task panics right there (nothing after it runs, no cleanup but
/// what the kernel would do: locals dropped, descriptors closed); without, it only tells
/// the test and parks the worker for a moment.
struct CrashAt {
    point: String,
    crash: bool,
    reached: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl ProgressSink for CrashAt {
    fn stage_started(&self, stage: &str) {
        self.hit(&format!("start {stage}"));
    }
    fn stage_done(&self, stage: &str, _detail: Option<&str>) {
        self.hit(&format!("done {stage}"));
    }
}

impl CrashAt {
    fn hit(&self, event: &str) {
        if event == self.point
            && let Some(reached) = self.reached.lock().unwrap().take()
        {
            let _ = reached.send(());
            if self.crash {
                std::panic::panic_any("the daemon was killed here");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_crash_at_each_create_stage_is_reconciled_to_all_or_nothing() {
    require_disk_tools!();
    let points = [
        format!("start {RESERVE_NAME_STAGE}"),
        format!("done {RESERVE_NAME_STAGE}"),
        "start root disk".to_owned(),
        "done root disk".to_owned(),
        "start prepare guest".to_owned(),
        "done prepare guest".to_owned(),
        "start boot".to_owned(),
        "done boot".to_owned(),
        "start agent ready".to_owned(),
        "done agent ready".to_owned(),
    ];
    let mut outcomes = Vec::new();
    for point in points {
        let bench = Bench::new();
        let crashed = bench.service();
        let (reached, wait) = tokio::sync::oneshot::channel();
        let sink = Arc::new(CrashAt {
            point: point.clone(),
            crash: true,
            reached: Mutex::new(Some(reached)),
        });
        let task = {
            let sink = Arc::clone(&sink);
            let service = Arc::clone(&crashed);
            tokio::spawn(async move { service.create(request("crashy"), sink.as_ref()).await })
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{point}: never reached"))
            .unwrap();
        assert!(task.await.unwrap_err().is_panic(), "{point}");
        drop(crashed);

        // The next daemon.
        let service = bench.service();
        let report = service.reconcile().await.unwrap();
        let vms = service.list().unwrap();
        match vms.as_slice() {
            [] => {
                assert_eq!(bench.vm_dirs(), Vec::<String>::new(), "{point}: {report:?}");
                assert_eq!(bench.driver.live_pids(), Vec::<u32>::new(), "{point}");
                outcomes.push(format!("{point}: gone"));
            }
            [vm] => {
                // Only a create that finished may survive, and then it is usable.
                assert_eq!(vm.state, VmState::Running, "{point}: {report:?}");
                assert_eq!(report.reattached, ["crashy"], "{point}");
                service.stop("crashy", None).await.unwrap();
                service.delete("crashy", false).await.unwrap();
                assert_nothing_left(&bench, &service);
                outcomes.push(format!("{point}: running"));
            }
            more => panic!("{point}: {more:?}"),
        }
    }
    // Until the VMM's handle is recorded (`boot` done) a crash leaves a VM `creating`,
    // which reconcile removes with its files and process; from then on the VMM is
    // reattached and the VM comes up running (and usable: stopped and deleted above).
    let expected: Vec<String> = [
        "start reserve name: gone",
        "done reserve name: gone",
        "start root disk: gone",
        "done root disk: gone",
        "start prepare guest: gone",
        "done prepare guest: gone",
        "start boot: gone",
        "done boot: running",
        "start agent ready: running",
        "done agent ready: running",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(outcomes, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_waits_for_the_create_holding_the_vm_lock() {
    require_disk_tools!();
    let bench = Bench::new();
    let service = bench.service();
    // The agent never answers: the create holds the VM's lock for the ready timeout.
    bench.driver.set_faults(Faults {
        agent_silent: true,
        ..Faults::default()
    });
    let (reached, wait) = tokio::sync::oneshot::channel();
    let sink = Arc::new(CrashAt {
        point: "done boot".into(),
        crash: false,
        reached: Mutex::new(Some(reached)),
    });
    let create = {
        let service = Arc::clone(&service);
        let sink = Arc::clone(&sink);
        tokio::spawn(async move { service.create(request("held"), sink.as_ref()).await })
    };
    wait.await.unwrap();
    let asked = Instant::now();
    let deleted = service.delete("held", true).await;
    let waited = asked.elapsed();
    let created = create.await.unwrap();
    assert!(created.is_err(), "the agent never answered");
    // Had the delete not waited for the lock it would have deleted the booting VM
    // itself (Ok). It waited: the failed create removed the VM, and the delete, once it
    // had the lock, found nothing.
    assert!(matches!(deleted, Err(VmError::NotFound(_))), "{deleted:?}");
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert_nothing_left(&bench, &service);
}

/// Without a network (no helper here) a VM cannot forward ports: a create with `-p` is
/// refused with a reason naming the helper and leaves nothing, `publish` on a running VM
/// is refused likewise, and `unpublish` names what is (not) published.
#[tokio::test]
async fn published_ports_need_the_network_and_are_refused_clearly() {
    require_disk_tools!();
    let bench = Bench::new();
    let service = bench.service();
    let spec = banger_model::PortSpec::parse("18080:80").unwrap();

    let mut with_port = request("web");
    with_port.publish = vec![spec];
    let error = service.create(with_port, &NoProgress).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has published ports but no network address"),
        "{error}"
    );
    assert_nothing_left(&bench, &service);

    let mut twice = request("web");
    twice.publish = vec![
        spec,
        banger_model::PortSpec::parse("0.0.0.0:18080:81").unwrap(),
    ];
    let error = service.create(twice, &NoProgress).await.unwrap_err();
    assert!(matches!(error, VmError::BadRequest(_)), "{error}");
    assert!(
        error.to_string().contains("ask for the same host port"),
        "{error}"
    );
    assert_nothing_left(&bench, &service);

    service.create(request("web"), &NoProgress).await.unwrap();
    let error = service.publish("web", vec![spec]).await.unwrap_err();
    assert!(
        error.to_string().contains("has no network address"),
        "{error}"
    );
    let (_, published) = service.published("web").unwrap();
    assert!(published.is_empty(), "{published:?}");

    service.stop("web", None).await.unwrap();
    let error = service.publish("web", vec![spec]).await.unwrap_err();
    assert!(error.to_string().contains("VM web is stopped"), "{error}");
    let side = banger_model::HostSide::parse("18080").unwrap();
    let error = service
        .unpublish("web", vec![("18080".into(), side)])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "VM web publishes no port \"18080\" (published: none)"
    );
    service.delete("web", true).await.unwrap();
    assert_nothing_left(&bench, &service);
}
