//! fdpass: sending and receiving file descriptors over a Unix stream socket
//! (SCM_RIGHTS). The root helper answers `open_tap` with the tap's descriptor riding on
//! the reply's bytes; the daemon receives it and gives it to QEMU. Received descriptors
//! are close-on-exec (`MSG_CMSG_CLOEXEC`) so no unrelated child inherits them.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};

/// The most descriptors one `recv_with_fds` accepts; extra ones are closed by the kernel
/// (`MSG_CTRUNC`) and reported as an error.
pub const MAX_FDS_PER_MESSAGE: usize = 4;

/// Writes all of `bytes` to `socket`, attaching `fd` (if any) to the first byte. The
/// descriptor stays open here; the receiver gets its own copy.
pub fn send_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let raw: Vec<RawFd> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
    let control: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() || first {
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsgs: &[ControlMessage<'_>] = if first { &control } else { &[] };
        match sendmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(0) if !bytes.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ));
            }
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
        first = false;
    }
    Ok(())
}

/// Reads what is available (at most `buf.len()` bytes) and any descriptors attached to
/// those bytes. `Ok((0, _))` is end of stream. A read timeout set on the socket applies
/// (`WouldBlock`).
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let message = match recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        };
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
                for raw in raw_fds {
                    // SAFETY: the kernel just installed `raw` in our descriptor table for
                    // this message; nothing else refers to it, so we take ownership.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        if message.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::other(format!(
                "more than {MAX_FDS_PER_MESSAGE} descriptors arrived; the extra ones were dropped"
            )));
        }
        return Ok((message.bytes, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_crosses_the_socket() {
        let (left, right) = UnixStream::pair().unwrap();
        let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
        let mut writer = std::fs::File::from(pipe_write);
        writer.write_all(b"through the socket").unwrap();
        drop(writer);
        send_with_fd(left.as_fd(), b"line\n", Some(pipe_read.as_fd())).unwrap();
        drop(pipe_read);

        let mut buf = [0u8; 64];
        let (n, mut fds) = recv_with_fds(right.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"line\n");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.remove(0));
        let flags = nix::fcntl::fcntl(&received, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received descriptors are close-on-exec"
        );
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the socket");
    }

    #[test]
    fn plain_bytes_and_end_of_stream() {
        let (left, right) = UnixStream::pair().unwrap();
        send_with_fd(left.as_fd(), b"no fd\n", None).unwrap();
        drop(left);
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(right.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"no fd\n");
        assert!(fds.is_empty());
        let (n, fds) = recv_with_fds(right.as_fd(), &mut buf).unwrap();
        assert_eq!(n, 0);
        assert!(fds.is_empty());
    }
}
