//! vm_wait: `vm exec` and `vm ssh` on a VM that is still booting wait for it (with a
//! stage line and `--timeout`) instead of failing with advice to start it. A VM in any
//! other state is left for the daemon to explain.

use std::time::{Duration, Instant};

use banger_api::methods::{VmRef, VmShow};
use banger_api::types::{VmInfo, VmState};

use crate::connect::{Ctx, Daemon};
use crate::errors::CliError;
use crate::progress::stage_line;
use crate::render;

/// How often the VM's state is read while it boots.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What waiting does for a VM in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing to wait for: running, or a state the daemon's answer explains.
    No,
    /// It is on its way to running.
    UntilRunning,
}

/// Whether a VM in `state` is worth waiting for.
pub fn wait_for(state: VmState) -> Wait {
    match state {
        VmState::Creating | VmState::Starting => Wait::UntilRunning,
        _ => Wait::No,
    }
}

/// Returns once `vm` is running (at once when it is not booting), printing a stage
/// line while it waits; fails after `timeout`. Returns what `vm.show` last said.
pub async fn until_running(
    ctx: &Ctx,
    daemon: &mut Daemon,
    vm: &str,
    timeout: Duration,
) -> Result<VmInfo, CliError> {
    let started = Instant::now();
    let reference = VmRef { vm: vm.to_owned() };
    let mut info = daemon.ask::<VmShow>(&reference).await?;
    if wait_for(info.state) == Wait::No {
        return Ok(info);
    }
    let colour = render::stderr_colour() && ctx.term.stderr;
    let stage = format!("waiting for {} to boot ({})", info.name, info.state);
    render::note(stage_line(&stage, banger_api::StageState::Started, 0, None, colour).trim_end());
    while wait_for(info.state) == Wait::UntilRunning {
        if started.elapsed() >= timeout {
            return Err(CliError::failed(
                format!(
                    "{} is still {} after {}s",
                    info.name,
                    info.state,
                    timeout.as_secs()
                ),
                Some(&format!(
                    "wait longer with `--timeout`, or see its console with `banger vm logs {}`",
                    info.name
                )),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        info = daemon.ask::<VmShow>(&reference).await?;
    }
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let detail = info.state.to_string();
    render::note(
        stage_line(
            &stage,
            banger_api::StageState::Done,
            elapsed,
            Some(&detail),
            colour,
        )
        .trim_end(),
    );
    Ok(info)
}

/// `--timeout` as a duration (seconds).
pub fn timeout(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_booting_vms_are_waited_for() {
        let table = [
            (VmState::Creating, Wait::UntilRunning),
            (VmState::Starting, Wait::UntilRunning),
            (VmState::Running, Wait::No),
            (VmState::Stopped, Wait::No),
            (VmState::Stopping, Wait::No),
            (VmState::Error, Wait::No),
            (VmState::Deleting, Wait::No),
        ];
        for (state, want) in table {
            assert_eq!(wait_for(state), want, "{state}");
        }
    }
}
