//! The command tree as users see it: clap's own consistency checks, help snapshots for
//! the main commands, and a check that every command documents itself (a one-line
//! about, a long description, examples).

use super::*;

/// Renders `banger <path> --help` at a fixed width, as the user would see it.
fn help(path: &[&str]) -> String {
    let mut argv = vec!["banger"];
    argv.extend_from_slice(path);
    argv.push("--help");
    let err = command()
        .term_width(100)
        .try_get_matches_from(argv)
        .expect_err("--help ends parsing");
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    err.render().to_string()
}

#[test]
fn the_command_tree_is_consistent() {
    command().debug_assert();
}

#[test]
fn help_top_level() {
    insta::assert_snapshot!(help(&[]));
}

#[test]
fn help_vm() {
    insta::assert_snapshot!(help(&["vm"]));
}

#[test]
fn help_vm_run() {
    insta::assert_snapshot!(help(&["vm", "run"]));
}

#[test]
fn help_vm_stop() {
    insta::assert_snapshot!(help(&["vm", "stop"]));
}

#[test]
fn help_vm_kill() {
    insta::assert_snapshot!(help(&["vm", "kill"]));
}

#[test]
fn help_vm_list() {
    insta::assert_snapshot!(help(&["vm", "list"]));
}

#[test]
fn help_vm_delete() {
    insta::assert_snapshot!(help(&["vm", "delete"]));
}

#[test]
fn help_logs() {
    insta::assert_snapshot!(help(&["logs"]));
}

/// Every alias the help promises parses to its command.
#[test]
fn aliases_are_listed_and_work() {
    for argv in [
        &["banger", "ps"][..],
        &["banger", "rm", "web"],
        &["banger", "vm", "ls"],
        &["banger", "vm", "ps"],
        &["banger", "vm", "rm", "-f", "web"],
    ] {
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let ok = matches!(
            cli.command,
            Command::Ps(_)
                | Command::Rm(_)
                | Command::Vm(VmCommand::List(_))
                | Command::Vm(VmCommand::Delete(_))
        );
        assert!(ok, "{argv:?}");
    }
    let top = help(&[]);
    assert!(top.contains("ps ") && top.contains("rm "), "{top}");
    let vm = help(&["vm"]);
    assert!(vm.contains("[aliases: ls, ps]"), "{vm}");
    assert!(vm.contains("[alias: rm]"), "{vm}");
}

#[test]
fn help_image() {
    insta::assert_snapshot!(help(&["image"]));
}

#[test]
fn help_doctor() {
    insta::assert_snapshot!(help(&["doctor"]));
}

/// Every command and group: an about line, a long description, and examples.
#[test]
fn every_command_documents_itself() {
    fn walk(cmd: &clap::Command, path: String, problems: &mut Vec<String>) {
        if cmd.get_about().is_none() {
            problems.push(format!("{path}: no about"));
        }
        if cmd.get_long_about().is_none() {
            problems.push(format!("{path}: no long_about"));
        }
        let examples = cmd
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !(examples.starts_with("Examples:\n  ") && examples.contains("banger ")) {
            problems.push(format!("{path}: after_help must start with `Examples:`"));
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, format!("{path} {}", sub.get_name()), problems);
            }
        }
    }
    let mut cmd = command();
    cmd.build();
    let mut problems = Vec::new();
    walk(&cmd, "banger".into(), &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Commands that print data take `--json`.
#[test]
fn data_commands_take_json() {
    let data_commands: &[&[&str]] = &[
        &["vm", "list"],
        &["vm", "show"],
        &["vm", "stats"],
        &["vm", "ports"],
        &["vm", "create"],
        &["health"],
        &["ping"],
        &["version"],
        &["doctor"],
        &["image", "list"],
        &["image", "show"],
        &["image", "pull"],
        &["image", "import"],
        &["image", "register"],
        &["image", "promote"],
        &["image", "cache", "prune"],
        &["kernel", "catalog"],
        &["kernel", "list"],
        &["kernel", "show"],
        &["kernel", "pull"],
    ];
    let root = command();
    for path in data_commands {
        let mut cmd = &root;
        for name in *path {
            cmd = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {path:?}"));
        }
        assert!(
            cmd.get_arguments().any(|a| a.get_long() == Some("json")),
            "{path:?} lacks --json"
        );
    }
}

/// What clap makes of tricky command lines.
#[test]
fn argv_after_double_dash_arrives_intact() {
    let cli =
        Cli::try_parse_from(["banger", "vm", "exec", "web", "--", "sh", "-c", "exit 42"]).unwrap();
    let Command::Vm(VmCommand::Exec(args)) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.vm.vm, "web");
    assert_eq!(args.command, ["sh", "-c", "exit 42"]);

    let cli = Cli::try_parse_from(["banger", "vm", "run", "./repo", "--", "make", "-j2", "test"])
        .unwrap();
    let Command::Vm(VmCommand::Run(args)) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.path.as_deref(), Some(std::path::Path::new("./repo")));
    assert_eq!(args.command, ["make", "-j2", "test"]);
}

#[test]
fn usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["vm", "create", "--name", "Bad_Name"], "VM name"),
        (&["vm", "create", "--memory", "0"], "zero"),
        (&["vm", "create", "--vcpu", "0"], "--vcpu"),
        (&["vm", "create", "--disk", "100MiB"], "at least 1GiB"),
        (&["vm", "run", "-d", "--rm"], "cannot be used with"),
        (&["vm", "run", "-d", "--", "true"], "cannot be used with"),
        (&["vm", "run", "./repo", "make"], "unexpected argument"),
        (&["vm", "exec", "web"], "required"),
        (&["vm", "set", "web"], "required"),
        (
            &["vm", "kill", "web", "--signal", "BOGUS"],
            "unknown signal",
        ),
        (&["image", "import", "x:1", "--name", "Bad"], "image name"),
        (&["vm", "stop"], "required"),
        (&["vm", "delete", "--all", "web"], "cannot be used with"),
        (&["vm", "list", "--filter", "colour=red"], "unknown filter"),
        (&["vm", "list", "--filter", "state=up"], "unknown VM state"),
        (&["vm", "list", "-q", "--json"], "cannot be used with"),
        (
            &["ssh-config", "--install", "--uninstall"],
            "cannot be used with",
        ),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["banger"];
        argv.extend_from_slice(args);
        let err = Cli::try_parse_from(argv).expect_err("must be refused");
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let text = err.to_string();
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}
