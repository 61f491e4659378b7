//! The `--json` records of `vm workspace export`, `vm workspace apply` and the
//! `--dry-run` of `vm workspace prepare` and `vm run` (`workspace prepare` itself prints
//! the VM record).

use banger_api::methods::{ChangedFile, ExportFormat, WorkspaceApplyOutput, WorkspaceExportOutput};
use serde::Serialize;

/// What `vm workspace export` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportJson {
    pub base: String,
    pub guest_path: String,
    pub format: ExportFormat,
    pub patch_bytes: u64,
    pub files: Vec<ChangedFileJson>,
}

/// What `vm workspace apply` applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyJson {
    pub repo: String,
    pub base: String,
    pub files: Vec<ChangedFileJson>,
}

/// One changed file of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFileJson {
    pub status: String,
    pub path: String,
    /// The path before a rename or copy; `null` otherwise.
    pub old_path: Option<String>,
    /// The new file mode when it changed; `null` otherwise.
    pub mode: Option<String>,
    pub binary: bool,
}

impl From<&WorkspaceExportOutput> for ExportJson {
    fn from(e: &WorkspaceExportOutput) -> ExportJson {
        ExportJson {
            base: e.base.clone(),
            guest_path: e.guest_path.clone(),
            format: e.format,
            patch_bytes: e.bytes,
            files: super::all(&e.files),
        }
    }
}

impl From<&WorkspaceApplyOutput> for ApplyJson {
    fn from(a: &WorkspaceApplyOutput) -> ApplyJson {
        ApplyJson {
            repo: a.repo.clone(),
            base: a.base.clone(),
            files: super::all(&a.files),
        }
    }
}

impl From<&ChangedFile> for ChangedFileJson {
    fn from(f: &ChangedFile) -> ChangedFileJson {
        ChangedFileJson {
            status: f.status.clone(),
            path: f.path.clone(),
            old_path: f.old_path.clone(),
            mode: f.mode.clone(),
            binary: f.binary,
        }
    }
}

/// What `--dry-run` would copy into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunJson {
    pub root: String,
    pub subdir: String,
    pub guest_path: String,
    pub guest_cwd: String,
    pub mode: String,
    pub include_untracked: bool,
    /// The host's `HEAD`; `null` for a repository with no commits.
    pub head: Option<String>,
    pub entries: u64,
    pub content_bytes: u64,
    pub skipped_untracked: u64,
    /// The entries, one path each, hostile names quoted.
    pub files: Vec<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn files() -> Vec<ChangedFile> {
        vec![
            ChangedFile {
                status: "modified".into(),
                path: "src/main.rs".into(),
                old_path: None,
                mode: None,
                binary: false,
            },
            ChangedFile {
                status: "renamed".into(),
                path: "b.png".into(),
                old_path: Some("a.png".into()),
                mode: Some("100755".into()),
                binary: true,
            },
        ]
    }

    pub(crate) fn export() -> WorkspaceExportOutput {
        WorkspaceExportOutput {
            base: "1a2b3c4d".into(),
            guest_path: "/root/repo".into(),
            format: ExportFormat::Diff,
            bytes: 512,
            files: files(),
        }
    }

    pub(crate) fn apply() -> WorkspaceApplyOutput {
        WorkspaceApplyOutput {
            repo: "/src/repo".into(),
            base: "1a2b3c4d".into(),
            files: files(),
        }
    }

    pub(crate) fn dry_run() -> DryRunJson {
        DryRunJson {
            root: "/src/repo".into(),
            subdir: String::new(),
            guest_path: "/root/repo".into(),
            guest_cwd: "/root/repo".into(),
            mode: "overlay".into(),
            include_untracked: false,
            head: None,
            entries: 1,
            content_bytes: 12,
            skipped_untracked: 0,
            files: vec!["README.md".into()],
        }
    }

    /// Unchanged modes and plain paths are `null`, not missing keys.
    #[test]
    fn export_and_apply() {
        insta::assert_json_snapshot!("export", ExportJson::from(&export()));
        insta::assert_json_snapshot!("apply", ApplyJson::from(&apply()));
        insta::assert_json_snapshot!("dry_run", dry_run());
    }
}
