//! service: starting a supervised service process (`banger system supervise`). The child
//! leads a new session (a terminal hangup or a signal to the installer's group does not
//! reach it) and, for a service that runs as its owner, takes the owner's uid, gid and
//! exactly the given supplementary groups before exec, so nothing of root's survives. It
//! keeps no descriptor it inherited beyond stdin, stdout and stderr: a service started from
//! a shell that holds a lock (`flock 9 ...`) must not hold that lock for its whole life.

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
    // setuid(2) are system calls on values prepared before the fork, and so is
    // close_range(2) (a raw syscall with constant arguments); a failure builds an
    // io::Error from the raw errno, which does not allocate. No locks, no shared state.
    unsafe {
        cmd.pre_exec(move || {
            // Every inherited descriptor from 3 up is closed at exec (CLOEXEC rather than
            // closed now: std's own exec-error pipe must survive until exec). Kernels
            // before 5.11 lack the flag; the service then inherits what it was given.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_service_does_not_inherit_descriptors_beyond_stdio() {
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
        // A descriptor without CLOEXEC, as `flock 9 cmd` hands one down.
        let inherited = nix::unistd::dup(&lock).unwrap();
        let flags = nix::fcntl::fcntl(&inherited, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        let probe = |detach: bool| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(format!(
                "test -e /proc/self/fd/{} && echo open || echo closed",
                inherited.as_raw_fd()
            ));
            if detach {
                detach_as(&mut cmd, None);
            }
            #[allow(clippy::disallowed_methods, reason = "a test probe")]
            let out = cmd.output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert_eq!(
            probe(false),
            "open",
            "the probe sees an inherited descriptor"
        );
        assert_eq!(probe(true), "closed");
    }
}
