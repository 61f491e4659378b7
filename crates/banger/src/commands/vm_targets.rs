//! Which VMs a lifecycle command acts on: the references given (or `--all`), resolved on
//! the CLI against `vm.list` so the command can say "already running" without a request,
//! and so a destructive command never acts on a prefix it was not told about.
//!
//! Read-only and exec-like commands send the user's reference as typed (any unique
//! prefix). Destructive ones (`vm delete`, `vm kill`, `vm stop` of several) need an exact
//! name or id: a prefix is confirmed on a terminal, naming the full match, and refused
//! without one. The daemon applies the same rule (`resolve_ref_destructive`), so the
//! CLI always sends the full name it resolved.

use banger_api::methods::{Empty, VmList};
use banger_api::types::VmInfo;
use banger_model::{RefError, RefMatch, resolve_ref_match};
use clap::Args;

use crate::commands::vm_lifecycle::confirm;
use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;

/// The VMs a lifecycle command names: several references, or `--all`.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// VM names, unique name prefixes, or id prefixes
    #[arg(
        value_name = "VM",
        required_unless_present = "all",
        conflicts_with = "all",
        add = crate::candidates::vm_names()
    )]
    pub vms: Vec<String>,
    /// Every VM this command applies to
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// How strictly a reference must name its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Any unique prefix.
    Prefix,
    /// An exact name or id; a prefix needs confirmation. `verb` is for the question
    /// (`delete`, `kill`, `stop`).
    Exact { verb: &'static str },
}

/// What one reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The VM, named exactly (or a prefix where prefixes are fine).
    Found(VmInfo),
    /// A prefix for a destructive command: the VM it matches, to confirm.
    Confirm { query: String, vm: VmInfo },
}

/// Resolves each reference against `vms` (pure).
pub fn pick(
    vms: &[VmInfo],
    refs: &[String],
    strictness: Strictness,
) -> Vec<Result<Pick, RefError>> {
    refs.iter()
        .map(|query| {
            let (vm, how) = resolve_ref_match(query, vms, |vm| &vm.id, |vm| &vm.name)?;
            Ok(match (strictness, how) {
                (Strictness::Exact { .. }, RefMatch::Prefix) => Pick::Confirm {
                    query: query.clone(),
                    vm: vm.clone(),
                },
                _ => Pick::Found(vm.clone()),
            })
        })
        .collect()
}

/// The question asked for a prefix, naming the full match.
pub fn question(verb: &str, query: &str, vm: &VmInfo) -> String {
    format!(
        "{query:?} is only a prefix of {:?} (id {}, {}); {verb} {}? [y/N] ",
        vm.name, vm.id, vm.state, vm.name
    )
}

/// A reference that did not resolve, as the user reads it.
pub fn ref_failure(error: RefError, verb: Option<&str>) -> CliError {
    match error {
        RefError::NotFound { query } => CliError::failed(
            format!("no VM is named {query:?} or has an id starting with it"),
            Some("`banger vm list` shows the VMs that exist"),
        ),
        RefError::Ambiguous { query, candidates } => CliError::failed(
            format!(
                "{query:?} matches more than one VM: {}",
                candidates.join(", ")
            ),
            Some("use the full name, or a longer prefix of the name or id"),
        ),
        RefError::PrefixOnly { query, matched } => CliError::Failed {
            message: format!(
                "{query:?} is only a prefix of {matched:?}; {} needs the full name or id \
                 (no terminal to confirm on)",
                verb.map(|v| format!("`vm {v}`"))
                    .unwrap_or_else(|| "this command".into())
            ),
            hint: Some(format!("banger vm {} {matched}", verb.unwrap_or("delete"))),
        },
    }
}

/// The VMs to act on, each one `Ok` or why it cannot be (reported by the caller and
/// counted as a failure). With `--all`, every VM `all_filter` keeps. A prefix for an
/// exact command is asked about on a terminal (a "no" drops the VM silently, with a
/// note) and refused without one.
pub async fn resolve(
    ctx: &Ctx,
    daemon: &mut Daemon,
    targets: &TargetArgs,
    strictness: Strictness,
    all_filter: impl Fn(&VmInfo) -> bool,
) -> Result<Vec<Result<VmInfo, CliError>>, CliError> {
    let vms = daemon.ask::<VmList>(&Empty {}).await?;
    if targets.all {
        return Ok(vms.into_iter().filter(all_filter).map(Ok).collect());
    }
    let verb = match strictness {
        Strictness::Exact { verb } => Some(verb),
        Strictness::Prefix => None,
    };
    let mut out = Vec::new();
    for picked in pick(&vms, &targets.vms, strictness) {
        match picked {
            Ok(Pick::Found(vm)) => out.push(Ok(vm)),
            Ok(Pick::Confirm { query, vm }) => {
                if !ctx.term.stdin {
                    out.push(Err(ref_failure(
                        RefError::PrefixOnly {
                            query,
                            matched: vm.name,
                        },
                        verb,
                    )));
                } else if confirm(&question(verb.unwrap_or("use"), &query, &vm))? {
                    out.push(Ok(vm));
                } else {
                    crate::render::note(&format!("{}: left alone", vm.name));
                }
            }
            Err(error) => out.push(Err(ref_failure(error, verb))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::types::VmState;

    fn vm(name: &str, id: &str) -> VmInfo {
        let mut vm = crate::render::records::vm::tests::sample(name, VmState::Running);
        vm.id = id.into();
        vm
    }

    #[test]
    fn prefixes_are_fine_for_read_only_and_confirmed_for_destructive() {
        let vms = [vm("ux-zzvictim", "aaaa0000"), vm("web", "bbbb0000")];
        let refs: Vec<String> = ["ux-zz", "web", "bbbb0000", "bb", "nope"]
            .map(String::from)
            .to_vec();
        let names = |picks: Vec<Result<Pick, RefError>>| -> Vec<String> {
            picks
                .into_iter()
                .map(|p| match p {
                    Ok(Pick::Found(vm)) => format!("found {}", vm.name),
                    Ok(Pick::Confirm { query, vm }) => format!("confirm {query} -> {}", vm.name),
                    Err(e) => format!("error {e}"),
                })
                .collect()
        };
        assert_eq!(
            names(pick(&vms, &refs, Strictness::Prefix)),
            [
                "found ux-zzvictim",
                "found web",
                "found web",
                "found web",
                "error nothing is named \"nope\" or has an id starting with it"
            ]
        );
        assert_eq!(
            names(pick(&vms, &refs, Strictness::Exact { verb: "delete" })),
            [
                "confirm ux-zz -> ux-zzvictim",
                "found web",
                "found web",
                "confirm bb -> web",
                "error nothing is named \"nope\" or has an id starting with it"
            ]
        );
    }

    #[test]
    fn the_question_and_the_refusal_name_the_full_match() {
        let victim = vm("ux-zzvictim", "aaaa0000");
        insta::assert_snapshot!(
            question("delete", "ux-zz", &victim),
            @r#""ux-zz" is only a prefix of "ux-zzvictim" (id aaaa0000, running); delete ux-zzvictim? [y/N] "#
        );
        let err = ref_failure(
            RefError::PrefixOnly {
                query: "ux-zz".into(),
                matched: "ux-zzvictim".into(),
            },
            Some("delete"),
        );
        insta::assert_snapshot!(
            anstream::adapter::strip_str(&crate::errors::render(&crate::errors::translate(&err))).to_string(),
            @r#"
        error: "ux-zz" is only a prefix of "ux-zzvictim"; `vm delete` needs the full name or id (no terminal to confirm on)
        hint: banger vm delete ux-zzvictim
        "#
        );
    }
}
