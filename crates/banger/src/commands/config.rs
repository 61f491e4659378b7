//! `config show` and `config path`: the config file's place, and the settings a new VM
//! would get (flag > file > default) with where each came from. No daemon needed.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::cli::JsonFlag;
use crate::commands::vm_run::SpecArgs;
use crate::config::{self, Settings, Source};
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;
use crate::render::records::misc::ConfigJson;

/// Print the settings a new VM gets and where each came from
#[derive(Debug, Args)]
#[command(
    long_about = "Print the settings a new VM gets (`vm create`, `vm run`) and where each \
came from: a flag, the config file, or banger's default. Takes the same flags as `vm \
create`, so you can see what a flag would change. A config file with an unknown key or a \
bad value is an error naming its line.",
    after_help = "\
Examples:
  banger config show
  banger config show --nat --memory 2GiB
  banger config show --json | jq .settings.image"
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The workspace's guest path, as `vm run --guest-path` takes it
    #[arg(long, value_name = "DIR")]
    pub guest_path: Option<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Print where the config file is (it need not exist)
#[derive(Debug, Args)]
#[command(
    long_about = "Print the config file's path: config.toml in banger's config directory \
(`BANGER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/banger`, else ~/.config/banger). The file \
need not exist.",
    after_help = "Examples:\n  banger config path\n  $EDITOR \"$(banger config path)\""
)]
pub struct PathArgs {}

#[derive(Debug, Serialize)]
struct Shown {
    file: PathBuf,
    exists: bool,
    settings: Settings,
}

/// `config show`.
pub fn show(ctx: &Ctx, args: ShowArgs) -> Result<(), CliError> {
    let file = config::path(ctx)?;
    let mut flags = args.spec.flags();
    flags.guest_path = args.guest_path.clone();
    let settings = config::resolve(&flags, &config::read(&file)?);
    let shown = Shown {
        exists: file.exists(),
        file,
        settings,
    };
    render::records::print(
        args.output.json,
        &shown,
        |s| ConfigJson::new(&s.file, s.exists, &s.settings),
        text,
    )
}

/// `config path`.
pub fn path(ctx: &Ctx, _args: PathArgs) -> Result<(), CliError> {
    render::stdout(&format!("{}\n", config::path(ctx)?.display()))
}

fn text(shown: &Shown) -> String {
    let s = &shown.settings;
    let or = |value: Option<String>, default: &str| value.unwrap_or_else(|| default.to_string());
    let size = |mib: Option<u64>, default: banger_model::ByteSize| match mib {
        Some(mib) => render::mib(mib),
        None => format!("{default}"),
    };
    let spec = banger_model::spec::VmSpec::default();
    let policy = if s.policy.value.deny_all {
        "deny all".to_string()
    } else if s.policy.value.allow.is_empty() {
        "none (with nat: everything)".to_string()
    } else {
        format!("allow {}", s.policy.value.allow.join(", "))
    };
    let ca = if s.host_ca.value.enabled {
        format!("yes, from {}", s.host_ca.value.path.display())
    } else {
        "no".to_string()
    };
    let sync = if s.file_sync.value.is_empty() {
        "none".to_string()
    } else {
        s.file_sync
            .value
            .iter()
            .map(|e| match &e.dest {
                Some(dest) => format!("{} -> {dest}", e.source),
                None => e.source.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<(&str, String, Source)> = vec![
        (
            "image",
            or(s.image.value.clone(), banger_model::catalog::DEFAULT_IMAGE),
            s.image.source,
        ),
        (
            "kernel",
            or(s.kernel.value.clone(), "the image's"),
            s.kernel.source,
        ),
        (
            "vcpus",
            s.vcpus.value.unwrap_or(spec.vcpus).to_string(),
            s.vcpus.source,
        ),
        (
            "memory",
            size(s.memory_mib.value, spec.memory),
            s.memory_mib.source,
        ),
        ("disk", size(s.disk_mib.value, spec.disk), s.disk_mib.source),
        ("nat", s.nat.value.to_string(), s.nat.source),
        ("policy", policy, s.policy.source),
        (
            "guest_path",
            s.guest_path.value.clone(),
            s.guest_path.source,
        ),
        (
            "bootstrap",
            s.bootstrap.value.to_string(),
            s.bootstrap.source,
        ),
        (
            "git_identity",
            s.git_identity.value.to_string(),
            s.git_identity.source,
        ),
        ("host_ca", ca, s.host_ca.source),
        ("file_sync", sync, s.file_sync.source),
    ];
    let mut out = format!(
        "config file: {}{}\n",
        shown.file.display(),
        if shown.exists { "" } else { " (not there)" }
    );
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(48);
    for (key, value, source) in rows {
        out.push_str(&format!("{key:<13}{value:<width$}  ({source})\n"));
    }
    out
}
