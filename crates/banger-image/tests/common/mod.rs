//! Shared pieces of the integration tests: a progress recorder, host-tool checks that
//! turn a missing requirement into a printed skip, and debugfs/e2fsck wrappers.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use banger_exec::{Cmd, run};
use banger_model::progress::ProgressSink;

/// Records `started`/`done` events in order, and how long each stage took.
#[derive(Debug)]
pub struct RecordingProgress {
    pub events: Mutex<Vec<String>>,
    pub timings: Mutex<Vec<(String, f64)>>,
    last_start: Mutex<Instant>,
}

impl Default for RecordingProgress {
    fn default() -> Self {
        RecordingProgress {
            events: Mutex::default(),
            timings: Mutex::default(),
            last_start: Mutex::new(Instant::now()),
        }
    }
}

impl ProgressSink for RecordingProgress {
    fn stage_started(&self, stage: &str) {
        *self.last_start.lock().unwrap() = Instant::now();
        self.events.lock().unwrap().push(format!("start {stage}"));
    }
    fn stage_done(&self, stage: &str, detail: Option<&str>) {
        let seconds = self.last_start.lock().unwrap().elapsed().as_secs_f64();
        self.timings
            .lock()
            .unwrap()
            .push((stage.to_string(), seconds));
        let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
        self.events
            .lock()
            .unwrap()
            .push(format!("done {stage}{detail}"));
    }
}

impl RecordingProgress {
    /// `stage 1.2s, stage 0.3s` for the report.
    pub fn timing_summary(&self) -> String {
        self.timings
            .lock()
            .unwrap()
            .iter()
            .map(|(stage, s)| format!("{stage} {s:.2}s"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn stages_done(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.strip_prefix("done "))
            .map(|e| e.split(" (").next().unwrap_or(e).to_string())
            .collect()
    }
}

/// `debugfs -R REQUEST IMAGE` output (debugfs exits 0 even when the request fails, so
/// callers check the text).
pub async fn debugfs(image: &Path, request: &str) -> String {
    let out = run(&Cmd::new("debugfs").arg("-R").arg(request).arg(image))
        .await
        .unwrap();
    out.stdout_text()
}

/// `(uid, gid, mode)` of a path in the image, from `debugfs stat`.
pub async fn owner_and_mode(image: &Path, path: &str) -> (u32, u32, u32) {
    let text = debugfs(image, &format!("stat {path}")).await;
    let number_after = |label: &str| -> u32 {
        let rest = text
            .split(label)
            .nth(1)
            .unwrap_or_else(|| panic!("no {label} in stat {path}:\n{text}"));
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let mode_text = text
        .split("Mode:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let mode = u32::from_str_radix(mode_text.trim_start_matches('0'), 8).unwrap_or(0);
    (number_after("User:"), number_after("Group:"), mode)
}

/// Runs `e2fsck -fn` and panics with its output when the filesystem is not clean.
pub async fn assert_fsck_clean(image: &Path) {
    if let Err(error) = run(&Cmd::new("e2fsck").args(["-fn"]).arg(image)).await {
        panic!("e2fsck -fn {}: {error}", image.display());
    }
}

/// Apparent and allocated bytes of a file.
pub fn sizes(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::metadata(path).unwrap();
    (meta.len(), meta.blocks() * 512)
}
