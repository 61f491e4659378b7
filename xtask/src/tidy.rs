//! Tidy checks: conventions that keep the tree navigable and the layering honest.
//!
//! 1. Every Rust source file opens with a `//!` paragraph saying what it owns.
//! 2. Crates depend only on the crates their layer allows (ARCHITECTURE.md, "Layers").
//! 3. `unsafe` appears only in `banger-sys`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Which of our crates each crate may depend on (normal dependencies, not dev).
const LAYERS: &[(&str, &[&str])] = &[
    ("banger-model", &[]),
    ("banger-exec", &[]),
    ("banger-sys", &[]),
    ("banger-api", &["banger-model"]),
    ("banger-proto", &["banger-model"]),
    ("banger-store", &["banger-model"]),
    (
        "banger-doctor",
        &["banger-model", "banger-sys", "banger-exec"],
    ),
    (
        "banger-vmm",
        &["banger-model", "banger-sys", "banger-exec", "banger-proto"],
    ),
    (
        "banger-image",
        &["banger-model", "banger-sys", "banger-exec"],
    ),
    (
        "banger-net",
        &["banger-model", "banger-sys", "banger-exec", "banger-proto"],
    ),
    ("banger-dns", &["banger-model"]),
    ("banger-ssh", &["banger-model", "banger-exec"]),
    ("banger-workspace", &["banger-model", "banger-exec"]),
    (
        "banger-vm",
        &[
            "banger-model",
            "banger-store",
            "banger-vmm",
            "banger-image",
            "banger-net",
            "banger-proto",
            "banger-sys",
            "banger-exec",
            "banger-dns",
            "banger-ssh",
            "banger-workspace",
        ],
    ),
    // The CLI talks to the daemon only; doctor's host checks run locally so that `banger
    // doctor` works while the daemon is down (documented in ARCHITECTURE.md); banger-ssh
    // gives it the ssh argv and config block; banger-workspace lets it refuse a bad PATH
    // before any VM exists and list a workspace (`--dry-run`) with no daemon.
    (
        "banger",
        &[
            "banger-api",
            "banger-model",
            "banger-doctor",
            "banger-ssh",
            "banger-workspace",
        ],
    ),
    ("banger-helper", &["banger-proto", "banger-sys"]),
    ("banger-agent", &["banger-proto", "banger-sys"]),
];

pub fn run(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    check_headers(root, &mut problems)?;
    check_layers(root, &mut problems)?;
    check_unsafe(root, &mut problems)?;
    if problems.is_empty() {
        eprintln!("xtask: tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" || name == "fixtures" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn check_headers(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files)?;
    rust_files(&root.join("xtask"), &mut files)?;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!(
                "{}: must start with a `//!` paragraph saying what the file owns",
                file.strip_prefix(root).unwrap_or(&file).display()
            ));
        }
    }
    Ok(())
}

/// Names of our crates listed under `[dependencies]` (not dev/build) of a manifest.
fn internal_deps(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
        if name.starts_with("banger") {
            deps.push(name.to_string());
        }
    }
    deps
}

fn check_layers(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(root.join("crates"))? {
        let entry = entry?;
        let krate = entry.file_name().to_string_lossy().into_owned();
        let manifest = entry.path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == krate) else {
            // Binaries at the top (bangerd) and the e2e harness may use any library.
            if krate == "bangerd" || krate == "banger-e2e" {
                continue;
            }
            problems.push(format!(
                "crates/{krate}: not in xtask's layer table; add it"
            ));
            continue;
        };
        for dep in internal_deps(&std::fs::read_to_string(&manifest)?) {
            if !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "crates/{krate} depends on {dep}, which its layer forbids"
                ));
            }
        }
    }
    Ok(())
}

fn check_unsafe(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files)?;
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        if rel.starts_with("crates/banger-sys") {
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        if text.lines().any(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("unsafe {") || code.contains("unsafe fn") || code.contains("unsafe impl")
        }) {
            problems.push(format!("{}: `unsafe` belongs in banger-sys", rel.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_deps_reads_only_normal_dependencies() {
        let manifest = "[package]\nname = \"x\"\n[dependencies]\nbanger-model.workspace = true\nserde = \"1\"\nbanger-api = { path = \"../a\" }\n[dev-dependencies]\nbanger-store.workspace = true\n";
        assert_eq!(internal_deps(manifest), vec!["banger-model", "banger-api"]);
    }
}
