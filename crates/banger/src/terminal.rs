//! terminal: the user's terminal during `vm exec -t`. Raw mode while the guest's
//! terminal is in charge (keys, Ctrl-C included, go to the guest as bytes; the guest's
//! line discipline echoes and interrupts), restored on drop; the window size now and
//! on every SIGWINCH.

use std::os::fd::{AsFd, BorrowedFd};

use banger_api::methods::TerminalSize;
use nix::sys::termios::{self, SetArg, Termios};

/// The size assumed when stdout is not a terminal.
pub const DEFAULT_SIZE: TerminalSize = TerminalSize { rows: 24, cols: 80 };

/// The size of the terminal on stdout (or stdin), or [`DEFAULT_SIZE`].
pub fn current_size() -> TerminalSize {
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    [stdout.as_fd(), stdin.as_fd()]
        .into_iter()
        .find_map(|fd| banger_sys::terminal::window_size(fd).ok())
        .filter(|size| size.rows > 0 && size.cols > 0)
        .map_or(DEFAULT_SIZE, |size| TerminalSize {
            rows: size.rows,
            cols: size.cols,
        })
}

/// Sends the terminal's size on `sizes` after every SIGWINCH until the receiver goes.
pub fn watch_size_changes(sizes: tokio::sync::mpsc::UnboundedSender<TerminalSize>) {
    let Ok(mut changes) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            if sizes.send(current_size()).is_err() {
                return;
            }
        }
    });
}

/// stdin in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on stdin in raw mode; `None` when stdin is not a terminal.
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let fd: BorrowedFd<'_> = stdin.as_fd();
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
