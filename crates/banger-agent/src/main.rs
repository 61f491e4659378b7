//! banger-agent: the guest side of banger's host <-> guest channel. Parses the command
//! line, then serves each channel on its own thread forever: a channel that fails is
//! restarted, and the agent never exits on its own (the guest's init does not always
//! restart it).

mod args;
mod channel;
mod exec;
mod files;
mod identity;
mod log;
mod ports;
mod session;
mod sink;
mod sysinfo;
mod transfer;
mod tty;
mod users;

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::args::{ChannelSpec, Command, USAGE, parse_args};
use crate::log::agent_log;
use crate::session::Agent;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            let _ = writeln!(
                std::io::stdout(),
                "banger-agent {}",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(channels)) => serve_forever(channels),
        Err(error) => {
            agent_log!("{error}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve_forever(channels: Vec<ChannelSpec>) -> ExitCode {
    let agent = Arc::new(Agent::new());
    for spec in channels {
        let agent = Arc::clone(&agent);
        let name = format!("channel-{spec:?}");
        let supervisor = thread::Builder::new()
            .name("channel".to_owned())
            .spawn(move || supervise(&spec, &agent));
        if let Err(error) = supervisor {
            agent_log!("cannot start {name}: {error}");
            return ExitCode::FAILURE;
        }
    }
    // The channel threads do the work; the main thread only keeps the process alive.
    loop {
        thread::park();
    }
}

/// Runs a channel; if it panics (a bug), logs and starts it again after a pause.
fn supervise(spec: &ChannelSpec, agent: &Arc<Agent>) {
    loop {
        if catch_unwind(AssertUnwindSafe(|| channel::serve(spec, agent))).is_err() {
            agent_log!("the {spec:?} channel crashed; restarting it");
        }
        thread::sleep(Duration::from_secs(1));
    }
}
