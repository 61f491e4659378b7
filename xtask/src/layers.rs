//! Crate layering: which of our crates each crate may depend on, as one table ([`RULES`])
//! that is both the check and the source of ARCHITECTURE.md's "Layers" section.
//!
//! The check reads `cargo metadata` (every declared dependency: normal, build and dev,
//! for every target, however the manifest spells it) rather than the manifests' text.
//! Normal and build dependencies must be in the crate's `may_use`; dev-dependencies may
//! also use its `tests_may_use` and the test-support crates. A workspace member missing
//! from the table is an error, so a new crate is placed on purpose.
//!
//! Adding a crate: add one [`Rule`] (and the crate to the `may_use` of those allowed to
//! use it), then `cargo xtask layers --write` regenerates ARCHITECTURE.md's section;
//! `cargo xtask tidy` and the tests here fail until both agree.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One crate's place in the layering.
#[derive(Debug)]
pub struct Rule {
    pub krate: &'static str,
    pub layer: Layer,
    /// Our crates it may depend on (normal and build dependencies, any target).
    pub may_use: &'static [&'static str],
    /// Further crates its tests may use (dev-dependencies), beyond `may_use` and
    /// [`TEST_SUPPORT`].
    pub tests_may_use: &'static [&'static str],
    /// Why, when the reason is not obvious from the layer.
    pub note: &'static str,
}

/// Layers from the bottom up; a crate uses crates of lower layers, with the exceptions
/// the table names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Foundation,
    Protocols,
    Services,
    Orchestration,
    Programs,
    Tooling,
}

impl Layer {
    fn title(self) -> &'static str {
        match self {
            Layer::Foundation => "foundation",
            Layer::Protocols => "protocols and storage",
            Layer::Services => "services",
            Layer::Orchestration => "orchestration",
            Layer::Programs => "programs",
            Layer::Tooling => "tests and tooling",
        }
    }
}

/// Crates that exist for tests: any crate's dev-dependencies may use them; only
/// tooling may depend on them normally.
pub const TEST_SUPPORT: &[&str] = &["banger-requires", "banger-e2e"];

const MODEL_SYS_EXEC: &[&str] = &["banger-model", "banger-sys", "banger-exec"];
const MODEL_SYS_EXEC_PROTO: &[&str] =
    &["banger-model", "banger-sys", "banger-exec", "banger-proto"];

/// What the daemon and the VM service wire together.
const SERVICES: &[&str] = &[
    "banger-model",
    "banger-store",
    "banger-proto",
    "banger-sys",
    "banger-exec",
    "banger-vmm",
    "banger-image",
    "banger-net",
    "banger-dns",
    "banger-ssh",
    "banger-workspace",
    "banger-patch",
    "banger-tar",
];

const DAEMON: &[&str] = &[
    "banger-model",
    "banger-store",
    "banger-proto",
    "banger-sys",
    "banger-exec",
    "banger-vmm",
    "banger-image",
    "banger-net",
    "banger-dns",
    "banger-ssh",
    "banger-workspace",
    "banger-patch",
    "banger-tar",
    "banger-vm",
    "banger-api",
];

/// The table. Keep it in layer order; ARCHITECTURE.md shows it in this order.
pub const RULES: &[Rule] = &[
    Rule {
        krate: "banger-model",
        layer: Layer::Foundation,
        may_use: &[],
        tests_may_use: &[],
        note: "pure domain rules",
    },
    Rule {
        krate: "banger-exec",
        layer: Layer::Foundation,
        may_use: &[],
        tests_may_use: &[],
        note: "the one wrapper for external commands",
    },
    Rule {
        krate: "banger-sys",
        layer: Layer::Foundation,
        may_use: &[],
        tests_may_use: &[],
        note: "the only `unsafe`",
    },
    Rule {
        krate: "banger-patch",
        layer: Layer::Foundation,
        may_use: &["banger-exec"],
        tests_may_use: &[],
        note: "checks the guest's patch; host git through `banger-exec`",
    },
    Rule {
        krate: "banger-tar",
        layer: Layer::Foundation,
        may_use: &[],
        tests_may_use: &[],
        note: "tar streams for `vm cp` and workspaces; linked into the static agent too",
    },
    Rule {
        krate: "banger-api",
        layer: Layer::Protocols,
        may_use: &["banger-model"],
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-proto",
        layer: Layer::Protocols,
        may_use: &["banger-model"],
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-store",
        layer: Layer::Protocols,
        may_use: &["banger-model"],
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-mcp",
        layer: Layer::Protocols,
        may_use: &[],
        tests_may_use: &[],
        note: "the MCP subset `banger mcp` serves (JSON-RPC loop, session policy); knows nothing of the daemon",
    },
    Rule {
        krate: "banger-dns",
        layer: Layer::Services,
        may_use: &["banger-model"],
        tests_may_use: &["banger-exec"],
        note: "packet handling by hand; its tests run `dig`",
    },
    Rule {
        krate: "banger-ssh",
        layer: Layer::Services,
        may_use: &["banger-model", "banger-exec"],
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-doctor",
        layer: Layer::Services,
        may_use: MODEL_SYS_EXEC,
        tests_may_use: &[],
        note: "read-only host checks",
    },
    Rule {
        krate: "banger-vmm",
        layer: Layer::Services,
        may_use: MODEL_SYS_EXEC_PROTO,
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-image",
        layer: Layer::Services,
        may_use: MODEL_SYS_EXEC,
        tests_may_use: &[],
        note: "its tests push to the test registry of `banger-e2e`",
    },
    Rule {
        krate: "banger-net",
        layer: Layer::Services,
        may_use: MODEL_SYS_EXEC_PROTO,
        tests_may_use: &[],
        note: "",
    },
    Rule {
        krate: "banger-workspace",
        layer: Layer::Services,
        may_use: &["banger-model", "banger-sys", "banger-exec", "banger-tar"],
        tests_may_use: &[],
        note: "host side of workspaces (git through `banger-exec`)",
    },
    Rule {
        krate: "banger-vm",
        layer: Layer::Orchestration,
        may_use: SERVICES,
        tests_may_use: &[],
        note: "the only service that uses other services; never `banger-api`",
    },
    Rule {
        krate: "bangerd",
        layer: Layer::Programs,
        may_use: DAEMON,
        tests_may_use: &[],
        note: "wires every service behind the API",
    },
    Rule {
        krate: "banger",
        layer: Layer::Programs,
        may_use: &[
            "banger-api",
            "banger-model",
            "banger-doctor",
            "banger-ssh",
            "banger-sys",
            "banger-exec",
            "banger-workspace",
            "banger-tar",
            "banger-mcp",
        ],
        tests_may_use: &[],
        note: "talks to the daemon only; doctor's read-only checks run locally so `banger doctor` works while the daemon is down; the ssh argv and config block come from `banger-ssh`; a workspace's files are read on the user's side (`banger-workspace`, `banger-tar`); `banger mcp` runs on `banger-mcp`; `banger system` drops privileges (`banger-sys`) and runs systemctl (`banger-exec`) before any daemon exists",
    },
    Rule {
        krate: "banger-helper",
        layer: Layer::Programs,
        may_use: &["banger-proto", "banger-sys"],
        tests_may_use: &["banger-net"],
        note: "root: no async services, no SQLite; its tests drive it through the daemon's client",
    },
    Rule {
        krate: "banger-agent",
        layer: Layer::Programs,
        may_use: &["banger-proto", "banger-sys", "banger-tar"],
        tests_may_use: &[],
        note: "static guest binary",
    },
    Rule {
        krate: "banger-requires",
        layer: Layer::Tooling,
        may_use: &[],
        tests_may_use: &[],
        note: "test support: host requirements and skips",
    },
    Rule {
        krate: "banger-fuzz",
        layer: Layer::Tooling,
        may_use: &[
            "banger-api",
            "banger-dns",
            "banger-image",
            "banger-patch",
            "banger-proto",
            "banger-ssh",
            "banger-tar",
        ],
        tests_may_use: &[],
        note: "fuzz target bodies (the parsers of untrusted input, the ssh config editor) for `fuzz/` and the corpus replay test",
    },
    Rule {
        krate: "banger-e2e",
        layer: Layer::Tooling,
        may_use: &["banger-api", "banger-requires"],
        // banger-net: the policy test sends the SNI check's own ClientHello from a guest.
        // banger-vm: the reliability tests kill the daemon at `banger_vm::fault`'s points.
        tests_may_use: &[
            "banger-image",
            "banger-exec",
            "banger-model",
            "banger-net",
            "banger-vm",
        ],
        note: "real-guest harness: drives the binaries, speaks only the API",
    },
    Rule {
        krate: "xtask",
        layer: Layer::Tooling,
        may_use: &[
            "banger-e2e",
            "banger-exec",
            "banger-image",
            "banger-model",
            "banger-proto",
            "banger-vm",
            "banger-api",
            // `bench policy`: the policy resolver in process, the helper through its client.
            "banger-dns",
            "banger-net",
        ],
        tests_may_use: &[],
        note: "benchmarks drive the services and the harness",
    },
];

/// One declared dependency between two workspace members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `normal`, `build` or `dev`.
    pub kind: String,
    /// The `cfg(...)` or triple of a target-specific dependency.
    pub target: Option<String>,
}

/// The dependencies between workspace members that `cargo metadata --no-deps` reports,
/// and the members.
pub fn edges(metadata: &Value) -> Result<(Vec<String>, Vec<Edge>)> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let members: Vec<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut edges = Vec::new();
    for package in packages {
        let from = package["name"].as_str().unwrap_or_default();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let to = dep["name"].as_str().unwrap_or_default();
            if !members.iter().any(|m| m == to) {
                continue;
            }
            edges.push(Edge {
                from: from.to_owned(),
                to: to.to_owned(),
                kind: dep["kind"].as_str().unwrap_or("normal").to_owned(),
                target: dep["target"].as_str().map(str::to_owned),
            });
        }
    }
    Ok((members, edges))
}

/// Every way `metadata` breaks `rules`, one sentence each.
pub fn violations(metadata: &Value, rules: &[Rule]) -> Result<Vec<String>> {
    let (members, edges) = edges(metadata)?;
    let mut problems = Vec::new();
    for member in &members {
        if !rules.iter().any(|r| r.krate == member) {
            problems.push(format!(
                "{member}: not in the layer table (xtask/src/layers.rs); give it a rule"
            ));
        }
    }
    for edge in edges {
        let Some(rule) = rules.iter().find(|r| r.krate == edge.from) else {
            continue;
        };
        let allowed = rule.may_use.contains(&edge.to.as_str())
            || (edge.kind == "dev"
                && (rule.tests_may_use.contains(&edge.to.as_str())
                    || TEST_SUPPORT.contains(&edge.to.as_str())));
        if !allowed {
            let target = edge
                .target
                .as_deref()
                .map(|t| format!(" for target {t}"))
                .unwrap_or_default();
            let what = match edge.kind.as_str() {
                "dev" => "dev-dependency",
                "build" => "build-dependency",
                _ => "dependency",
            };
            problems.push(format!(
                "{} has a {what} on {}{target}, which its layer ({}) forbids",
                edge.from,
                edge.to,
                rule.layer.title()
            ));
        }
    }
    Ok(problems)
}

/// `cargo metadata --format-version 1 --no-deps` of the workspace at `root`.
pub fn metadata(root: &Path) -> Result<Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")
}

const BEGIN: &str =
    "<!-- layers:begin (generated from xtask/src/layers.rs by `cargo xtask layers --write`) -->";
const END: &str = "<!-- layers:end -->";

/// The markdown ARCHITECTURE.md shows between its layer markers.
pub fn markdown(rules: &[Rule]) -> String {
    let list = |crates: &[&str]| {
        if crates.is_empty() {
            "none of ours".to_owned()
        } else {
            crates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut out = String::from(
        "| layer | crate | may depend on (normal and build, every target) | its tests may also use | note |\n| --- | --- | --- | --- | --- |\n",
    );
    for rule in rules {
        let tests = if rule.tests_may_use.is_empty() {
            String::new()
        } else {
            list(rule.tests_may_use)
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            rule.layer.title(),
            rule.krate,
            list(rule.may_use),
            tests,
            rule.note
        ));
    }
    out.push_str(&format!(
        "\nAny crate's tests may also use the test-support crates ({}).\n",
        list(TEST_SUPPORT)
    ));
    out
}

/// ARCHITECTURE.md with its layer section replaced by `section`.
fn replace_section(doc: &str, section: &str) -> Result<String> {
    let start = doc
        .find(BEGIN)
        .context("ARCHITECTURE.md has no layers:begin marker")?;
    let end = doc
        .find(END)
        .context("ARCHITECTURE.md has no layers:end marker")?;
    if end < start {
        bail!("ARCHITECTURE.md's layer markers are out of order");
    }
    Ok(format!(
        "{}{BEGIN}\n{section}{}",
        &doc[..start],
        &doc[end..]
    ))
}

/// Problems with the workspace at `root`: layering, and ARCHITECTURE.md out of date.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = violations(&metadata(root)?, RULES)?;
    let path = root.join("ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&path).context("cannot read ARCHITECTURE.md")?;
    if replace_section(&doc, &markdown(RULES))? != doc {
        problems.push(
            "ARCHITECTURE.md's layer section differs from xtask/src/layers.rs; run `cargo xtask layers --write`"
                .to_owned(),
        );
    }
    Ok(problems)
}

/// `cargo xtask layers [--write]`: checks, or rewrites ARCHITECTURE.md's section.
pub fn cli(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--write") {
        let path = root.join("ARCHITECTURE.md");
        let doc = std::fs::read_to_string(&path)?;
        std::fs::write(&path, replace_section(&doc, &markdown(RULES))?)?;
        eprintln!("xtask: layers: ARCHITECTURE.md updated");
    }
    let problems = check(root)?;
    for problem in &problems {
        eprintln!("layers: {problem}");
    }
    if !problems.is_empty() {
        bail!("{} layering problem(s)", problems.len());
    }
    eprintln!("xtask: layers: ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Which of our crates each member depends on, by kind (for the error of a test).
    fn describe(metadata: &Value) -> Result<BTreeMap<String, Vec<String>>> {
        let (_, edges) = edges(metadata)?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for edge in edges {
            out.entry(edge.from)
                .or_default()
                .push(format!("{} ({})", edge.to, edge.kind));
        }
        Ok(out)
    }

    fn root() -> std::path::PathBuf {
        crate::workspace_root()
    }

    #[test]
    fn the_workspace_respects_the_layer_table() {
        let metadata = metadata(&root()).unwrap();
        let problems = violations(&metadata, RULES).unwrap();
        assert!(
            problems.is_empty(),
            "{problems:#?}\nthe graph: {:#?}",
            describe(&metadata).unwrap()
        );
    }

    #[test]
    fn architecture_md_shows_the_layer_table() {
        let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
        let expected = replace_section(&doc, &markdown(RULES)).unwrap();
        assert!(
            expected == doc,
            "ARCHITECTURE.md's layer section is not the table in xtask/src/layers.rs; run `cargo xtask layers --write`"
        );
    }

    /// A workspace of the real members with one planted dependency.
    fn planted(from: &str, dep: Value) -> Value {
        let mut metadata = metadata(&root()).unwrap();
        let packages = metadata["packages"].as_array_mut().unwrap();
        let package = packages
            .iter_mut()
            .find(|p| p["name"] == from)
            .unwrap_or_else(|| panic!("{from} is not a member"));
        package["dependencies"].as_array_mut().unwrap().push(dep);
        metadata
    }

    #[test]
    fn planted_violations_of_every_kind_and_target_are_caught() {
        let cases = [
            (
                "banger-model",
                json!({"name": "banger-api", "kind": null, "target": null}),
                "banger-model has a dependency on banger-api, which its layer (foundation) forbids",
            ),
            (
                "banger-helper",
                json!({"name": "banger-store", "kind": null, "target": "cfg(target_os = \"linux\")"}),
                "banger-helper has a dependency on banger-store for target cfg(target_os = \"linux\")",
            ),
            (
                "banger-vm",
                json!({"name": "banger-api", "kind": "build", "target": null}),
                "banger-vm has a build-dependency on banger-api",
            ),
            (
                "banger-store",
                json!({"name": "banger-vm", "kind": "dev", "target": null}),
                "banger-store has a dev-dependency on banger-vm",
            ),
            (
                "bangerd",
                json!({"name": "banger-e2e", "kind": null, "target": null}),
                "bangerd has a dependency on banger-e2e",
            ),
            (
                "banger",
                json!({"name": "banger-vm", "kind": null, "target": null, "rename": "vm"}),
                "banger has a dependency on banger-vm",
            ),
        ];
        for (from, dep, expected) in cases {
            let problems = violations(&planted(from, dep.clone()), RULES).unwrap();
            assert_eq!(problems.len(), 1, "{dep}: {problems:?}");
            assert!(problems[0].starts_with(expected), "{dep}: {problems:?}");
        }
        // Test support in dev-dependencies is fine anywhere.
        let allowed = planted(
            "banger-model",
            json!({"name": "banger-requires", "kind": "dev", "target": null}),
        );
        assert_eq!(violations(&allowed, RULES).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_member_without_a_rule_is_caught() {
        let mut metadata = metadata(&root()).unwrap();
        metadata["packages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "banger-new", "dependencies": []}));
        let problems = violations(&metadata, RULES).unwrap();
        assert_eq!(
            problems,
            ["banger-new: not in the layer table (xtask/src/layers.rs); give it a rule"]
        );
    }

    #[test]
    fn the_section_is_replaced_between_its_markers_only() {
        let doc = format!("# A\n\n{BEGIN}\nold\n{END}\n\n## B\n");
        let new = replace_section(&doc, "new\n").unwrap();
        assert_eq!(new, format!("# A\n\n{BEGIN}\nnew\n{END}\n\n## B\n"));
        assert!(replace_section("no markers", "x").is_err());
    }
}
