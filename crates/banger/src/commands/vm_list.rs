//! `vm list` (aliases `vm ls`, `vm ps`, `banger ps`): every VM as a table, names, JSON
//! or a small template, narrowed by `--filter`. The filters and formats are pure
//! functions of the records, tested below.

use banger_api::methods::{Empty, VmList};
use banger_api::types::{VmInfo, VmState};
use clap::Args;

use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;
use crate::render::records::{self, VmJson};

/// List VMs
#[derive(Debug, Args)]
#[command(
    long_about = "List every VM with its state, image, resources, address, workspace and \
age. Columns: NAME, STATE, IMAGE, VCPU, MEMORY, DISK, ADDRESS, WORKSPACE, CREATED.

--filter narrows the list (repeatable; every filter must match): `state=running`, \
`image=tiny`, `name=web` (a name prefix). -q prints names only, one a line. --format \
picks the output: `table` (default), `names`, `json` (an array of the records documented \
in docs/json.md, the same as `--json`), or a template in which `{{.Name}}`, `{{.State}}`, \
`{{.Image}}`, `{{.Address}}`, `{{.Id}}` and every other key of the JSON record (as \
`{{.MemoryBytes}}` or `{{.memory_bytes}}`) are replaced, `\\t` and `\\n` too; an unknown \
value prints as nothing.",
    after_help = "\
Examples:
  banger vm list
  banger ps -q                          Names only
  banger vm ls --filter state=running --filter image=tiny
  banger vm list --format '{{.Name}}\\t{{.Address}}'
  banger vm stop $(banger ps -q --filter name=ci-)
  banger vm list --json | jq -r '.[] | select(.state == \"running\") | .name'"
)]
pub struct ListArgs {
    /// Only names, one a line (the same as --format names)
    #[arg(short = 'q', long, conflicts_with_all = ["format", "json"])]
    pub quiet: bool,
    /// Keep VMs matching KEY=VALUE: state=STATE, image=IMAGE, name=PREFIX (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = Filter::parse)]
    pub filter: Vec<Filter>,
    /// table, names, json, or a template such as '{{.Name}} {{.State}}'
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    pub format: Option<String>,
    /// Print the records as JSON (the same as --format json)
    #[arg(long)]
    pub json: bool,
}

/// One `--filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    State(VmState),
    Image(String),
    NamePrefix(String),
}

impl Filter {
    /// `state=running`, `image=tiny`, `name=web`.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not KEY=VALUE (state=, image=, name=)"))?;
        match key {
            "state" => VmState::parse(value)
                .map(Filter::State)
                .map_err(|e| e.to_string()),
            "image" => Ok(Filter::Image(value.to_string())),
            "name" => Ok(Filter::NamePrefix(value.to_string())),
            other => Err(format!(
                "unknown filter {other:?}; expected state=, image= or name="
            )),
        }
    }

    fn keeps(&self, vm: &VmInfo) -> bool {
        match self {
            Filter::State(state) => vm.state == *state,
            Filter::Image(image) => vm.image == *image,
            Filter::NamePrefix(prefix) => vm.name.starts_with(prefix.as_str()),
        }
    }
}

/// The VMs every filter keeps, in the order listed.
pub fn filtered(vms: Vec<VmInfo>, filters: &[Filter]) -> Vec<VmInfo> {
    vms.into_iter()
        .filter(|vm| filters.iter().all(|f| f.keeps(vm)))
        .collect()
}

/// What `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Table,
    Names,
    Json,
    Template(String),
}

impl Format {
    fn pick(args: &ListArgs) -> Format {
        if args.quiet {
            return Format::Names;
        }
        if args.json {
            return Format::Json;
        }
        match args.format.as_deref() {
            None | Some("table") => Format::Table,
            Some("names") => Format::Names,
            Some("json") => Format::Json,
            Some(template) => Format::Template(template.to_string()),
        }
    }
}

/// One line per VM from a template: `{{.Key}}` is the JSON record's value for `key`
/// (case and underscores ignored: `.MemoryBytes` is `memory_bytes`), nothing for
/// `null` or an unknown key; `\t` and `\n` are a tab and a newline.
pub fn template_line(template: &str, vm: &VmJson) -> String {
    let value = serde_json::to_value(vm).unwrap_or_default();
    let fold = |key: &str| key.replace('_', "").to_ascii_lowercase();
    let lookup = |key: &str| -> String {
        let wanted = fold(key);
        let found = value
            .as_object()
            .and_then(|map| map.iter().find(|(k, _)| fold(k) == wanted).map(|(_, v)| v));
        match found {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let field = after[..close].trim();
                out.push_str(&lookup(field.strip_prefix('.').unwrap_or(field)));
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let mut line = out.replace("\\t", "\t").replace("\\n", "\n");
    line.push('\n');
    line
}

/// The whole output for `format` (pure).
pub fn render_list(
    vms: &[VmInfo],
    format: &Format,
    now: jiff::Timestamp,
) -> Result<String, CliError> {
    Ok(match format {
        Format::Table => render::table::vms(vms, now),
        Format::Names => vms.iter().map(|vm| format!("{}\n", vm.name)).collect(),
        Format::Json => render::json(&records::vms(vms))?,
        Format::Template(template) => vms
            .iter()
            .map(|vm| template_line(template, &VmJson::from(vm)))
            .collect(),
    })
}

/// `vm list`.
pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let mut daemon = ctx.connect().await?;
    let vms = filtered(daemon.ask::<VmList>(&Empty {}).await?, &args.filter);
    let format = Format::pick(&args);
    if format == Format::Table && vms.is_empty() {
        if args.filter.is_empty() {
            render::note("no VMs yet; create one with `banger vm create` or `banger vm run`");
        } else {
            render::note("no VM matches the filters");
        }
        return Ok(());
    }
    render::stdout(&render_list(&vms, &format, jiff::Timestamp::now())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::records::vm::tests::sample;

    fn vms() -> Vec<VmInfo> {
        let mut web = sample("web", VmState::Running);
        web.address = Some("10.77.0.2".into());
        let mut web2 = sample("web-2", VmState::Stopped);
        web2.image = "debian-bookworm".into();
        let db = sample("db", VmState::Running);
        vec![web, web2, db]
    }

    fn names(vms: &[VmInfo]) -> Vec<&str> {
        vms.iter().map(|vm| vm.name.as_str()).collect()
    }

    #[test]
    fn filters_combine() {
        let parse = |s: &str| Filter::parse(s).unwrap();
        assert_eq!(names(&filtered(vms(), &[])), ["web", "web-2", "db"]);
        assert_eq!(
            names(&filtered(vms(), &[parse("state=running")])),
            ["web", "db"]
        );
        assert_eq!(
            names(&filtered(vms(), &[parse("name=web"), parse("image=tiny")])),
            ["web"]
        );
        assert_eq!(
            names(&filtered(vms(), &[parse("image=debian-bookworm")])),
            ["web-2"]
        );
        assert!(filtered(vms(), &[parse("state=error")]).is_empty());
    }

    #[test]
    fn bad_filters_say_what_is_expected() {
        insta::assert_snapshot!(Filter::parse("colour=red").unwrap_err(), @r#"unknown filter "colour"; expected state=, image= or name="#);
        insta::assert_snapshot!(Filter::parse("running").unwrap_err(), @r#""running" is not KEY=VALUE (state=, image=, name=)"#);
        insta::assert_snapshot!(Filter::parse("state=up").unwrap_err(), @r#"unknown VM state "up"; expected one of creating, starting, running, stopping, stopped, error, deleting"#);
    }

    #[test]
    fn formats() {
        let now: jiff::Timestamp = "2026-01-02T03:14:05Z".parse().unwrap();
        let vms = vms();
        insta::assert_snapshot!(render_list(&vms, &Format::Names, now).unwrap(), @r"
        web
        web-2
        db
        ");
        insta::assert_snapshot!(
            render_list(&vms, &Format::Template("{{.Name}}\\t{{ .State }} {{.Address}} {{.MemoryBytes}} {{.nope}}".into()), now).unwrap(),
            @r"
        web	running 10.77.0.2 268435456 
        web-2	stopped  268435456 
        db	running  268435456 
        ");
        insta::assert_snapshot!(
            "list_json",
            render_list(&vms[..1], &Format::Json, now).unwrap()
        );
        // One VM or none: still an array.
        assert_eq!(render_list(&[], &Format::Json, now).unwrap(), "[]\n");
    }
}
