//! A fake VMM and guest agent for the VM service, so its lifecycle (create, start, stop,
//! kill, delete), failure cleanup and crash reconcile run in milliseconds without QEMU.
//!
//! [`FakeDriver::launch`] starts a real, tiny process (`sh -c 'read x' fake-vmm <run
//! dir>`: blocked on a pipe only the driver holds), so everything the service does with
//! pids (start-time identity, pidfds, the stray-VMM sweep by command line) acts on a real
//! process; a thread reaps it. While it lives, a fake agent answers `hello` (and `exec`)
//! on the handle's agent socket. Faults are set per driver ([`Faults`]). The disk path is
//! real: a small ext4 made with `mkfs.ext4 -d`, patched by the real `debugfs`.

#![allow(
    dead_code,
    clippy::disallowed_methods,
    reason = "each test file uses part of the support; the fake VMM and mkfs run as a test runs them"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_exec::SystemRunner;
use banger_image::ImageService;
use banger_model::SpecLimits;
use banger_model::dirs::Dirs;
use banger_proto::agent::{Hello, Reply, ReplyBody, RequestOp, decode_request, encode_frame};
use banger_store::{ImageRecord, KernelRecord, Store};
use banger_vm::{VmService, VmServiceConfig};
use banger_vmm::{
    Accelerator, AgentEndpoint, BoxFuture, DriverKind, LaunchSpec, ShutdownOutcome, SnapshotReport,
    SnapshotRequest, VmmDriver, VmmError, VmmHandle, WarmLaunch,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the next launches do wrong.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// `launch` fails with this stderr tail (the VMM "exited during launch").
    pub launch_fails: Option<String>,
    /// The process starts but no agent ever answers.
    pub agent_silent: bool,
    /// The process exits right after launch, as a VMM that crashed in early boot.
    pub exits_at_once: bool,
}

/// One fake VMM process.
#[derive(Debug)]
struct FakeVm {
    start_time: u64,
    /// Dropping it ends the fake agent.
    agent: Option<tokio::task::JoinHandle<()>>,
}

/// A [`VmmDriver`] whose VMM is a blocked shell and whose guest is a fake agent.
#[derive(Debug, Default)]
pub struct FakeDriver {
    pub faults: Mutex<Faults>,
    vms: Mutex<HashMap<u32, FakeVm>>,
    /// How many launches were asked for.
    pub launches: Mutex<u32>,
    /// Fake VMMs whose guest a snapshot paused and nothing resumed yet.
    pub paused: Mutex<std::collections::HashSet<u32>>,
    /// Report itself as Firecracker (whose snapshots are one save, memory file
    /// included, with the root disk swapped), not QEMU.
    pub firecracker: bool,
    /// The warm-start calls in order: `pause`, `snapshot`, `launch_warm`, `resume`.
    pub calls: Mutex<Vec<Call>>,
}

/// One warm-start call the driver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Pause,
    Snapshot(SnapshotRequest),
    LaunchWarm {
        warm: WarmLaunch,
        root_disk: PathBuf,
    },
    Resume,
}

impl FakeDriver {
    pub fn firecracker() -> FakeDriver {
        let mut driver = FakeDriver::default();
        driver.firecracker = true;
        driver
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Pids of fake VMM processes that are still running (a zombie is not).
    pub fn live_pids(&self) -> Vec<u32> {
        self.vms
            .lock()
            .unwrap()
            .iter()
            .filter(|(pid, vm)| banger_sys::process::is_same_process_alive(**pid, vm.start_time))
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn spawn_vmm(run_dir: &Path) -> std::io::Result<(u32, u64)> {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("sh")
            .args(["-c", "read x", "fake-vmm"])
            .arg(run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        let start_time = banger_sys::process::process_start_time(pid)
            .ok_or_else(|| std::io::Error::other("the fake VMM vanished at once"))?;
        // The reaper holds the pipe (so `read` blocks) and reaps the process when it is
        // killed, so it never lingers as a zombie.
        std::thread::spawn(move || {
            let _stdin = child.stdin.take();
            let _ = child.wait();
        });
        Ok((pid, start_time))
    }
}

/// Answers the agent protocol on `socket` until aborted.
async fn fake_agent(socket: PathBuf, boot_id: String) {
    let _ = std::fs::remove_file(&socket);
    let Ok(listener) = tokio::net::UnixListener::bind(&socket) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let boot_id = boot_id.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(request) = decode_request(line.as_bytes()) else {
                    continue;
                };
                let body = match request.op {
                    RequestOp::Hello { protocol } => ReplyBody::HelloOk(Hello {
                        boot_id: boot_id.clone(),
                        hostname: "fake".into(),
                        agent_version: "fake".into(),
                        protocol,
                        uptime_ms: 1,
                        features: Vec::new(),
                    }),
                    RequestOp::Exec(_) => ReplyBody::Exit { code: 0 },
                    RequestOp::Identity(_) => ReplyBody::IdentityOk {
                        done: vec!["clock".into(), "rng".into(), "hostname".into()],
                        warnings: Vec::new(),
                    },
                    _ => ReplyBody::Error {
                        message: "the fake agent does not do that".into(),
                    },
                };
                let reply = Reply {
                    id: request.id,
                    body,
                };
                let Ok(mut frame) = encode_frame(&reply) else {
                    return;
                };
                frame.push(b'\n');
                if write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl VmmDriver for FakeDriver {
    fn kind(&self) -> DriverKind {
        if self.firecracker {
            DriverKind::Firecracker
        } else {
            DriverKind::Qemu
        }
    }

    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(async move {
            *self.launches.lock().unwrap() += 1;
            let faults = self.faults.lock().unwrap().clone();
            if let Some(tail) = faults.launch_fails {
                return Err(VmmError::EarlyExit {
                    driver: DriverKind::Qemu,
                    status: "exit status: 1".into(),
                    stderr_tail: tail,
                });
            }
            let (pid, start_time) =
                FakeDriver::spawn_vmm(&spec.run_dir).map_err(|source| VmmError::Spawn {
                    program: "sh".into(),
                    source,
                })?;
            let handle = VmmHandle {
                driver: self.kind(),
                pid,
                start_time,
                control_socket: spec.run_dir.join("qmp.sock"),
                agent_socket: spec.run_dir.join("agent.sock"),
                accelerator: Accelerator::Tcg,
            };
            std::fs::write(&spec.serial_log, "fake console\n").map_err(|source| {
                VmmError::Prepare {
                    path: spec.serial_log.clone(),
                    source,
                }
            })?;
            let agent = (!faults.agent_silent).then(|| {
                tokio::spawn(fake_agent(
                    handle.agent_socket.clone(),
                    format!("boot-{pid}"),
                ))
            });
            self.vms
                .lock()
                .unwrap()
                .insert(pid, FakeVm { start_time, agent });
            if faults.exits_at_once {
                let _ = banger_sys::process::send_signal(pid, libc::SIGKILL);
            }
            Ok(handle)
        })
    }

    /// A restored guest: a fresh fake VMM; the RAM file gets a page of "memory".
    fn launch_warm<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        warm: &'a WarmLaunch,
    ) -> BoxFuture<'a, Result<VmmHandle, VmmError>> {
        Box::pin(async move {
            self.record(Call::LaunchWarm {
                warm: warm.clone(),
                root_disk: spec.root_disk.clone(),
            });
            let handle = self.launch(spec).await?;
            if let Some(memory) = warm.memory.as_ref().filter(|_| !self.firecracker) {
                std::fs::write(&memory.path, vec![0u8; 4096]).map_err(|source| {
                    VmmError::Prepare {
                        path: memory.path.clone(),
                        source,
                    }
                })?;
            }
            if warm.paused {
                self.paused.lock().unwrap().insert(handle.pid);
            }
            Ok(handle)
        })
    }

    /// Pauses the fake guest and writes a state file.
    fn snapshot<'a>(
        &'a self,
        handle: &'a VmmHandle,
        request: &'a SnapshotRequest,
    ) -> BoxFuture<'a, Result<SnapshotReport, VmmError>> {
        Box::pin(async move {
            self.record(Call::Snapshot(request.clone()));
            self.paused.lock().unwrap().insert(handle.pid);
            std::fs::write(&request.state_file, b"fake device state").map_err(|source| {
                VmmError::Prepare {
                    path: request.state_file.clone(),
                    source,
                }
            })?;
            // Firecracker writes the guest's memory itself.
            if let Some(memory) = &request.memory_file {
                std::fs::write(memory, vec![0u8; 4096]).map_err(|source| VmmError::Prepare {
                    path: memory.clone(),
                    source,
                })?;
            }
            Ok(SnapshotReport {
                took: Duration::from_millis(1),
                downtime: None,
                state_bytes: 17,
            })
        })
    }

    fn pause<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            self.record(Call::Pause);
            self.paused.lock().unwrap().insert(handle.pid);
            Ok(())
        })
    }

    fn resume<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, Result<(), VmmError>> {
        Box::pin(async move {
            self.record(Call::Resume);
            self.paused.lock().unwrap().remove(&handle.pid);
            Ok(())
        })
    }

    fn agent_endpoint(&self, handle: &VmmHandle) -> AgentEndpoint {
        AgentEndpoint::VirtioSerial {
            socket: handle.agent_socket.clone(),
        }
    }

    fn shutdown<'a>(
        &'a self,
        handle: &'a VmmHandle,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<ShutdownOutcome, VmmError>> {
        Box::pin(async move {
            // The guest "powers off": the VMM exits.
            let _ = banger_sys::process::send_signal(handle.pid, libc::SIGTERM);
            self.wait_exit(handle).await;
            Ok(ShutdownOutcome::Graceful)
        })
    }

    fn wait_exit<'a>(&'a self, handle: &'a VmmHandle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            while banger_sys::process::is_same_process_alive(handle.pid, handle.start_time) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if let Some(vm) = self.vms.lock().unwrap().get_mut(&handle.pid)
                && let Some(agent) = vm.agent.take()
            {
                agent.abort();
            }
        })
    }
}

impl Drop for FakeDriver {
    fn drop(&mut self) {
        for pid in self.live_pids() {
            let _ = banger_sys::process::send_signal(pid, libc::SIGKILL);
        }
    }
}

/// A state directory, store, images and kernel for the VM service, shared across the
/// "daemons" (services) a test starts on it.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub dirs: Dirs,
    pub store: Arc<Mutex<Store>>,
    pub driver: Arc<FakeDriver>,
}

/// The image every fake VM boots.
pub const IMAGE: &str = "fake";

impl Bench {
    /// [`Bench::new`] with a fake Firecracker.
    pub fn firecracker() -> Bench {
        let mut bench = Bench::new();
        bench.driver = Arc::new(FakeDriver::firecracker());
        bench
    }

    /// A fresh state directory with a small ext4 image and a kernel recorded.
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dirs = Dirs {
            state: root.join("state"),
            cache: root.join("cache"),
            runtime: root.join("run"),
            config: root.join("config"),
            socket: root.join("run/bangerd.sock"),
        };
        for d in [&dirs.state, &dirs.cache, &dirs.runtime, &dirs.config] {
            std::fs::create_dir_all(d).unwrap();
        }
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::create_dir_all(tree.join("usr/local")).unwrap();
        let image = root.join("fake.ext4");
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("32M")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "mkfs.ext4 failed");
        let vmlinux = root.join("vmlinux");
        let initramfs = root.join("initramfs");
        std::fs::write(&vmlinux, b"fake kernel").unwrap();
        std::fs::write(&initramfs, b"fake initramfs").unwrap();
        std::fs::write(root.join("banger-agent"), b"#!/bin/sh\n").unwrap();
        let store = Store::open(&dirs.database()).unwrap();
        store
            .upsert_kernel(&KernelRecord {
                name: "fake-kernel".into(),
                version: "0".into(),
                vmlinux: vmlinux.display().to_string(),
                initramfs: initramfs.display().to_string(),
                created_at: "2026-01-01T00:00:00Z".into(),
            })
            .unwrap();
        store
            .upsert_image(&ImageRecord {
                name: IMAGE.into(),
                source: "registered".into(),
                digest: "sha256:00".into(),
                path: image.display().to_string(),
                size_bytes: std::fs::metadata(&image).unwrap().len(),
                kernel: "fake-kernel".into(),
                init: "busybox".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                origin: String::new(),
                layers: Vec::new(),
            })
            .unwrap();
        Bench {
            dirs,
            store: Arc::new(Mutex::new(store)),
            driver: Arc::new(FakeDriver::default()),
            dir,
        }
    }

    /// A VM service ("a daemon") on this state directory and driver.
    pub fn service(&self) -> Arc<VmService> {
        let cfg = VmServiceConfig {
            dirs: self.dirs.clone(),
            agent_binary: self.dir.path().join("banger-agent"),
            limits: SpecLimits::UNBOUNDED,
            ready_timeout: Duration::from_millis(800),
            stop_timeout: Duration::from_secs(2),
            authorized_keys: None,
            warm_templates: false,
        };
        let runner = Arc::new(SystemRunner);
        let images = Arc::new(ImageService::new(
            self.dirs.cache.clone(),
            self.dirs.state.clone(),
            runner.clone(),
        ));
        VmService::new(cfg, self.store.clone(), images, self.driver.clone(), runner)
    }

    /// Entries under `state/vms` (VM directories).
    pub fn vm_dirs(&self) -> Vec<String> {
        let vms = self.dirs.state.join("vms");
        std::fs::read_dir(vms)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
