//! `vm set` on a real guest: new vCPUs, memory and a grown disk are what the guest sees
//! after the next start; shrinking the disk and changing a running VM are refused.

use banger_e2e::{TestHost, exit_code, require_vm, text};

const VM: &str = "sized";
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `MemTotal` of the guest, bytes.
fn guest_mem_total(host: &TestHost) -> u64 {
    let meminfo = host.exec_ok(VM, &["cat", "/proc/meminfo"]);
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {meminfo}"));
    kib * 1024
}

/// Size of the guest's root block device, bytes (sectors of 512 bytes in sysfs).
fn guest_disk_bytes(host: &TestHost) -> u64 {
    let sectors = host.exec_ok(VM, &["cat", "/sys/block/vda/size"]);
    sectors.trim().parse::<u64>().unwrap() * 512
}

/// Total size of the root filesystem as `df` reports it, bytes.
fn guest_fs_bytes(host: &TestHost) -> u64 {
    let df = host.exec_ok(VM, &["df", "-k", "/"]);
    let kib: u64 = df
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read df output: {df}"));
    kib * 1024
}

fn nproc(host: &TestHost) -> u32 {
    host.exec_ok(VM, &["nproc"]).trim().parse().unwrap()
}

#[test]
fn set_changes_what_the_guest_sees() {
    require_vm!();
    // 2 vCPUs need 2 host cores.
    require_vm!(Cores(2));
    let host = TestHost::start().unwrap();
    host.create_vm(
        VM,
        &["--image", "tiny", "--vcpu", "1", "--memory", "256MiB"],
    );
    assert_eq!(nproc(&host), 1);
    let mem = guest_mem_total(&host);
    assert!(
        (200 * MIB..=256 * MIB).contains(&mem),
        "MemTotal {mem} for 256MiB"
    );
    assert_eq!(guest_disk_bytes(&host), 4 * GIB, "default disk");

    // A running VM cannot be changed.
    let refused = host.banger(&["vm", "set", VM, "--vcpu", "2"]);
    assert_eq!(exit_code(&refused), Some(1), "{}", text(&refused.stderr));
    let message = text(&refused.stderr);
    assert!(
        message.contains("running") && message.contains("stop"),
        "the refusal says the VM runs and must be stopped: {message}"
    );
    assert_eq!(host.vm_show(VM)["vcpus"], 1, "nothing changed");

    host.banger_ok(&["vm", "stop", VM]);
    let changed = host.banger_json(&[
        "vm", "set", VM, "--vcpu", "2", "--memory", "384MiB", "--disk", "5GiB",
    ]);
    assert_eq!(changed["vcpus"], 2, "{changed}");
    assert_eq!(changed["memory_bytes"], 384 * MIB, "{changed}");
    assert_eq!(changed["disk_bytes"], 5 * 1024 * MIB, "{changed}");

    // The disk only grows.
    let shrink = host.banger(&["vm", "set", VM, "--disk", "4GiB"]);
    assert_eq!(exit_code(&shrink), Some(1), "{}", text(&shrink.stderr));
    assert!(
        text(&shrink.stderr).contains("only grow"),
        "{}",
        text(&shrink.stderr)
    );
    assert_eq!(host.vm_show(VM)["disk_bytes"], 5 * 1024 * MIB, "unchanged");

    host.banger_ok(&["vm", "start", VM]);
    assert_eq!(nproc(&host), 2);
    let mem = guest_mem_total(&host);
    assert!(
        (320 * MIB..=384 * MIB).contains(&mem),
        "MemTotal {mem} for 384MiB"
    );
    assert_eq!(guest_disk_bytes(&host), 5 * GIB, "block device grew");
    let fs = guest_fs_bytes(&host);
    assert!(
        fs > 4 * GIB + GIB * 3 / 4 && fs <= 5 * GIB,
        "the filesystem was grown with the disk: df says {fs} bytes"
    );
    // `vm stats --json` is an array, also for one VM.
    let stats = &host.banger_json(&["vm", "stats", VM])[0];
    assert_eq!(stats["disk_size_bytes"].as_u64(), Some(5 * GIB), "{stats}");
}
