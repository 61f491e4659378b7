//! tool: how the helper runs `ip`, `nft`, `losetup` and `resolvectl`. Never a shell:
//! a fixed program name and an explicit argv, a clean environment (only `PATH` with the
//! system directories and `LANG=C.UTF-8`, so output is parseable and a caller's
//! environment cannot swap a binary), `/` as the working directory and a deadline after
//! which the child is killed. This is banger-exec's contract, rewritten synchronously
//! because the helper carries no async runtime.
//!
//! [`ToolRunner`] is the narrow trait the operations take, so their command sequences are
//! testable with a recording fake; [`SystemTools`] is the real one.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Every tool the helper runs finishes in well under a second; the limit only guards
/// against a wedged one holding the helper's lock forever.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// `PATH` given to children.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of a failed tool's stderr goes into the error.
const STDERR_TAIL_BYTES: usize = 2048;

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub args: Vec<OsString>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Tool {
    pub fn new(program: &'static str) -> Tool {
        Tool {
            program,
            args: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TOOL_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Tool {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Tool {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line for messages (arguments are never shell-interpreted).
    pub fn display(&self) -> String {
        let mut out = self.program.to_owned();
        for arg in &self.args {
            out.push(' ');
            out.push_str(&arg.to_string_lossy());
        }
        out
    }
}

/// What a successful command printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{program}` is not installed")]
    NotFound { program: &'static str },
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
        stderr: String,
    },
    #[error("`{command}` did not finish within {}s and was killed", .timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("waiting for `{command}` failed")]
    Wait {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    match stderr.trim() {
        "" => String::new(),
        text => format!(": {text}"),
    }
}

impl ToolError {
    /// The program itself is missing (a host without `nft`, `resolvectl`, ...).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ToolError::NotFound { .. })
    }

    /// The failed command's stderr, if it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ToolError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Runs commands; the real one is [`SystemTools`].
pub trait ToolRunner: Send + Sync + std::fmt::Debug {
    fn run(&self, tool: &Tool) -> Result<ToolOutput, ToolError>;
}

/// Runs commands on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTools;

impl ToolRunner for SystemTools {
    fn run(&self, tool: &Tool) -> Result<ToolOutput, ToolError> {
        run_tool(tool)
    }
}

fn run_tool(tool: &Tool) -> Result<ToolOutput, ToolError> {
    let command = tool.display();
    let mut child = Command::new(tool.program)
        .args(&tool.args)
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(if tool.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ToolError::NotFound {
                    program: tool.program,
                }
            } else {
                ToolError::Spawn {
                    command: command.clone(),
                    source,
                }
            }
        })?;
    let wait_error = |source| ToolError::Wait {
        command: command.clone(),
        source,
    };
    // Taken before anything can reap the child, so the pid cannot have been reused.
    let pidfd = banger_sys::process::pidfd_open(child.id());

    // Pipes are drained (and stdin fed) on their own threads so a child that fills one
    // pipe while we wait on another cannot deadlock.
    let stdin_writer = match (tool.stdin.clone(), child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(thread::spawn(move || {
            // A child that exits without reading all of stdin is judged by its status.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let stdout_reader = child.stdout.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });
    let stderr_reader = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });

    let exited_in_time = match &pidfd {
        Ok(pidfd) => wait_readable(pidfd.as_fd(), tool.timeout).map_err(wait_error)?,
        // Without pidfds (very old kernels) fall back to an unbounded wait.
        Err(_) => true,
    };
    if !exited_in_time {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ToolError::TimedOut {
            command,
            timeout: tool.timeout,
        });
    }
    let status = child.wait().map_err(wait_error)?;
    if let Some(writer) = stdin_writer {
        let _ = writer.join();
    }
    let stdout = stdout_reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let stderr = stderr_reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    if status.success() {
        return Ok(ToolOutput { stdout, stderr });
    }
    let status = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL_BYTES)..];
    Err(ToolError::Failed {
        command,
        status,
        stderr: String::from_utf8_lossy(tail).into_owned(),
    })
}

/// Waits until a pidfd becomes readable (the process exited) or `timeout` passes.
fn wait_readable(pidfd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> std::io::Result<bool> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            // A signal interrupted the wait; waiting again restarts the full timeout,
            // which only lengthens the limit on a wedged tool.
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_returns_stdout_and_feeds_stdin() {
        let out = SystemTools
            .run(&Tool::new("cat").stdin(b"abc".to_vec()))
            .unwrap();
        assert_eq!(out.stdout, b"abc");
    }

    #[test]
    fn failure_names_command_and_stderr() {
        let error = SystemTools
            .run(&Tool::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("exit code 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert_eq!(error.stderr().map(str::trim), Some("boom"));
    }

    #[test]
    fn environment_is_clean() {
        let out = SystemTools.run(&Tool::new("env")).unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["LANG", "PATH"], "{text}");
    }

    #[test]
    fn a_wedged_tool_is_killed() {
        let mut tool = Tool::new("sleep").arg("30");
        tool.timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let error = SystemTools.run(&tool).unwrap_err();
        assert!(matches!(error, ToolError::TimedOut { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_reported_as_such() {
        let error = SystemTools
            .run(&Tool::new("definitely-not-a-banger-tool"))
            .unwrap_err();
        assert!(error.is_not_found(), "{error}");
    }
}
