//! docs/json.md and the records cannot drift: every documented table has exactly the keys
//! its record serializes, every record kind is documented, and every command that takes
//! `--json` (found in the clap command tree) is listed under a documented kind.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;

const DOCS: &str = include_str!("../../../../../docs/json.md");

/// One `## Kind` section of docs/json.md.
#[derive(Debug, Default)]
struct Section {
    /// The commands its `Commands:` line names.
    commands: Vec<String>,
    /// Table keys: `""` for the record's own table, else the key of the nested object
    /// (or array of objects) that the "`key`:" line before the table names.
    tables: BTreeMap<String, Vec<String>>,
}

fn sections(docs: &str) -> BTreeMap<String, Section> {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut owner = String::new();
    let mut in_table = false;
    for line in docs.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            current = Some(title.trim().to_owned());
            owner.clear();
            in_table = false;
            continue;
        }
        let Some(title) = &current else { continue };
        let section = out.entry(title.clone()).or_default();
        if let Some(list) = line.strip_prefix("Commands:") {
            section
                .commands
                .extend(list.split('`').skip(1).step_by(2).map(|c| c.to_owned()));
        } else if let Some(key) = line.strip_prefix('`').and_then(|l| l.strip_suffix("`:")) {
            owner = key.to_owned();
        } else if line.starts_with("| key |") {
            in_table = true;
            assert!(
                section.tables.insert(owner.clone(), Vec::new()).is_none(),
                "## {title}: two tables for {owner:?}"
            );
        } else if in_table && line.starts_with("| ---") {
        } else if in_table && line.starts_with('|') {
            let key = line.split('|').nth(1).unwrap_or_default().trim();
            let key = key.trim_matches('`').to_owned();
            section.tables.get_mut(&owner).unwrap().push(key);
        } else {
            in_table = false;
        }
    }
    out.retain(|_, s| !s.tables.is_empty());
    out
}

fn value(record: impl serde::Serialize) -> Value {
    serde_json::to_value(record).unwrap()
}

/// One full example of every record kind, by its section title in docs/json.md: nested
/// objects and arrays are filled in, so their keys are known.
fn kinds() -> BTreeMap<&'static str, Value> {
    use banger_api::types::{CatalogEntry, Pong};
    BTreeMap::from([
        ("VM", value(VmJson::from(&vm::tests::full()))),
        (
            "Image",
            value(image::ImageJson::from(&image::tests::sample())),
        ),
        (
            "Catalog entry",
            value(image::CatalogJson::from(&CatalogEntry {
                name: "tiny".into(),
                description: "d".into(),
                kind: "build".into(),
                pulled: true,
                default: true,
            })),
        ),
        (
            "Image warm",
            value(image::WarmJson {
                image: "tiny".into(),
                warm: false,
                changed: true,
                removed_templates: vec!["t".into()],
            }),
        ),
        (
            "Image cache prune",
            value(image::CachePruneJson {
                removed: vec!["x".into()],
                freed_bytes: 1,
                dry_run: false,
            }),
        ),
        (
            "Kernel",
            value(kernel::KernelJson::from(&kernel::tests::sample())),
        ),
        (
            "Snapshot",
            value(snapshot::SnapshotJson::from(&snapshot::tests::sample())),
        ),
        (
            "VM stats",
            value(stats::StatsJson::new(
                &stats::tests::sample("web", Some(1)),
                Some(1.0),
            )),
        ),
        (
            "VM ports",
            value(ports::PortsJson::from(&ports::tests::sample())),
        ),
        (
            "Published port",
            value(ports::PublishedJson::from(
                &ports::tests::sample().published[0],
            )),
        ),
        (
            "Policy",
            value(policy::PolicyJson::from(&policy::tests::sample(true))),
        ),
        (
            "Policy check",
            value(policy::PolicyCheckJson::from(&policy::tests::check())),
        ),
        (
            "Doctor check",
            value(check::CheckJson::from(&check::tests::sample()[1])),
        ),
        (
            "System status",
            value(system::StatusJson::new(
                &system::tests::metadata(),
                &system::tests::rows(),
            )),
        ),
        (
            "Service",
            value(system::ServiceJson::from(&system::tests::rows()[0])),
        ),
        (
            "System install",
            value(system::InstallJson::from(&system::tests::metadata())),
        ),
        (
            "System uninstall",
            value(system::UninstallJson::from(&system::tests::uninstall())),
        ),
        (
            "Workspace export",
            value(workspace::ExportJson::from(&workspace::tests::export())),
        ),
        (
            "Workspace apply",
            value(workspace::ApplyJson::from(&workspace::tests::apply())),
        ),
        ("Workspace dry run", value(workspace::tests::dry_run())),
        (
            "Ping",
            value(misc::PongJson::from(&Pong {
                daemon_version: "0.1.0".into(),
                protocol: 3,
            })),
        ),
        (
            "Health",
            value(misc::HealthJson::from(&misc::tests::health())),
        ),
        ("Version", value(misc::tests::version())),
        ("Copy", value(misc::CopyJson::from(&misc::tests::copy()))),
        ("Config", value(misc::tests::config())),
    ])
}

fn keys(value: &Value) -> Vec<String> {
    let object = match value {
        Value::Array(items) => &items[0],
        other => other,
    };
    object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_documented_table_has_exactly_the_keys_of_its_record() {
    let documented = sections(DOCS);
    let kinds = kinds();
    let titles: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    let coded: BTreeSet<&str> = kinds.keys().copied().collect();
    assert_eq!(titles, coded, "docs/json.md sections vs record kinds");
    for (title, section) in &documented {
        let record = &kinds[title.as_str()];
        assert!(
            section.tables.contains_key(""),
            "## {title} has no table of its own"
        );
        for (owner, documented_keys) in &section.tables {
            let nested = if owner.is_empty() {
                record
            } else {
                &record[owner.as_str()]
            };
            let mut want = keys(nested);
            let mut got = documented_keys.clone();
            want.sort();
            got.sort();
            assert_eq!(
                got, want,
                "## {title}, table {owner:?}: documented keys vs record"
            );
        }
    }
}

/// Every command path (`vm list`) whose command takes `--json`.
fn json_commands(cmd: &clap::Command, path: &str, out: &mut BTreeSet<String>) {
    if cmd.get_arguments().any(|a| a.get_long() == Some("json")) {
        out.insert(path.trim().to_owned());
    }
    for sub in cmd.get_subcommands() {
        json_commands(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// A documented command (`vm ls`, `vm run --dry-run`) as the path of its command
/// (`vm list`, `vm run`): aliases resolved, flags dropped; as written when there is none.
fn canonical(root: &clap::Command, written: &str) -> String {
    let mut cmd = root;
    let mut path = Vec::new();
    for word in written
        .split_whitespace()
        .take_while(|w| !w.starts_with('-'))
    {
        match cmd.find_subcommand(word) {
            Some(sub) => {
                path.push(sub.get_name().to_owned());
                cmd = sub;
            }
            None => return written.to_owned(),
        }
    }
    path.join(" ")
}

#[test]
fn every_json_command_prints_a_documented_kind() {
    let root = crate::cli::command();
    let mut commands = BTreeSet::new();
    json_commands(&root, "", &mut commands);
    assert!(
        commands.contains("vm list") && commands.len() > 20,
        "{commands:?}"
    );
    let documented: BTreeSet<String> = sections(DOCS)
        .values()
        .flat_map(|s| &s.commands)
        .filter(|c| !c.starts_with('-'))
        .map(|c| canonical(&root, c))
        .collect();
    let missing: Vec<&String> = commands.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "--json commands no docs/json.md section lists: {missing:?}"
    );
    let unknown: Vec<&String> = documented.difference(&commands).collect();
    assert!(
        unknown.is_empty(),
        "docs/json.md lists commands without --json: {unknown:?}"
    );
}
