//! Renders the events of a daemon call: `Event::Stage` as progress on stderr and
//! `Event::Output` as the guest's bytes on stdout/stderr. On a terminal each running stage
//! is a spinner and each finished stage a line; elsewhere (pipes, CI logs) every start and
//! finish is a plain line such as `[  1.2s] boot ... done`, so logs stay readable. Data
//! never goes to stderr and progress never to stdout. A stage that moves bytes (a
//! download) shows them with its rate while it runs, and its done line says how much
//! moved and how fast.

use std::io::Write as _;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use banger_api::{Event, OutputStream, StageState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::connect::Term;
use crate::render;

/// How stages are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Spinners on a terminal.
    Spinner,
    /// One line per stage start and finish.
    Plain,
}

/// Receives a call's events and draws them.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    colour: bool,
    bars: MultiProgress,
    active: Vec<(String, ProgressBar)>,
    /// Per stage: (bytes done, first and latest elapsed ms seen).
    transfers: Vec<(String, Transfer)>,
    /// The VM (or other subject) every line names, when several run at once.
    label: Option<String>,
}

/// What a stage's byte events said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transfer {
    done: u64,
    started_ms: u64,
    latest_ms: u64,
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn new(term: &Term) -> Progress {
        let mode = if term.stderr {
            Mode::Spinner
        } else {
            Mode::Plain
        };
        let target = match mode {
            Mode::Spinner => ProgressDrawTarget::stderr(),
            Mode::Plain => ProgressDrawTarget::hidden(),
        };
        Progress {
            mode,
            colour: render::stderr_colour(),
            bars: MultiProgress::with_draw_target(target),
            active: Vec::new(),
            transfers: Vec::new(),
            label: None,
        }
    }

    /// Plain lines that each start with `label: `, for calls that run side by side
    /// (`vm stop web db`): spinners of concurrent calls would overwrite each other.
    pub fn labelled(mut self, label: &str) -> Progress {
        self.mode = Mode::Plain;
        self.label = Some(label.to_string());
        self
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::OpStarted { .. } => {}
            Event::Stage {
                stage,
                state,
                elapsed_ms,
                detail,
                ..
            } => {
                let detail = match (state, self.transfer(&stage)) {
                    (StageState::Done, Some(transfer)) => {
                        Some(with_transfer(detail.as_deref(), transfer, elapsed_ms))
                    }
                    _ => detail,
                };
                self.stage(stage, state, elapsed_ms, detail.as_deref())
            }
            Event::Bytes {
                stage,
                done,
                total,
                elapsed_ms,
                ..
            } => self.bytes(stage, done, total, elapsed_ms),
            Event::Output { stream, data } => self.output(stream, &data),
        }
    }

    /// A closure over [`Progress::handle`], the shape `Daemon::call` takes.
    pub fn sink(&mut self) -> impl FnMut(Event) + '_ {
        |event| self.handle(event)
    }

    /// Clears spinners of stages that never reported done (the call failed).
    pub fn finish(&mut self) {
        for (_, bar) in self.active.drain(..) {
            bar.finish_and_clear();
        }
    }

    fn stage(&mut self, stage: String, state: StageState, elapsed_ms: u64, detail: Option<&str>) {
        let mut line = stage_line(&stage, state, elapsed_ms, detail, self.colour);
        if let Some(label) = &self.label {
            line = format!("{label}: {line}");
        }
        match self.mode {
            Mode::Plain => write_stderr(&line),
            Mode::Spinner => match state {
                StageState::Started => {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(stage.clone());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.active.push((stage, bar));
                }
                StageState::Done => {
                    if let Some(index) = self.active.iter().position(|(name, _)| *name == stage) {
                        let (_, bar) = self.active.remove(index);
                        bar.finish_and_clear();
                    }
                    if self.bars.println(line.trim_end()).is_err() {
                        write_stderr(&line);
                    }
                }
            },
        }
    }

    fn transfer(&self, stage: &str) -> Option<Transfer> {
        self.transfers
            .iter()
            .find(|(name, _)| name == stage)
            .map(|(_, t)| *t)
    }

    fn bytes(&mut self, stage: String, done: u64, total: Option<u64>, elapsed_ms: u64) {
        let transfer = match self.transfers.iter_mut().find(|(name, _)| *name == stage) {
            Some((_, transfer)) => {
                transfer.done = done;
                transfer.latest_ms = elapsed_ms;
                *transfer
            }
            None => {
                let transfer = Transfer {
                    done,
                    started_ms: elapsed_ms,
                    latest_ms: elapsed_ms,
                };
                self.transfers.push((stage.clone(), transfer));
                transfer
            }
        };
        if let Some((_, bar)) = self.active.iter().find(|(name, _)| *name == stage) {
            let rate = rate(
                transfer.done,
                transfer.latest_ms.saturating_sub(transfer.started_ms),
            );
            let amount = match total {
                Some(total) => format!(
                    "{} / {}",
                    crate::render::approx_bytes(done),
                    crate::render::approx_bytes(total)
                ),
                None => crate::render::approx_bytes(done),
            };
            let rate = rate
                .map(|r| format!(", {}/s", crate::render::approx_bytes(r)))
                .unwrap_or_default();
            bar.set_message(format!("{stage} {amount}{rate}"));
        }
    }

    fn output(&mut self, stream: OutputStream, data: &[u8]) {
        // Guest bytes go out untouched (no colour stripping): they are the command's data.
        let write = || match stream {
            OutputStream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(data).and_then(|()| out.flush());
            }
            OutputStream::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(data).and_then(|()| err.flush());
            }
        };
        if self.active.is_empty() {
            write();
        } else {
            self.bars.suspend(write);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_stderr(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(line.as_bytes());
}

/// Bytes per second over `ms`, when the span is long enough to mean something.
fn rate(bytes: u64, ms: u64) -> Option<u64> {
    (ms >= 200).then(|| bytes.saturating_mul(1000) / ms)
}

/// A done stage's detail with what it moved: `12.0 MiB at 3.1 MiB/s`. The rate runs
/// from the first byte event to the stage's end.
fn with_transfer(detail: Option<&str>, transfer: Transfer, done_ms: u64) -> String {
    let moved = if transfer.done == 0 {
        "nothing downloaded".to_string()
    } else {
        match rate(transfer.done, done_ms.saturating_sub(transfer.started_ms)) {
            Some(rate) => format!(
                "{} downloaded at {}/s",
                crate::render::approx_bytes(transfer.done),
                crate::render::approx_bytes(rate)
            ),
            None => format!("{} downloaded", crate::render::approx_bytes(transfer.done)),
        }
    };
    match detail.filter(|d| !d.is_empty()) {
        Some(detail) => format!("{detail}; {moved}"),
        None => moved,
    }
}

/// One progress line: `[  1.2s] boot ... done (detail)`.
pub fn stage_line(
    stage: &str,
    state: StageState,
    elapsed_ms: u64,
    detail: Option<&str>,
    colour: bool,
) -> String {
    let secs = elapsed_ms as f64 / 1000.0;
    let dim = if colour {
        Style::new().dimmed()
    } else {
        Style::new()
    };
    let mut line = format!("{dim}[{secs:>5.1}s]{dim:#} {stage} ...");
    if state == StageState::Done {
        let green = if colour {
            Style::new().fg_color(Some(AnsiColor::Green.into()))
        } else {
            Style::new()
        };
        line.push_str(&format!(" {green}done{green:#}"));
        if let Some(detail) = detail.filter(|d| !d.is_empty()) {
            line.push_str(&format!(" ({detail})"));
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stage_lines() {
        let cases: &[(&str, StageState, u64, Option<&str>, &str)] = &[
            ("boot", StageState::Started, 0, None, "[  0.0s] boot ...\n"),
            (
                "boot",
                StageState::Done,
                1234,
                None,
                "[  1.2s] boot ... done\n",
            ),
            (
                "resolve image",
                StageState::Done,
                61_040,
                Some("debian-bookworm"),
                "[ 61.0s] resolve image ... done (debian-bookworm)\n",
            ),
            (
                "disk",
                StageState::Done,
                123_456,
                Some(""),
                "[123.5s] disk ... done\n",
            ),
            (
                "boot",
                StageState::Started,
                5,
                Some("ignored while running"),
                "[  0.0s] boot ...\n",
            ),
        ];
        for (stage, state, elapsed, detail, expected) in cases {
            assert_eq!(
                stage_line(stage, *state, *elapsed, *detail, false),
                *expected,
                "{stage} {state:?} {elapsed}"
            );
        }
    }

    #[test]
    fn transfers_add_amount_and_rate_to_the_done_line() {
        let transfer = |done, started_ms| Transfer {
            done,
            started_ms,
            latest_ms: started_ms,
        };
        let cases = [
            (
                Some("2 layers"),
                transfer(10 << 20, 0),
                2000,
                "2 layers; 10.0MiB downloaded at 5.0MiB/s",
            ),
            (None, transfer(3 << 20, 1000), 1100, "3.0MiB downloaded"),
            (Some(""), transfer(0, 0), 5000, "nothing downloaded"),
        ];
        for (detail, transfer, done_ms, expected) in cases {
            assert_eq!(with_transfer(detail, transfer, done_ms), expected);
        }
        for (bytes, text) in [
            (500, "500B"),
            (36_483_691, "34.8MiB"),
            (300 << 20, "300MiB"),
            (5 << 30, "5.0GiB"),
        ] {
            assert_eq!(crate::render::approx_bytes(bytes), text);
        }
        let mut progress = Progress {
            mode: Mode::Plain,
            colour: false,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            active: Vec::new(),
            transfers: Vec::new(),
            label: None,
        };
        progress.bytes("download layers".into(), 1 << 20, Some(4 << 20), 100);
        progress.bytes("download layers".into(), 4 << 20, Some(4 << 20), 1100);
        assert_eq!(
            progress.transfer("download layers"),
            Some(Transfer {
                done: 4 << 20,
                started_ms: 100,
                latest_ms: 1100
            })
        );
    }

    #[test]
    fn coloured_lines_carry_escapes_only_when_asked() {
        let plain = stage_line("boot", StageState::Done, 10, None, false);
        let coloured = stage_line("boot", StageState::Done, 10, None, true);
        assert!(!plain.contains('\u{1b}'));
        assert!(coloured.contains('\u{1b}'));
    }
}
