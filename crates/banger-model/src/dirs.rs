//! Where banger keeps its files. Resolved from the environment by a pure function that
//! takes the variable lookup as a parameter, so tests (and the e2e harness) isolate each
//! run with `BANGER_*_DIR` or `XDG_*` variables.
//!
//! | dir | override | default |
//! | --- | --- | --- |
//! | state | `BANGER_STATE_DIR` | `$XDG_STATE_HOME/banger`, else `~/.local/state/banger` |
//! | cache | `BANGER_CACHE_DIR` | `$XDG_CACHE_HOME/banger`, else `~/.cache/banger` |
//! | runtime | `BANGER_RUNTIME_DIR` | `$XDG_RUNTIME_DIR/banger`, else `/tmp/banger-<uid>` |
//! | config | `BANGER_CONFIG_DIR` | `$XDG_CONFIG_HOME/banger`, else `~/.config/banger` |
//!
//! The daemon socket is `<runtime>/bangerd.sock` unless `BANGER_SOCKET` names another.

use std::path::PathBuf;

/// banger's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Durable state: the SQLite database, VM directories, images.
    pub state: PathBuf,
    /// Re-creatable downloads and build inputs (kernels, .deb files).
    pub cache: PathBuf,
    /// Sockets and pid files; gone after a reboot.
    pub runtime: PathBuf,
    /// User configuration and banger's ssh key.
    pub config: PathBuf,
    /// The daemon's socket.
    pub socket: PathBuf,
}

/// Why the directories could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirsError {
    #[error("neither {override_var} nor HOME is set; cannot place banger's {which} directory")]
    NoHome {
        which: &'static str,
        override_var: &'static str,
    },
}

impl Dirs {
    /// Resolves the directories from environment lookups and the current uid.
    pub fn resolve(env: impl Fn(&str) -> Option<String>, uid: u32) -> Result<Dirs, DirsError> {
        let get = |key: &str| env(key).filter(|v| !v.is_empty());
        let home = get("HOME").map(PathBuf::from);
        let pick = |override_var: &'static str,
                    xdg_var: &str,
                    home_suffix: &str,
                    which: &'static str|
         -> Result<PathBuf, DirsError> {
            if let Some(dir) = get(override_var) {
                return Ok(PathBuf::from(dir));
            }
            if let Some(dir) = get(xdg_var) {
                return Ok(PathBuf::from(dir).join("banger"));
            }
            match &home {
                Some(home) => Ok(home.join(home_suffix).join("banger")),
                None => Err(DirsError::NoHome {
                    which,
                    override_var,
                }),
            }
        };
        let state = pick(
            "BANGER_STATE_DIR",
            "XDG_STATE_HOME",
            ".local/state",
            "state",
        )?;
        let cache = pick("BANGER_CACHE_DIR", "XDG_CACHE_HOME", ".cache", "cache")?;
        let config = pick("BANGER_CONFIG_DIR", "XDG_CONFIG_HOME", ".config", "config")?;
        let runtime = match (get("BANGER_RUNTIME_DIR"), get("XDG_RUNTIME_DIR")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(dir)) => PathBuf::from(dir).join("banger"),
            (None, None) => PathBuf::from(format!("/tmp/banger-{uid}")),
        };
        let socket = get("BANGER_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| runtime.join("bangerd.sock"));
        Ok(Dirs {
            state,
            cache,
            runtime,
            config,
            socket,
        })
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.state.join("banger.db")
    }
}

/// The daemon's log file in a state directory: `bangerd` appends every log line there
/// besides its stderr; `banger logs --op ID` reads it.
pub fn daemon_log(state: &std::path::Path) -> PathBuf {
    state.join("bangerd.log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn defaults_under_home() {
        let dirs = Dirs::resolve(env(&[("HOME", "/home/u")]), 1000).unwrap();
        assert_eq!(dirs.state, PathBuf::from("/home/u/.local/state/banger"));
        assert_eq!(dirs.cache, PathBuf::from("/home/u/.cache/banger"));
        assert_eq!(dirs.config, PathBuf::from("/home/u/.config/banger"));
        assert_eq!(dirs.runtime, PathBuf::from("/tmp/banger-1000"));
        assert_eq!(dirs.socket, PathBuf::from("/tmp/banger-1000/bangerd.sock"));
    }

    #[test]
    fn xdg_then_override() {
        let dirs = Dirs::resolve(
            env(&[
                ("HOME", "/home/u"),
                ("XDG_STATE_HOME", "/x/state"),
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("BANGER_CACHE_DIR", "/o/cache"),
                ("BANGER_SOCKET", "/o/sock"),
            ]),
            1000,
        )
        .unwrap();
        assert_eq!(dirs.state, PathBuf::from("/x/state/banger"));
        assert_eq!(dirs.cache, PathBuf::from("/o/cache"));
        assert_eq!(dirs.runtime, PathBuf::from("/run/user/1000/banger"));
        assert_eq!(dirs.socket, PathBuf::from("/o/sock"));
    }

    #[test]
    fn no_home_is_an_error_unless_overridden() {
        assert!(Dirs::resolve(env(&[]), 0).is_err());
        let dirs = Dirs::resolve(
            env(&[
                ("BANGER_STATE_DIR", "/s"),
                ("BANGER_CACHE_DIR", "/c"),
                ("BANGER_CONFIG_DIR", "/f"),
                ("BANGER_RUNTIME_DIR", "/r"),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(dirs.database(), PathBuf::from("/s/banger.db"));
    }
}
