//! The process context every command gets (environment snapshot, which streams are
//! terminals) and the connection to the daemon: where its socket is (`Dirs`, so
//! `BANGER_SOCKET` and the XDG variables apply), connecting, and calling a method while
//! events go to a sink. An unreachable daemon becomes [`CliError::DaemonDown`], which says
//! how to start it, never a bare connection error.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use banger_api::{ApiError, Client, ClientError, Event, Method};
use banger_model::dirs::Dirs;

use crate::errors::CliError;

/// Which standard streams are terminals. Decides prompts, spinners and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Term {
    pub fn detect() -> Term {
        Term {
            stdin: std::io::stdin().is_terminal(),
            stdout: std::io::stdout().is_terminal(),
            stderr: std::io::stderr().is_terminal(),
        }
    }
}

/// What a command may know about the process it runs in.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub term: Term,
    env: BTreeMap<String, String>,
    uid: u32,
}

impl Ctx {
    /// The context of this process.
    pub fn from_process() -> Ctx {
        Ctx {
            term: Term::detect(),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            uid: nix::unistd::getuid().as_raw(),
        }
    }

    /// A non-empty environment variable.
    pub fn env(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// banger's directories as the daemon resolves them from the same environment.
    /// An installed daemon (`system install`) of this user is found through the install
    /// metadata unless `BANGER_SOCKET`/`BANGER_RUNTIME_DIR` say otherwise.
    pub fn dirs(&self) -> Result<Dirs, CliError> {
        let mut dirs = Dirs::resolve(|key| self.env(key), self.uid)
            .map_err(|err| CliError::Local(anyhow::Error::new(err)))?;
        if self.env("BANGER_SOCKET").is_none()
            && self.env("BANGER_RUNTIME_DIR").is_none()
            && let Ok(installed) = banger_model::system::InstallMetadata::read(
                &banger_model::system::SystemLayout::from_env(|key| self.env(key)),
            )
            && installed.owner.uid == self.uid
        {
            dirs.socket = installed.paths.daemon_socket;
            dirs.runtime = installed.paths.runtime_dir;
            if self.env("BANGER_STATE_DIR").is_none() {
                dirs.state = installed.paths.state_dir;
            }
        }
        Ok(dirs)
    }

    /// The daemon's own log file (`<state>/bangerd.log`), which it writes besides its
    /// stderr so that `banger logs --op ID` and error messages can point at it.
    pub fn daemon_log(&self) -> Result<PathBuf, CliError> {
        Ok(banger_model::dirs::daemon_log(&self.dirs()?.state))
    }

    /// Connects to the daemon.
    pub async fn connect(&self) -> Result<Daemon, CliError> {
        let socket = self.dirs()?.socket;
        match Client::connect(&socket).await {
            Ok(client) => Ok(Daemon { client }),
            Err(ClientError::Unreachable { path, source }) => Err(CliError::DaemonDown {
                socket: path,
                reason: source.kind(),
                start_command: start_command(self),
                custom_location: self.env("BANGER_SOCKET").is_some()
                    || self.env("BANGER_RUNTIME_DIR").is_some(),
            }),
            Err(other) => Err(CliError::Daemon(other)),
        }
    }
}

/// An open connection to `bangerd`.
#[derive(Debug)]
pub struct Daemon {
    pub client: Client,
}

impl Daemon {
    /// Calls `M`, handing events to `on_event`. The op id announced by the daemon is
    /// attached to an error that does not carry one, so the user can refer to it.
    pub async fn call<M: Method>(
        &mut self,
        params: &M::Params,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<M::Output, CliError> {
        let mut op: Option<String> = None;
        let result = self
            .client
            .call::<M>(params, |event| {
                if let Event::OpStarted { op: id } = &event {
                    op = Some(id.clone());
                }
                on_event(event);
            })
            .await;
        result.map_err(|err| match err {
            ClientError::Api(api) if api.op.is_none() => {
                CliError::Daemon(ClientError::Api(attach_op(api, op)))
            }
            other => CliError::Daemon(other),
        })
    }

    /// Like [`Self::call`], streaming `input` to the request (a guest command's stdin, a
    /// tar stream) while the answer comes back.
    pub async fn call_with_input<M: Method, R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        params: &M::Params,
        input: R,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<M::Output, CliError> {
        let mut op: Option<String> = None;
        let result = self
            .client
            .call_with_input::<M, R>(params, input, |event| {
                if let Event::OpStarted { op: id } = &event {
                    op = Some(id.clone());
                }
                on_event(event);
            })
            .await;
        result.map_err(|err| match err {
            ClientError::Api(api) if api.op.is_none() => {
                CliError::Daemon(ClientError::Api(attach_op(api, op)))
            }
            other => CliError::Daemon(other),
        })
    }

    /// Like [`Self::call_with_input`] for a `vm.exec` on a terminal: the sizes from
    /// `resizes` follow the input as resize frames.
    pub async fn call_with_terminal<M: Method, R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        params: &M::Params,
        input: R,
        resizes: tokio::sync::mpsc::UnboundedReceiver<banger_api::methods::TerminalSize>,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<M::Output, CliError> {
        let mut op: Option<String> = None;
        let result = self
            .client
            .call_with_terminal::<M, R>(params, input, resizes, |event| {
                if let Event::OpStarted { op: id } = &event {
                    op = Some(id.clone());
                }
                on_event(event);
            })
            .await;
        result.map_err(|err| match err {
            ClientError::Api(api) if api.op.is_none() => {
                CliError::Daemon(ClientError::Api(attach_op(api, op)))
            }
            other => CliError::Daemon(other),
        })
    }

    /// Calls `M` when no events are expected (they are ignored).
    pub async fn ask<M: Method>(&mut self, params: &M::Params) -> Result<M::Output, CliError> {
        self.call::<M>(params, &mut |_| {}).await
    }

    /// Sends one request of a long operation, rendering its stages on `term` as they
    /// come (spinners on a terminal, plain lines otherwise).
    pub async fn call_with_progress<M: Method>(
        &mut self,
        term: &Term,
        params: &M::Params,
    ) -> Result<M::Output, CliError> {
        let mut progress = crate::progress::Progress::new(term);
        let result = self.call::<M>(params, &mut progress.sink()).await;
        progress.finish();
        result
    }
}

fn attach_op(api: ApiError, op: Option<String>) -> ApiError {
    match op {
        Some(op) => api.with_op(op),
        None => api,
    }
}

/// How to start the daemon here: `bangerd` from PATH, or the one installed next to this
/// binary (a cargo build or an unpacked release) when PATH has none.
fn start_command(ctx: &Ctx) -> String {
    let on_path = ctx
        .env("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("bangerd").is_file()))
        .unwrap_or(false);
    if !on_path
        && let Some(sibling) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("bangerd")))
            .filter(|path| path.is_file())
    {
        return format!("{} &", sibling.display());
    }
    "bangerd &".to_string()
}

/// Turns a user-given host path into an absolute one: the daemon has another working
/// directory.
pub fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    fs_err::canonicalize(path).map_err(|err| CliError::Local(anyhow::Error::new(err)))
}
