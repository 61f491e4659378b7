//! The VMM of a real tiny guest runs confined (issue 15): it has no new privileges, and
//! QEMU itself, asked over its QMP socket to open a file (`blockdev-add` of a `file`
//! node, which opens the path at once), opens its own files but is refused another VM's
//! disk, a file planted in another VM's directory and the daemon's database, all of
//! which the owner can read. Checked for a cold-booted VM and for a fork of it (a
//! restored QEMU, launched with the snapshot's files), after the fork's guest answered.

// Test code: measurements go to stderr.
#![allow(clippy::print_stderr)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_e2e::{TestHost, require_vm};
use serde_json::{Value, json};

/// A blocking QMP connection, enough for a few commands.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(socket: &Path) -> Qmp {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|error| panic!("connect {}: {error}", socket.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = qmp.read();
        assert!(greeting.get("QMP").is_some(), "{greeting}");
        qmp.execute("qmp_capabilities", json!({}))
            .expect("qmp_capabilities");
        qmp
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("a QMP line");
        assert!(read > 0, "QEMU closed its QMP socket");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}: {line}"))
    }

    /// The command's `return`, or its error's `desc`.
    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}").unwrap();
        loop {
            let message = self.read();
            if message.get("event").is_some() {
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            let desc = message["error"]["desc"].as_str().unwrap_or_default();
            return Err(desc.to_string());
        }
    }

    /// Asks QEMU to open `path` read-only as a block node named `node`.
    fn open(&mut self, node: &str, path: &Path) -> Result<Value, String> {
        self.execute(
            "blockdev-add",
            json!({
                "driver": "file",
                "node-name": node,
                "filename": path.display().to_string(),
                "read-only": true,
                "locking": "off",
            }),
        )
    }
}

fn field(vm: &Value, key: &str) -> String {
    vm[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {vm}"))
        .to_string()
}

/// The VMM's `NoNewPrivs:` line from `/proc/<pid>/status`.
fn no_new_privs(pid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|line| line.starts_with("NoNewPrivs:"))
        .unwrap_or_default()
        .to_string()
}

/// What a VM's QEMU may open and what it may not, asked of QEMU itself.
fn assert_confined(host: &TestHost, vm: &Value, own: &[PathBuf], foreign: &[PathBuf]) {
    let name = field(vm, "name");
    let pid = vm["pid"].as_u64().expect("a running VM has a pid");
    assert_eq!(no_new_privs(pid), "NoNewPrivs:\t1", "{name}'s VMM");
    let run_dir = host.runtime_dir().join("vms").join(field(vm, "id"));
    let mut qmp = Qmp::connect(&run_dir.join("qmp.sock"));
    for (index, path) in own.iter().enumerate() {
        qmp.open(&format!("own{index}"), path)
            .unwrap_or_else(|error| panic!("{name} opens its own {}: {error}", path.display()));
    }
    for (index, path) in foreign.iter().enumerate() {
        // The owner (this test) reads it; the VMM running as the owner may not.
        assert!(std::fs::File::open(path).is_ok(), "{}", path.display());
        let refused = qmp
            .open(&format!("foreign{index}"), path)
            .expect_err(&format!("{name}'s QEMU opened {}", path.display()));
        assert!(
            refused.contains("Permission denied"),
            "{name}, {}: {refused}",
            path.display()
        );
    }
}

#[test]
fn the_vmm_reaches_its_own_files_and_nothing_else() {
    require_vm!();
    if !host_has_landlock() {
        banger_e2e::banger_requires::skip!(
            "this kernel has no Landlock (not built or not in lsm=)"
        );
    }
    let host = TestHost::start().unwrap();
    let source = host.create_vm("conf", &["--image", "tiny"]);
    let source_dir = PathBuf::from(field(&source, "dir"));
    let log = host.daemon_log();
    assert!(
        log.contains("landlock ABI"),
        "the daemon log says how the VMM is confined: {}",
        banger_e2e::tail(&log, 20)
    );

    // A directory shaped like another VM's, with a file the owner can read.
    let other_dir = host.state_dir().join("vms").join("00000000000000ff");
    std::fs::create_dir_all(&other_dir).unwrap();
    let planted = other_dir.join("root.ext4");
    std::fs::write(&planted, b"another VM's disk").unwrap();
    let database = host.state_dir().join("banger.db");
    assert_confined(
        &host,
        &source,
        &[source_dir.join("root.ext4"), source_dir.join("serial.log")],
        &[planted.clone(), database.clone()],
    );

    // A fork: a QEMU restored from the snapshot's files, confined to them and its own.
    let forks = host.banger_json(&["vm", "fork", "conf", "--name", "conf-fork"]);
    let fork = forks
        .as_array()
        .and_then(|forks| forks.first())
        .cloned()
        .unwrap_or_else(|| panic!("one fork: {forks}"));
    assert_eq!(host.exec_ok("conf-fork", &["hostname"]).trim(), "conf-fork");
    let fork = host.vm_show(&field(&fork, "name"));
    let fork_dir = PathBuf::from(field(&fork, "dir"));
    let snapshots = host.banger_json(&["vm", "snapshot", "list"]);
    let snapshot_dir = PathBuf::from(field(&snapshots[0], "dir"));
    assert_confined(
        &host,
        &fork,
        &[fork_dir.join("root.ext4"), snapshot_dir.join("state")],
        &[
            source_dir.join("root.ext4"),
            planted.clone(),
            database.clone(),
        ],
    );
    // And the source may not open its fork's disk (nor the snapshot's copy of its own).
    let source = host.vm_show("conf");
    assert_confined(
        &host,
        &source,
        &[],
        &[fork_dir.join("root.ext4"), snapshot_dir.join("disk.ext4")],
    );
    host.banger_ok(&["vm", "delete", "--force", "conf-fork"]);
    host.banger_ok(&["vm", "delete", "--force", "conf"]);
}

/// Whether the kernel runs Landlock: it is in the list of active security modules.
fn host_has_landlock() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|lsms| lsms.trim().split(',').any(|lsm| lsm == "landlock"))
}
