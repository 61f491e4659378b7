//! peer: who is on the other end of a Unix stream socket (SO_PEERCRED), for servers built
//! on `std` sockets (the root helper) where tokio's `peer_cred()` is not available. The
//! kernel records the credentials at `connect()` time, so a client cannot forge them.

use std::io;
use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The connecting process's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The credentials of the peer of a connected Unix socket.
pub fn peer_credentials(socket: &impl AsFd) -> io::Result<PeerCred> {
    let creds = getsockopt(socket, PeerCredentials).map_err(io::Error::from)?;
    Ok(PeerCred {
        pid: creds.pid(),
        uid: creds.uid(),
        gid: creds.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_pair_reports_this_process() {
        let (left, _right) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&left).unwrap();
        assert_eq!(cred.uid, nix::unistd::getuid().as_raw());
        assert_eq!(cred.pid, std::process::id() as i32);
    }
}
