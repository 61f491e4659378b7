//! terminal: the ioctls of pseudo-terminals, for the agent's `exec -t` (a command that
//! leads its own session with the pty as controlling terminal, resized on request) and
//! for the CLI (the size of the user's terminal).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;

use nix::pty::Winsize;

nix::ioctl_write_ptr_bad!(set_winsize_raw, libc::TIOCSWINSZ, Winsize);
nix::ioctl_read_bad!(get_winsize_raw, libc::TIOCGWINSZ, Winsize);

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellSize {
    pub rows: u16,
    pub cols: u16,
}

impl CellSize {
    fn winsize(self) -> Winsize {
        Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// Sets the size of the terminal behind `fd` (a pty master or slave); the kernel sends
/// SIGWINCH to its foreground process group.
pub fn set_window_size(fd: BorrowedFd<'_>, size: CellSize) -> io::Result<()> {
    let winsize = size.winsize();
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer, which points at
    // a live, initialised local for the whole call; a bad fd is reported as an error.
    unsafe { set_winsize_raw(fd.as_raw_fd(), &winsize) }
        .map(drop)
        .map_err(io::Error::from)
}

/// The size of the terminal behind `fd`; an error when it is not a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<CellSize> {
    let mut winsize = CellSize { rows: 0, cols: 0 }.winsize();
    // SAFETY: TIOCGWINSZ writes one `struct winsize` through the pointer, which points
    // at a live local of that type; a bad fd or a non-terminal is reported as an error.
    unsafe { get_winsize_raw(fd.as_raw_fd(), &mut winsize) }.map_err(io::Error::from)?;
    Ok(CellSize {
        rows: winsize.ws_row,
        cols: winsize.ws_col,
    })
}

/// Gives the child the default action for SIGINT and SIGQUIT before exec. The agent may
/// have been started as a shell's background job (a guest's init), which ignores both,
/// and an ignored signal stays ignored across exec: Ctrl-C on a guest terminal would
/// then reach the job and do nothing. (std already resets the signal mask and SIGPIPE.)
pub fn default_signals_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: signal(2) with SIG_DFL is (it installs no
    // handler), and the error path builds an io::Error from errno without allocating.
    unsafe {
        cmd.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes the child start a new session and take its stdin (a pty slave) as its
/// controlling terminal before exec, as a login shell's terminal is: job control works
/// and the line discipline turns a Ctrl-C byte into SIGINT for the foreground job.
pub fn controlling_terminal_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: setsid(2) and ioctl(2) are, and the error path
    // builds an io::Error from a raw errno without allocating. No locks, no shared state.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
