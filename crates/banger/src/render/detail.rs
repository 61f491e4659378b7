//! Detail views: one record as aligned `key: value` lines (`vm show`, `vm stats`,
//! `image show`, `kernel show`, `health`). Optional fields the record lacks are left out
//! rather than printed empty.

use banger_api::types::{Health, ImageInfo, KernelInfo, VmInfo, VmStats};

use crate::render::{age, bytes, mib, table};

/// Aligns `key: value` pairs; pairs with no value are skipped.
pub fn pairs(items: &[(&str, Option<String>)]) -> String {
    let width = items
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in items {
        if let Some(value) = value {
            text.push_str(&format!(
                "{:<width$}  {value}\n",
                format!("{key}:"),
                width = width + 1
            ));
        }
    }
    text
}

/// `vm show`.
pub fn vm(vm: &VmInfo, now: jiff::Timestamp) -> String {
    let driver = match &vm.accelerator {
        Some(accel) => format!("{} ({accel})", vm.driver),
        None => vm.driver.clone(),
    };
    let workspace = vm.workspace.as_ref().map(|w| {
        let commit: String = match w.base_commit.as_str() {
            "" => "no commits".to_string(),
            full => full.chars().take(12).collect(),
        };
        let mut details = vec![format!("base {commit}")];
        for (value, label) in [(&w.mode, ""), (&w.delivery, "as a ")] {
            if !value.is_empty() {
                details.push(format!("{label}{value}"));
            }
        }
        if w.include_untracked {
            details.push("untracked included".into());
        }
        if w.files > 0 {
            details.push(format!(
                "{} entries, {}",
                w.files,
                mib(w.bytes.div_ceil(1 << 20))
            ));
        }
        if !w.prepared_at.is_empty() {
            details.push(format!("prepared {}", w.prepared_at));
        }
        format!("{} at {} ({})", w.source, w.guest_path, details.join(", "))
    });
    pairs(&[
        ("name", Some(vm.name.clone())),
        ("id", Some(vm.id.clone())),
        ("state", Some(vm.state.to_string())),
        ("last error", vm.last_error.clone()),
        ("image", Some(vm.image.clone())),
        ("kernel", Some(vm.kernel.clone())),
        ("vcpus", Some(vm.vcpus.to_string())),
        ("memory", Some(mib(vm.memory_mib))),
        ("disk", Some(mib(vm.disk_mib))),
        ("nat", Some(yes_no(vm.nat))),
        (
            "policy",
            vm.policy.as_ref().map(|rules| {
                if rules.is_empty() {
                    "deny all".to_string()
                } else {
                    format!("allow {}", rules.join(", "))
                }
            }),
        ),
        (
            "denied",
            vm.policy_dropped_packets.map(|packets| {
                format!(
                    "{packets} packets to {} destinations (`banger vm logs --policy {}`)",
                    vm.policy_denied_destinations.unwrap_or(0),
                    vm.name
                )
            }),
        ),
        ("driver", Some(driver)),
        ("address", vm.address.clone()),
        ("pid", vm.pid.map(|p| p.to_string())),
        ("boot id", vm.boot_id.clone()),
        ("started from", vm.started_from.clone()),
        (
            "forked from",
            vm.forked_from.as_ref().map(|origin| {
                if origin.shares_boot_id {
                    format!(
                        "snapshot {} of {} (restored: boot id shared with the snapshot until a cold boot)",
                        origin.snapshot, origin.source_vm
                    )
                } else {
                    format!("snapshot {} of {}", origin.snapshot, origin.source_vm)
                }
            }),
        ),
        ("workspace", workspace),
        (
            "created",
            Some(format!("{} ({})", vm.created_at, age(&vm.created_at, now))),
        ),
        (
            "started",
            vm.started_at
                .as_ref()
                .map(|t| format!("{t} ({})", age(t, now))),
        ),
        ("dir", vm.dir.clone()),
    ])
}

/// `vm stats`.
pub fn stats(stats: &VmStats) -> String {
    pairs(&[
        ("name", Some(stats.name.clone())),
        ("state", Some(stats.state.to_string())),
        (
            "vmm memory (rss)",
            stats.vmm_rss_bytes.map(super::approx_bytes),
        ),
        (
            "vmm cpu time",
            stats
                .vmm_cpu_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0)),
        ),
        (
            "disk",
            Some(format!(
                "{} used of {}",
                super::approx_bytes(stats.disk_allocated_bytes),
                bytes(stats.disk_size_bytes)
            )),
        ),
    ])
}

/// `image show`.
pub fn image(image: &ImageInfo, now: jiff::Timestamp) -> String {
    pairs(&[
        ("name", Some(image.name.clone())),
        ("source", Some(table::source_name(image.source).to_string())),
        (
            "origin",
            (!image.origin.is_empty()).then(|| image.origin.clone()),
        ),
        ("kernel", Some(image.kernel.clone())),
        ("init", (!image.init.is_empty()).then(|| image.init.clone())),
        ("size", Some(bytes(image.size_bytes))),
        ("on disk", Some(super::approx_bytes(image.disk_bytes))),
        ("digest", Some(image.digest.clone())),
        ("path", Some(image.path.clone())),
        (
            "used by",
            Some(if image.used_by.is_empty() {
                "no VM".to_string()
            } else {
                image.used_by.join(", ")
            }),
        ),
        (
            "created",
            Some(format!(
                "{} ({})",
                image.created_at,
                age(&image.created_at, now)
            )),
        ),
    ])
}

/// `kernel show`.
pub fn kernel(kernel: &KernelInfo, now: jiff::Timestamp) -> String {
    pairs(&[
        ("name", Some(kernel.name.clone())),
        ("version", Some(kernel.version.clone())),
        ("size", Some(bytes(kernel.size_bytes))),
        ("vmlinux", Some(kernel.vmlinux.clone())),
        ("initramfs", Some(kernel.initramfs.clone())),
        (
            "used by",
            Some(if kernel.used_by.is_empty() {
                "nothing".to_string()
            } else {
                kernel.used_by.join(", ")
            }),
        ),
        (
            "created",
            Some(format!(
                "{} ({})",
                kernel.created_at,
                age(&kernel.created_at, now)
            )),
        ),
    ])
}

/// `health`.
pub fn health(health: &Health) -> String {
    let store = if health.store.ok {
        format!(
            "ok, schema {} ({})",
            health.store.schema_version, health.store.path
        )
    } else {
        format!(
            "FAILING: {} ({})",
            health.store.error.as_deref().unwrap_or("unknown error"),
            health.store.path
        )
    };
    let vms = if health.vms.is_empty() {
        "none".to_string()
    } else {
        health
            .vms
            .iter()
            .map(|(state, count)| format!("{count} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = pairs(&[
        ("daemon", Some(format!("bangerd {}", health.daemon_version))),
        ("protocol", Some(health.protocol.to_string())),
        ("pid", Some(health.pid.to_string())),
        ("uptime", Some(format!("{}s", health.uptime_secs))),
        ("store", Some(store)),
        ("accelerator", Some(health.accelerator.clone())),
        ("vms", Some(vms)),
    ]);
    if !health.drivers.is_empty() {
        text.push('\n');
        let rows = health
            .drivers
            .iter()
            .map(|d| vec![d.name.clone(), yes_no(d.available), d.detail.clone()])
            .collect();
        text.push_str(&table::grid(&["DRIVER", "AVAILABLE", "DETAIL"], rows));
    }
    text
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}
