//! Tidy checks: conventions that keep the tree navigable and the layering honest.
//!
//! 1. Every Rust source file opens with a `//!` paragraph saying what it owns.
//! 2. Crates depend only on the crates their layer allows, and ARCHITECTURE.md shows that
//!    table (`layers.rs`, from `cargo metadata`).
//! 3. `unsafe` appears only in `banger-sys`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

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

fn check_layers(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    problems.extend(crate::layers::check(root)?);
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
