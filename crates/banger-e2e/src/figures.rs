//! [`Figures`]: the counts a reliability test on real guests measured, one JSON file per
//! test under `target/reliability/guests/`, which `cargo xtask reliability` reads into
//! RELIABILITY.md (rows and detail tables). A test writes its file before it asserts, so
//! a failing run still records what was mishandled.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::target_dir;

/// The command that runs the tests writing these files (shown in RELIABILITY.md).
const COMMAND: &str = "flock /work/.vm.lock cargo nextest run --profile vm -p banger-e2e -E 'binary(reliability_guests)'";

/// Where the guest tests write their figure files: `target/reliability/guests`.
pub fn figures_dir() -> PathBuf {
    target_dir().join("reliability/guests")
}

/// One test's cases: each tried, with its outcome and what it left behind.
#[derive(Debug)]
pub struct Figures {
    name: String,
    title: String,
    cases: Vec<Value>,
}

impl Figures {
    /// Figures of the test `name` (the file is `<name>.json`), shown under `title`.
    pub fn new(name: &str, title: &str) -> Figures {
        Figures {
            name: name.to_string(),
            title: title.to_string(),
            cases: Vec::new(),
        }
    }

    /// Records a case: `handled` when its outcome is one of the consistent ones and
    /// nothing was left behind; `orphans` names each kind left and its count.
    pub fn case(&mut self, case: &str, outcome: &str, handled: bool, orphans: Value) {
        self.cases.push(json!({
            "case": case,
            "outcome": outcome,
            "handled": handled,
            "orphans": orphans,
        }));
    }

    /// The cases not handled.
    pub fn mishandled(&self) -> Vec<&Value> {
        self.cases.iter().filter(|c| c["handled"] != true).collect()
    }

    /// Writes `<figures_dir>/<name>.json`.
    pub fn write(&self) {
        let handled = self.cases.iter().filter(|c| c["handled"] == true).count();
        let written = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let doc = json!({
            "test": self.name,
            "title": self.title,
            "command": COMMAND,
            "written_unix": written,
            "tried": self.cases.len(),
            "handled": handled,
            "mishandled": self.cases.len() - handled,
            "cases": self.cases,
        });
        let dir = figures_dir();
        let path = dir.join(format!("{}.json", self.name));
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default())
        });
        if let Err(e) = written {
            crate::note(&format!("cannot write {}: {e}", path.display()));
        }
    }
}
