//! The `--json` record of `vm stats`: always an array, one element a VM (with `--watch`,
//! one array line per refresh).

use banger_api::types::{VmState, VmStats};
use serde::Serialize;

/// One VM's resource use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsJson {
    pub name: String,
    pub state: VmState,
    /// Resident set size of the VMM process; `null` when not running.
    pub vmm_rss_bytes: Option<u64>,
    /// User + system CPU time of the VMM process; `null` when not running.
    pub vmm_cpu_secs: Option<f64>,
    /// CPU use since the previous `--watch` refresh, percent of one host CPU; `null`
    /// without `--watch`, on the first refresh, or when unknown.
    pub cpu_percent: Option<f64>,
    pub disk_allocated_bytes: u64,
    pub disk_size_bytes: u64,
}

impl StatsJson {
    pub fn new(vm: &VmStats, cpu_percent: Option<f64>) -> StatsJson {
        StatsJson {
            name: vm.name.clone(),
            state: vm.state,
            vmm_rss_bytes: vm.vmm_rss_bytes,
            vmm_cpu_secs: vm.vmm_cpu_ms.map(|ms| ms as f64 / 1000.0),
            cpu_percent,
            disk_allocated_bytes: vm.disk_allocated_bytes,
            disk_size_bytes: vm.disk_size_bytes,
        }
    }
}

/// A reading of several VMs, with the CPU use of each when `--watch` measured it.
pub fn stats(sample: &[VmStats], cpu: Option<&[Option<f64>]>) -> Vec<StatsJson> {
    sample
        .iter()
        .enumerate()
        .map(|(index, vm)| StatsJson::new(vm, cpu.and_then(|c| c.get(index).copied().flatten())))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(name: &str, cpu_ms: Option<u64>) -> VmStats {
        VmStats {
            name: name.into(),
            state: if cpu_ms.is_some() {
                VmState::Running
            } else {
                VmState::Stopped
            },
            vmm_rss_bytes: cpu_ms.map(|_| 180 << 20),
            vmm_cpu_ms: cpu_ms,
            disk_allocated_bytes: 300 << 20,
            disk_size_bytes: 4 << 30,
        }
    }

    /// CPU time in seconds; a stopped VM has `null`s, not missing keys.
    #[test]
    fn stats_are_an_array_in_seconds_and_bytes() {
        let sample = [sample("web", Some(12_345)), sample("db", None)];
        insta::assert_json_snapshot!(stats(&sample, None));
        insta::assert_json_snapshot!("watching", stats(&sample, Some(&[Some(12.5), None])));
    }
}
