//! terminal: a CLI run on a real terminal, for `vm exec -it` and `vm ssh` tests and the
//! keystroke benchmark. `script(1)` gives the command a pty (as a user's terminal
//! would); the test types into script's stdin and reads what the terminal shows from
//! its stdout.

use std::io::{Read as _, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::host::TestHost;

/// One CLI command on its own terminal.
#[derive(Debug)]
pub struct TerminalSession {
    child: Child,
    input: ChildStdin,
    output: mpsc::Receiver<Vec<u8>>,
    /// Everything the terminal showed since the last [`TerminalSession::expect`] match.
    pending: Vec<u8>,
    /// Everything it showed, for failure messages.
    transcript: Vec<u8>,
}

/// Quotes `word` for `sh -c`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl TerminalSession {
    /// Starts `program args...` (with `host`'s environment) on a new terminal.
    pub fn spawn(host: &TestHost, program: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut line = shell_quote(&program.display().to_string());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        let mut child = host
            .command("script")
            .args([
                "--quiet",
                "--return",
                "--flush",
                "--command",
                &line,
                "/dev/null",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERM", "xterm")
            .envs(host.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run script(1) (util-linux)")?;
        let input = child.stdin.take().context("script's stdin")?;
        let mut stdout = child.stdout.take().context("script's stdout")?;
        let (sender, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = stdout.read(&mut buffer) {
                if count == 0 || sender.send(buffer[..count].to_vec()).is_err() {
                    return;
                }
            }
        });
        Ok(TerminalSession {
            child,
            input,
            output,
            pending: Vec::new(),
            transcript: Vec::new(),
        })
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &[u8]) -> Result<()> {
        self.input.write_all(keys)?;
        self.input.flush()?;
        Ok(())
    }

    /// Waits until the terminal shows `needle`; returns what it showed up to and
    /// including it (later output stays for the next call).
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = find(&self.pending, needle.as_bytes()) {
                let end = at + needle.len();
                let shown: Vec<u8> = self.pending.drain(..end).collect();
                return Ok(String::from_utf8_lossy(&shown).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the terminal did not show {needle:?} within {timeout:?}; it showed:\n{}",
                    String::from_utf8_lossy(&self.transcript)
                );
            }
            match self.output.recv_timeout(left) {
                Ok(chunk) => {
                    self.transcript.extend_from_slice(&chunk);
                    self.pending.extend_from_slice(&chunk);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "the terminal closed before showing {needle:?}; it showed:\n{}",
                    String::from_utf8_lossy(&self.transcript)
                ),
            }
        }
    }

    /// The pid of the command script runs (its only child).
    pub fn command_pid(&self) -> Result<u32> {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))?;
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .context("script has no child")
    }

    /// The terminal device the command runs on (`/dev/pts/N`).
    pub fn device(&self) -> Result<std::path::PathBuf> {
        Ok(std::fs::read_link(format!(
            "/proc/{}/fd/0",
            self.command_pid()?
        ))?)
    }

    /// Waits (at most `timeout`) for the command to end; its exit code. The terminal's
    /// output ends when script(1) exits (it alone holds the pipe), so this waits for that
    /// end, keeping what was shown for the failure message, then reaps script.
    pub fn wait(mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.transcript.extend_from_slice(&chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    bail!(
                        "the terminal's command did not end within {timeout:?}; it showed:\n{}",
                        String::from_utf8_lossy(&self.transcript)
                    );
                }
            }
        }
        Ok(self.child.wait()?.code())
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
