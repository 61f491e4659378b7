//! tap: opening an existing tap device through `/dev/net/tun` (TUNSETIFF) so the root
//! helper can hand the descriptor to an unprivileged VMM (QEMU's `-netdev tap,fd=N`),
//! and asking a tun/tap descriptor which interface it is attached to (TUNGETIFF).
//! Netlink cannot create or attach taps; these ioctls are the interface the kernel offers.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The tun/tap control device.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// A tap (layer 2), not a tun.
pub const IFF_TAP: i16 = libc::IFF_TAP as i16;
/// No packet-information prefix on each frame: what QEMU expects from a passed fd.
pub const IFF_NO_PI: i16 = libc::IFF_NO_PI as i16;
/// Frames carry a virtio-net header; QEMU probes for it with TUNGETIFF and uses it for
/// checksum/GSO offload when present. It opens taps itself with this flag too.
pub const IFF_VNET_HDR: i16 = libc::IFF_VNET_HDR as i16;

/// Interface name bytes, NUL excluded (IFNAMSIZ is 16).
const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// What TUNGETIFF reports for a tun/tap descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// The interface the descriptor is attached to.
    pub name: String,
    /// `IFF_TAP`, `IFF_NO_PI`, `IFF_VNET_HDR`, ... as the kernel reports them.
    pub flags: i16,
}

impl TapInfo {
    pub fn is_tap(&self) -> bool {
        self.flags & IFF_TAP != 0
    }

    pub fn has_vnet_hdr(&self) -> bool {
        self.flags & IFF_VNET_HDR != 0
    }
}

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
nix::ioctl_read_bad!(tun_get_iff, libc::TUNGETIFF, libc::ifreq);

fn ifreq_for(name: &str, flags: i16) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > IFNAME_MAX || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (a byte array and a union of integers and
    // pointers) for which all-zero bytes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = flags;
    Ok(request)
}

/// Opens `/dev/net/tun` and attaches it to the tap `name` with `flags` (normally
/// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`). The descriptor is close-on-exec; the caller
/// passes it on explicitly. If no interface `name` exists the kernel creates a
/// non-persistent tap, so callers check that the tap exists first.
pub fn open_tap(name: &str, flags: i16) -> io::Result<OwnedFd> {
    let request = ifreq_for(name, flags)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_DEVICE)?;
    // SAFETY: `request` is a fully initialised ifreq that outlives the call; TUNSETIFF
    // reads it (and may write the chosen name back into it) and keeps no pointer to it.
    unsafe { tun_set_iff(file.as_raw_fd(), &raw const request) }.map_err(io::Error::from)?;
    Ok(OwnedFd::from(file))
}

/// The interface and flags of a tun/tap descriptor (TUNGETIFF); fails with `EBADFD` for
/// a tun descriptor not attached to an interface and `EINVAL`/`ENOTTY` for other files.
pub fn tap_info(fd: BorrowedFd<'_>) -> io::Result<TapInfo> {
    // SAFETY: as in `ifreq_for`, all-zero bytes is a valid ifreq.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `request` is a valid, writable ifreq that outlives the call; TUNGETIFF
    // writes the interface name and flags into it and keeps no pointer to it.
    unsafe { tun_get_iff(fd.as_raw_fd(), &raw mut request) }.map_err(io::Error::from)?;
    let name_bytes: Vec<u8> = request
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    Ok(TapInfo {
        name: String::from_utf8_lossy(&name_bytes).into_owned(),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn names_that_do_not_fit_ifreq_are_refused() {
        for name in ["", "0123456789abcdef", "a\0b"] {
            let error = ifreq_for(name, IFF_TAP).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        let request = ifreq_for("bgt-0123456789a", IFF_TAP | IFF_NO_PI).unwrap();
        assert_eq!(request.ifr_name[14] as u8, b'a');
        assert_eq!(request.ifr_name[15], 0);
    }

    #[test]
    fn tap_info_rejects_a_file_that_is_not_a_tap() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(tap_info(file.as_fd()).is_err());
    }
}
