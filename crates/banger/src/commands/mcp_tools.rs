//! The tools `banger mcp` offers: each one's name, description, JSON Schema for its
//! input and for its structured result, its annotations, and what it needs from the
//! session's policy. `tools/list` shows only the tools the profile allows.

use banger_mcp::policy::{Access, Policy};
use banger_mcp::protocol::{Annotations, Tool};
use serde_json::{Value, json};

/// The largest content `file_write` takes (decoded). It travels base64 in one argv
/// entry, which Linux caps at 128 KiB.
pub const FILE_WRITE_MAX: usize = 64 * 1024;
/// `workspace_export` returns at least this much patch, whatever `--max-output` says.
pub const EXPORT_PATCH_MIN_CAP: usize = 1024 * 1024;
/// The default and largest `max_bytes` of `file_read`.
pub const FILE_READ_DEFAULT: u64 = 256 * 1024;
pub const FILE_READ_MAX: u64 = 4 * 1024 * 1024;
/// Command timeouts: the default and the largest accepted.
pub const TIMEOUT_DEFAULT_SECS: u64 = 600;
pub const TIMEOUT_MAX_SECS: u64 = 3600;
/// The most forks one `vm_fork` makes (the daemon's limit too).
pub const FORK_MAX: u32 = 64;
/// The most `allow` rules one call takes (a policy's limit too).
pub const ALLOW_MAX: usize = 256;

const READ: Annotations = Annotations {
    read_only_hint: true,
    destructive_hint: false,
    idempotent_hint: true,
    open_world_hint: false,
};
const WRITE: Annotations = Annotations {
    read_only_hint: false,
    destructive_hint: false,
    idempotent_hint: false,
    open_world_hint: false,
};
const DESTROY: Annotations = Annotations {
    read_only_hint: false,
    destructive_hint: true,
    idempotent_hint: true,
    open_world_hint: false,
};

fn vm_prop() -> Value {
    json!({"type": "string", "minLength": 1,
           "description": "VM name, unique name prefix, or id prefix"})
}

fn argv_prop() -> Value {
    json!({"type": "array", "items": {"type": "string"}, "minItems": 1,
           "description": "Command and arguments, run without a shell (use [\"sh\", \"-c\", \"...\"] for pipes)"})
}

fn env_prop() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"},
           "description": "Environment variables for the command"})
}

fn timeout_prop() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": TIMEOUT_MAX_SECS,
           "description": format!("Seconds before the command is stopped (default {TIMEOUT_DEFAULT_SECS})")})
}

fn exec_output(extra: Value) -> Value {
    let mut properties = json!({
        "exit_code": {"type": ["integer", "null"], "description": "null when the command timed out"},
        "timed_out": {"type": "boolean"},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
        "stdout_bytes": {"type": "integer", "description": "the stream's full length"},
        "stderr_bytes": {"type": "integer"},
        "max_output_bytes": {"type": "integer", "description": "the cap on each stream (--max-output)"},
    });
    if let (Some(map), Value::Object(extra)) = (properties.as_object_mut(), extra) {
        map.extend(extra);
    }
    json!({"type": "object", "properties": properties,
           "required": ["exit_code", "timed_out", "stdout", "stderr", "stdout_truncated",
                        "stderr_truncated", "max_output_bytes"]})
}

/// `allow` and `deny_all`: the VM's network policy (egress allow-list).
fn policy_props() -> Value {
    json!({
        "allow": {"type": "array", "maxItems": ALLOW_MAX,
                  "items": {"type": "string", "minLength": 1, "maxLength": 300},
                  "description": "Network allow-list: the VM may reach only these destinations, everything else is dropped on the host (implies NAT). Each is HOST[:PORT]: a DNS name (example.com), a wildcard (*.example.com: any name below it), an IPv4 address or CIDR (10.0.0.0/8); without :PORT every port. Names resolve only through banger's resolver, which answers allowed names alone."},
        "deny_all": {"type": "boolean",
                     "description": "The VM reaches nothing at all (no DNS either). Not with allow or nat."},
    })
}

fn vm_output() -> Value {
    json!({"type": "object", "properties": {
        "name": {"type": "string"}, "id": {"type": "string"}, "state": {"type": "string"},
        "image": {"type": "string"}, "address": {"type": ["string", "null"]},
        "nat": {"type": "boolean"}, "created_by_this_session": {"type": "boolean"},
        "policy": {"type": ["array", "null"], "items": {"type": "string"},
                   "description": "the network allow-list ([] denies everything); null without a policy"},
        "forked_from": {"type": ["string", "null"], "description": "the snapshot a fork was restored from"},
        "workspace": {"type": ["object", "null"]}
    }, "required": ["name", "state"]})
}

fn repo_props() -> Value {
    json!({
        "repo": {"type": "string", "minLength": 1,
                 "description": "Absolute host path of a git repository (or a directory in one) to copy in; must be under an --allow-repo directory"},
        "guest_path": {"type": "string", "description": "Where the copy goes in the guest (default /root/repo)"},
        "include_untracked": {"type": "boolean", "description": "Also copy untracked files (ignored files never)"},
    })
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required,
           "additionalProperties": false})
}

fn merged(a: Value, b: Value) -> Value {
    let mut a = a;
    if let (Some(map), Value::Object(b)) = (a.as_object_mut(), b) {
        map.extend(b);
    }
    a
}

/// Every tool and the access it needs.
pub fn all() -> Vec<(Tool, Access)> {
    vec![
        (
            Tool {
                name: "vm_run",
                title: "Run a command in a fresh VM",
                description: "Create a microVM, optionally copy a git repository in (the command then runs in the copy), run one command and return its exit code and output. The VM is deleted afterwards unless keep is true.",
                input_schema: object(
                    merged(
                        json!({
                            "argv": argv_prop(),
                            "image": {"type": "string", "description": "Image to boot (default: the catalog's default)"},
                            "env": env_prop(),
                            "timeout_secs": timeout_prop(),
                            "nat": {"type": "boolean", "description": "Outbound network through NAT"},
                            "keep": {"type": "boolean", "description": "Keep the VM afterwards (its name is returned)"},
                        }),
                        merged(repo_props(), policy_props()),
                    ),
                    &["argv"],
                ),
                output_schema: exec_output(json!({
                    "vm": {"type": ["string", "null"], "description": "the VM's name when kept"},
                    "guest_cwd": {"type": ["string", "null"]},
                })),
                annotations: WRITE,
            },
            Access::Create,
        ),
        (
            Tool {
                name: "vm_create",
                title: "Create a VM",
                description: "Create and boot a microVM that stays running for vm_exec, file_read and file_write; optionally with a git repository copied in as a disk.",
                input_schema: object(
                    merged(
                        json!({
                            "name": {"type": "string", "description": "Name (generated when absent)"},
                            "image": {"type": "string"},
                            "vcpus": {"type": "integer", "minimum": 1},
                            "memory_mib": {"type": "integer", "minimum": 64},
                            "nat": {"type": "boolean"},
                        }),
                        merged(repo_props(), policy_props()),
                    ),
                    &[],
                ),
                output_schema: vm_output(),
                annotations: WRITE,
            },
            Access::Create,
        ),
        (
            Tool {
                name: "vm_fork",
                title: "Fork a running VM",
                description: "Make new VMs that resume where a running VM (or a snapshot) was saved, in about a second each instead of a boot: same files, processes and memory, each with its own name, address and disk. A running VM is saved first (paused briefly) and its snapshot named in the result, so it can be forked again. Forks keep the source's network policy.",
                input_schema: object(
                    json!({"source": {"type": "string", "minLength": 1,
                                      "description": "A running VM this session may use, or a snapshot (its name)"},
                           "name": {"type": "string", "description": "The fork's name (with count > 1: NAME-1..NAME-N); generated when absent"},
                           "count": {"type": "integer", "minimum": 1, "maximum": FORK_MAX, "description": "How many forks (default 1)"}}),
                    &["source"],
                ),
                output_schema: json!({"type": "object", "properties": {
                    "snapshot": {"type": "string", "description": "the snapshot the forks were restored from"},
                    "vms": {"type": "array", "items": vm_output()}},
                    "required": ["snapshot", "vms"]}),
                annotations: WRITE,
            },
            Access::Create,
        ),
        (
            Tool {
                name: "vm_exec",
                title: "Run a command in a VM",
                description: "Run a command in a running VM through its agent (in its workspace when it has one) and return exit code and output.",
                input_schema: object(
                    json!({"vm": vm_prop(), "argv": argv_prop(), "env": env_prop(),
                           "cwd": {"type": "string", "description": "Working directory in the guest"},
                           "timeout_secs": timeout_prop()}),
                    &["vm", "argv"],
                ),
                output_schema: exec_output(json!({})),
                annotations: WRITE,
            },
            Access::Modify,
        ),
        (
            Tool {
                name: "vm_list",
                title: "List VMs",
                description: "List banger's VMs: name, state, image, address, and whether this session created them.",
                input_schema: object(json!({}), &[]),
                output_schema: json!({"type": "object", "properties": {
                    "vms": {"type": "array", "items": vm_output()}}, "required": ["vms"]}),
                annotations: READ,
            },
            Access::List,
        ),
        (
            Tool {
                name: "vm_delete",
                title: "Delete a VM",
                description: "Delete a VM and its disk. A running VM needs force.",
                input_schema: object(
                    json!({"vm": vm_prop(), "force": {"type": "boolean", "description": "Kill a running VM first"}}),
                    &["vm"],
                ),
                output_schema: json!({"type": "object", "properties": {"deleted": {"type": "string"}}, "required": ["deleted"]}),
                annotations: DESTROY,
            },
            Access::Delete,
        ),
        (
            Tool {
                name: "workspace_prepare",
                title: "Copy a repository into a VM",
                description: "Copy a git repository (tracked files as in the working tree, and .git) into a running VM, replacing what was at the guest path.",
                input_schema: object(
                    merged(json!({"vm": vm_prop()}), repo_props()),
                    &["vm", "repo"],
                ),
                output_schema: vm_output(),
                annotations: WRITE,
            },
            Access::Modify,
        ),
        (
            Tool {
                name: "workspace_export",
                title: "The guest's changes as a patch",
                description: "The VM workspace's changes as one binary-safe git patch (for `git apply`; `mbox` for `git am`) and the list of changed files. Against the guest's HEAD by default; base_commit includes the guest's commits since it. Nothing in the guest changes.",
                input_schema: object(
                    json!({"vm": vm_prop(),
                           "base_commit": {"type": "string", "description": "Diff against this commit (the guest's commits since it are included)"},
                           "guest_path": {"type": "string", "description": "The repository in the guest, for a VM without a workspace record"},
                           "format": {"enum": ["diff", "mbox"], "description": "diff (default) or mbox"}}),
                    &["vm"],
                ),
                output_schema: json!({"type": "object", "properties": {
                    "base": {"type": "string"}, "guest_path": {"type": "string"},
                    "format": {"enum": ["diff", "mbox"]},
                    "files": {"type": "array", "items": {"type": "object"}},
                    "patch": {"type": "string"}, "patch_bytes": {"type": "integer"},
                    "patch_truncated": {"type": "boolean"}, "max_patch_bytes": {"type": "integer"}},
                    "required": ["base", "guest_path", "format", "files", "patch", "patch_bytes", "patch_truncated", "max_patch_bytes"]}),
                annotations: READ,
            },
            Access::Read,
        ),
        (
            Tool {
                name: "file_read",
                title: "Read a file in a VM",
                description: "Read a file in a running VM (UTF-8 text, or base64 when it is not text), up to max_bytes.",
                input_schema: object(
                    json!({"vm": vm_prop(), "path": {"type": "string", "minLength": 1, "description": "Absolute guest path"},
                           "max_bytes": {"type": "integer", "minimum": 1, "maximum": FILE_READ_MAX,
                                         "description": format!("default {FILE_READ_DEFAULT}")}}),
                    &["vm", "path"],
                ),
                output_schema: json!({"type": "object", "properties": {
                    "path": {"type": "string"}, "content": {"type": "string"},
                    "encoding": {"enum": ["utf-8", "base64"]}, "bytes": {"type": "integer"},
                    "truncated": {"type": "boolean"}, "max_bytes": {"type": "integer"}},
                    "required": ["path", "content", "encoding", "truncated", "max_bytes"]}),
                annotations: READ,
            },
            Access::Read,
        ),
        (
            Tool {
                name: "file_write",
                title: "Write a file in a VM",
                description: "Write (create or replace) a file in a running VM. At most 64 KiB.",
                input_schema: object(
                    json!({"vm": vm_prop(), "path": {"type": "string", "minLength": 1, "description": "Absolute guest path"},
                           "content": {"type": "string"},
                           "encoding": {"enum": ["utf-8", "base64"], "description": "How content is given (default utf-8)"}}),
                    &["vm", "path", "content"],
                ),
                output_schema: json!({"type": "object", "properties": {
                    "path": {"type": "string"}, "bytes": {"type": "integer"}}, "required": ["path", "bytes"]}),
                annotations: WRITE,
            },
            Access::Modify,
        ),
    ]
}

/// The tools this policy offers.
pub fn offered(policy: &Policy) -> Vec<Tool> {
    all()
        .into_iter()
        .filter(|(_, access)| policy.offers(*access))
        .map(|(tool, _)| tool)
        .collect()
}
