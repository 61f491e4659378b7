//! service: starting a supervised service process (`banger system supervise`). The child
//! leads a new session (a terminal hangup or a signal to the installer's group does not
//! reach it) and, for a service that runs as its owner, takes the owner's uid, gid and
//! exactly the given supplementary groups before exec, so nothing of root's survives.

use std::io;

/// Who a service process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups it keeps (e.g. `kvm`); root's are dropped.
    pub groups: Vec<u32>,
}

/// Makes `cmd`'s child call `setsid()` and, with `run_as`, `setgroups`, `setgid` and
/// `setuid` (in that order: the last drops the right to do the others) before exec.
pub fn detach_as(cmd: &mut std::process::Command, run_as: Option<RunAs>) {
    use std::os::unix::process::CommandExt as _;
    // Built before fork: the closure must not allocate.
    let ids = run_as.map(|run_as| {
        let groups: Vec<nix::unistd::Gid> = run_as
            .groups
            .iter()
            .map(|&gid| nix::unistd::Gid::from_raw(gid))
            .collect();
        (
            nix::unistd::Uid::from_raw(run_as.uid),
            nix::unistd::Gid::from_raw(run_as.gid),
            groups,
        )
    });
    let errno = |errno: nix::errno::Errno| io::Error::from_raw_os_error(errno as i32);
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed: setsid(2), setgroups(2), setgid(2) and
    // setuid(2) are system calls on values prepared before the fork; a failure builds an
    // io::Error from the raw errno, which does not allocate. No locks, no shared state.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(errno)?;
            if let Some((uid, gid, groups)) = &ids {
                nix::unistd::setgroups(groups).map_err(errno)?;
                nix::unistd::setgid(*gid).map_err(errno)?;
                nix::unistd::setuid(*uid).map_err(errno)?;
            }
            Ok(())
        });
    }
}
