//! `completion <shell>`: prints the script that registers banger's dynamic completion
//! with a shell, the same one `COMPLETE=<shell> banger` prints. The script calls banger
//! back on every TAB, so VM, image and kernel names come live from the daemon and the
//! built-in catalog.

use std::io::Write as _;

use clap::{Args, ValueEnum};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};

use crate::errors::CliError;

/// Shells banger can complete in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Print the shell completion script
#[derive(Debug, Args)]
#[command(
    long_about = "Print the script that enables TAB completion of banger's commands, flags \
and names (VMs, images, kernels) in your shell. Load it from your shell's startup file; it \
calls banger for each completion, so regenerate it after upgrading banger.",
    after_help = "\
Examples:
  echo 'source <(banger completion bash)' >> ~/.bashrc
  echo 'source <(banger completion zsh)' >> ~/.zshrc
  banger completion fish > ~/.config/fish/completions/banger.fish"
)]
pub struct CompletionArgs {
    /// The shell to print the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `completion`.
pub fn completion(args: CompletionArgs) -> Result<(), CliError> {
    let completer: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
        Shell::Elvish => &Elvish,
        Shell::Powershell => &Powershell,
    };
    let mut script = Vec::new();
    completer.write_registration(
        "COMPLETE",
        "banger",
        "banger",
        &completer_path(),
        &mut script,
    )?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}

/// The program the script calls back, chosen as `CompleteEnv` chooses it: how banger was
/// invoked, made absolute when it was a relative path with a directory part.
fn completer_path() -> String {
    let argv0 = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "banger".into());
    let path = if argv0.components().count() > 1 && argv0.is_relative() {
        std::env::current_dir()
            .map(|dir| dir.join(&argv0))
            .unwrap_or(argv0)
    } else {
        argv0
    };
    path.to_string_lossy().into_owned()
}
