//! Every external command banger runs goes through [`Cmd`]: a clean environment (only
//! `PATH`, `LANG=C.UTF-8` and what the caller adds explicitly), an explicit working
//! directory, a timeout, and errors that name the command and carry its stderr. Git
//! invocations additionally get `GIT_*` variables cleared by construction, since nothing
//! is inherited.
//!
//! [`CommandRunner`] is the narrow trait services take, so logic that shells out can be
//! tested with a fake runner; [`SystemRunner`] is the real one.

use std::ffi::OsString;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Default timeout when the caller sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How much of a failed command's stderr is kept in the error.
const STDERR_TAIL_BYTES: usize = 4096;

/// `PATH` given to children: the usual system locations, so a user's odd `PATH` cannot
/// swap in another `mkfs.ext4`.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    /// A pipe (or file) the child reads as stdin; taken by the first run.
    stdin_fd: Option<Arc<Mutex<Option<OwnedFd>>>>,
    timeout: Duration,
    stdout_file: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            stdin_fd: None,
            timeout: DEFAULT_TIMEOUT,
            stdout_file: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds one environment variable on top of the clean environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Bytes written to the child's stdin (otherwise stdin is `/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// The child reads stdin from `fd` (e.g. the read end of a `std::io::pipe()` that
    /// another thread writes a stream into). The fd is handed over at the first run; a
    /// second run of the same command (or a clone) gets `/dev/null`.
    pub fn stdin_fd(mut self, fd: impl Into<OwnedFd>) -> Cmd {
        self.stdin_fd = Some(Arc::new(Mutex::new(Some(fd.into()))));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// Sends stdout straight to a file instead of collecting it in memory (large outputs).
    pub fn stdout_to_file(mut self, path: impl Into<PathBuf>) -> Cmd {
        self.stdout_file = Some(path.into());
        self
    }

    pub fn program(&self) -> &OsString {
        &self.program
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    pub fn get_cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// The command line as a user would type it, for messages.
    pub fn display(&self) -> String {
        let mut out = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            out.push(' ');
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                out.push('\'');
                out.push_str(&arg.replace('\'', "'\\''"));
                out.push('\'');
            } else {
                out.push_str(&arg);
            }
        }
        out
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: String,
        /// The exit code, when the command exited rather than being killed.
        code: Option<i32>,
        stdout: Vec<u8>,
        stderr: String,
    },
    #[error("`{command}` did not finish within {}s and was killed", .timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("I/O with `{command}` failed")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

impl ExecError {
    /// The exit code of a command that ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::Failed { code, .. } => *code,
            _ => None,
        }
    }

    /// True when the program itself is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ExecError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The narrow trait services use to run commands.
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<CmdOutput, ExecError>>;
}

/// Runs commands on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<CmdOutput, ExecError>> {
        Box::pin(run(cmd))
    }
}

/// Runs `cmd` and returns its output when it exits 0.
pub async fn run(cmd: &Cmd) -> Result<CmdOutput, ExecError> {
    let command = cmd.display();
    let mut child_cmd = tokio::process::Command::new(&cmd.program);
    child_cmd
        .args(&cmd.args)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .env("LANG", "C.UTF-8");
    for (key, value) in &cmd.env {
        child_cmd.env(key, value);
    }
    match &cmd.cwd {
        Some(dir) => child_cmd.current_dir(dir),
        None => child_cmd.current_dir("/"),
    };
    let stdin_fd = cmd
        .stdin_fd
        .as_ref()
        .and_then(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).take());
    child_cmd
        .stdin(match stdin_fd {
            Some(fd) => Stdio::from(fd),
            None if cmd.stdin.is_some() => Stdio::piped(),
            None => Stdio::null(),
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match &cmd.stdout_file {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| ExecError::Io {
                command: command.clone(),
                source,
            })?;
            child_cmd.stdout(file);
        }
        None => {
            child_cmd.stdout(Stdio::piped());
        }
    }
    let mut child = child_cmd.spawn().map_err(|source| ExecError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let (Some(bytes), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
        let bytes = bytes.clone();
        // Written from a task so a child that fills its stdout pipe before reading all of
        // stdin cannot deadlock us.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let output = match tokio::time::timeout(cmd.timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| ExecError::Io {
            command: command.clone(),
            source,
        })?,
        Err(_) => {
            return Err(ExecError::TimedOut {
                command,
                timeout: cmd.timeout,
            });
        }
    };
    if output.status.success() {
        return Ok(CmdOutput {
            stdout: output.stdout,
            stderr: output.stderr,
        });
    }
    let status = match output.status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    };
    let stderr = String::from_utf8_lossy(tail(&output.stderr, STDERR_TAIL_BYTES)).into_owned();
    Err(ExecError::Failed {
        command,
        status,
        code: output.status.code(),
        stdout: output.stdout,
        stderr,
    })
}

fn tail(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        bytes
    } else {
        &bytes[bytes.len() - max..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn success_returns_stdout() {
        let out = run(&Cmd::new("sh").args(["-c", "printf hi"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hi");
    }

    #[tokio::test]
    async fn failure_names_command_and_stderr() {
        let err = run(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit code 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert!(text.contains("sh -c"), "{text}");
    }

    #[tokio::test]
    async fn environment_is_clean() {
        let out = run(&Cmd::new("sh").args(["-c", "env"]).env("ONLY_THIS", "1"))
            .await
            .unwrap();
        let text = out.stdout_text();
        assert!(text.contains("ONLY_THIS=1"));
        assert!(!text.contains("HOME="), "{text}");
        assert!(!text.contains("GIT_"), "{text}");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let err = run(&Cmd::new("sleep")
            .arg("5")
            .timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
    }

    #[tokio::test]
    async fn stdin_streams_from_a_pipe() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let feeder = std::thread::spawn(move || {
            use std::io::Write as _;
            for i in 0..1000 {
                writeln!(writer, "line {i}").unwrap();
            }
        });
        let cmd = Cmd::new("wc").arg("-l").stdin_fd(reader);
        let out = run(&cmd).await.unwrap();
        feeder.join().unwrap();
        assert_eq!(out.stdout_text().trim(), "1000");
        // The fd went to the first run; a second run reads /dev/null.
        assert_eq!(run(&cmd).await.unwrap().stdout_text().trim(), "0");
    }

    #[tokio::test]
    async fn stdin_is_fed() {
        let out = run(&Cmd::new("cat").stdin(b"abc".to_vec())).await.unwrap();
        assert_eq!(out.stdout, b"abc");
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let err = run(&Cmd::new("definitely-not-a-program-xyz"))
            .await
            .unwrap_err();
        assert!(err.is_not_found());
    }
}
