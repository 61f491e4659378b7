//! The user's config file, `<config dir>/config.toml` (`~/.config/banger/config.toml`
//! unless `BANGER_CONFIG_DIR` or `XDG_CONFIG_HOME` moves the config dir): defaults for new
//! VMs that flags override. `file` parses it (pure), `settings` merges flags, file and
//! built-in defaults (pure); this module only finds and reads the file. A missing file
//! is an empty one.

pub mod file;
pub mod settings;

use std::path::{Path, PathBuf};

pub use file::{FileConfig, FileSync};
pub use settings::{Flags, Settings, Source, resolve};

use crate::connect::Ctx;
use crate::errors::CliError;

/// The config file's name inside the config dir.
pub const FILE_NAME: &str = "config.toml";

/// Where the config file is for this process's environment.
pub fn path(ctx: &Ctx) -> Result<PathBuf, CliError> {
    Ok(ctx.dirs()?.config.join(FILE_NAME))
}

/// Reads and parses the config file at `path`; no file is an empty config.
pub fn read(path: &Path) -> Result<FileConfig, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(err) => {
            return Err(CliError::Local(
                anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
            ));
        }
    };
    file::parse(path, &text).map_err(|err| {
        CliError::failed(
            err.to_string(),
            Some("fix the file (README.md, \"The config file\", lists the keys) or move it away"),
        )
    })
}

/// The effective settings of a new VM for these flags.
pub fn settings(ctx: &Ctx, flags: &Flags) -> Result<Settings, CliError> {
    let file = read(&path(ctx)?)?;
    Ok(resolve(flags, &file))
}
