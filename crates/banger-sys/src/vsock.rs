//! vsock: the guest side of AF_VSOCK stream sockets, as the guest agent uses them under
//! Firecracker. `vsock_listen` binds a port on any CID and listens; `vsock_accept` takes
//! one connection and reports the peer's CID and port. The host side does not use these:
//! Firecracker exposes a guest's vsock as a Unix socket with a `CONNECT <port>` handshake.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Bind to every CID this machine has (the guest's own CID under Firecracker).
pub const VMADDR_CID_ANY: u32 = libc::VMADDR_CID_ANY;
/// The CID of the hypervisor host, as seen from a guest.
pub const VMADDR_CID_HOST: u32 = libc::VMADDR_CID_HOST;
/// Let the kernel pick a free port (for tests).
pub const VMADDR_PORT_ANY: u32 = libc::VMADDR_PORT_ANY;

/// How many not-yet-accepted connections the kernel queues; the host opens one or two.
const LISTEN_BACKLOG: libc::c_int = 16;

/// The other end of an accepted vsock connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsockPeer {
    pub cid: u32,
    pub port: u32,
}

/// Opens a close-on-exec AF_VSOCK stream socket bound to `port` on any CID and listening.
/// Fails with `EAFNOSUPPORT` (or `ENODEV`) where the kernel has no vsock support.
pub fn vsock_listen(port: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; its result is checked before it is used.
    let raw = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor socket() just returned; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let address = sockaddr_vm(VMADDR_CID_ANY, port);
    // SAFETY: `address` is a fully initialised sockaddr_vm that outlives the call, and the
    // length passed is exactly its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            sockaddr_vm_len(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen() takes no pointers and the descriptor is a bound socket we own.
    let rc = unsafe { libc::listen(socket.as_raw_fd(), LISTEN_BACKLOG) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Waits for one connection on a socket from [`vsock_listen`]; the returned descriptor is
/// close-on-exec so commands the agent runs do not inherit the host connection.
pub fn vsock_accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, VsockPeer)> {
    loop {
        let mut peer = sockaddr_vm(0, 0);
        let mut peer_len = sockaddr_vm_len();
        // SAFETY: `peer` and `peer_len` are valid, writable and live across the call; the
        // kernel writes at most `peer_len` bytes into `peer`.
        let raw = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                (&raw mut peer).cast::<libc::sockaddr>(),
                &raw mut peer_len,
                libc::SOCK_CLOEXEC,
            )
        };
        if raw < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        // SAFETY: `raw` is a descriptor accept4() just returned; nothing else owns it.
        let stream = unsafe { OwnedFd::from_raw_fd(raw) };
        return Ok((
            stream,
            VsockPeer {
                cid: peer.svm_cid,
                port: peer.svm_port,
            },
        ));
    }
}

/// The CID and port a vsock socket is bound to (useful after binding `VMADDR_PORT_ANY`).
pub fn vsock_local_address(socket: BorrowedFd<'_>) -> io::Result<VsockPeer> {
    let mut local = sockaddr_vm(0, 0);
    let mut local_len = sockaddr_vm_len();
    // SAFETY: `local` and `local_len` are valid, writable and live across the call; the
    // kernel writes at most `local_len` bytes into `local`.
    let rc = unsafe {
        libc::getsockname(
            socket.as_raw_fd(),
            (&raw mut local).cast::<libc::sockaddr>(),
            &raw mut local_len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::c_int::from(local.svm_family) != libc::AF_VSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an AF_VSOCK socket",
        ));
    }
    Ok(VsockPeer {
        cid: local.svm_cid,
        port: local.svm_port,
    })
}

fn sockaddr_vm(cid: u32, port: u32) -> libc::sockaddr_vm {
    libc::sockaddr_vm {
        svm_family: libc::AF_VSOCK as libc::sa_family_t,
        svm_reserved1: 0,
        svm_port: port,
        svm_cid: cid,
        svm_zero: [0; 4],
    }
}

fn sockaddr_vm_len() -> libc::socklen_t {
    // The struct is 16 bytes; the cast cannot truncate.
    size_of::<libc::sockaddr_vm>() as libc::socklen_t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Listening needs only the vsock core module; accepting a connection needs a
    /// transport (vhost-vsock or a VMM), which this kind of test host may lack, so the
    /// end-to-end path is covered by real-guest tests instead.
    #[test]
    fn listen_binds_the_requested_port_on_any_cid() {
        let socket = match vsock_listen(VMADDR_PORT_ANY) {
            Ok(socket) => socket,
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::ENODEV | libc::ESOCKTNOSUPPORT)
                ) =>
            {
                banger_requires::skip!("this kernel has no AF_VSOCK support ({error})");
            }
            Err(error) => panic!("vsock_listen failed: {error}"),
        };
        let local = vsock_local_address(socket.as_fd()).expect("getsockname");
        assert_eq!(local.cid, VMADDR_CID_ANY);
        assert_ne!(local.port, VMADDR_PORT_ANY, "the kernel picked a port");

        // A second socket on the same port must be refused: the first one really holds it.
        let again = vsock_listen(local.port).expect_err("port already bound");
        assert_eq!(again.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn local_address_rejects_other_socket_families() {
        let (unix, _other) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let error = vsock_local_address(unix.as_fd()).expect_err("not vsock");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
