//! A restored guest's new network identity, set with the classic `SIOC*` ioctls on one
//! datagram socket (used by the agent's identity step): MAC address, IPv4 address and
//! netmask, link up, and the default route. In-process, because under TCG each program
//! a freshly restored guest starts costs tens to hundreds of milliseconds (its code is
//! translated anew), and `ip` took five of them.
//!
//! Only the interface's primary IPv4 address is replaced (`SIOCSIFADDR` rewrites it in
//! place); a snapshot's guest has exactly one.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCADDRT: libc::c_ulong = 0x890B;
const SIOCDELRT: libc::c_ulong = 0x890C;
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const SIOCSIFADDR: libc::c_ulong = 0x8916;
const SIOCSIFNETMASK: libc::c_ulong = 0x891C;
const SIOCSIFHWADDR: libc::c_ulong = 0x8924;
const ARPHRD_ETHER: libc::sa_family_t = 1;

/// What one interface becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Config {
    pub interface: String,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// `struct ifreq`: a name and a 24-byte union (a `sockaddr`, or the flags).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    addr: libc::sockaddr,
    flags: libc::c_short,
    _size: [u8; 24],
}

/// `struct rtentry` (the `SIOCADDRT`/`SIOCDELRT` argument).
#[repr(C)]
struct RtEntry {
    pad1: libc::c_ulong,
    dst: libc::sockaddr,
    gateway: libc::sockaddr,
    genmask: libc::sockaddr,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    dev: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

/// The netmask of a prefix length (`24` is `255.255.255.0`).
pub fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::from(prefix_len.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0))
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn sockaddr_in(address: Ipv4Addr) -> libc::sockaddr {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data; the kernel reads
    // the result as the sockaddr_in it is.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
}

fn ifreq(interface: &str) -> io::Result<IfReq> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{interface:?} is not an interface name"),
        ));
    }
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: IfReqData { _size: [0; 24] },
    };
    for (slot, byte) in request.name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    Ok(request)
}

fn ioctl<T>(
    socket: &OwnedFd,
    request: libc::c_ulong,
    argument: &mut T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `argument` is the live, properly laid out structure `request` takes, valid
    // for the duration of the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), request as _, argument as *mut T) };
    if result == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        Err(io::Error::new(error.kind(), format!("{what}: {error}")))
    }
}

fn route(config: &Ipv4Config, dev: &mut [libc::c_char; libc::IFNAMSIZ]) -> RtEntry {
    RtEntry {
        pad1: 0,
        dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        gateway: sockaddr_in(config.gateway),
        genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
        pad2: 0,
        pad3: 0,
        pad4: std::ptr::null_mut(),
        metric: 0,
        dev: dev.as_mut_ptr(),
        mtu: 0,
        window: 0,
        irtt: 0,
    }
}

/// Gives `config.interface` its new MAC, address and default route, and brings it up.
/// Needs CAP_NET_ADMIN (the agent runs as root).
pub fn configure_ipv4(config: &Ipv4Config) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut request = ifreq(&config.interface)?;
    let mut hwaddr = libc::sockaddr {
        sa_family: ARPHRD_ETHER,
        sa_data: [0; 14],
    };
    for (slot, byte) in hwaddr.sa_data.iter_mut().zip(config.mac) {
        *slot = byte as libc::c_char;
    }
    request.data.addr = hwaddr;
    ioctl(&socket, SIOCSIFHWADDR, &mut request, "set the MAC address")?;

    request.data.addr = sockaddr_in(config.address);
    ioctl(&socket, SIOCSIFADDR, &mut request, "set the address")?;
    request.data.addr = sockaddr_in(netmask(config.prefix_len));
    ioctl(&socket, SIOCSIFNETMASK, &mut request, "set the netmask")?;

    request.data.flags = 0;
    ioctl(
        &socket,
        SIOCGIFFLAGS,
        &mut request,
        "read the interface flags",
    )?;
    // SAFETY: SIOCGIFFLAGS just filled the flags member of the union.
    let flags = unsafe { request.data.flags };
    request.data.flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(
        &socket,
        SIOCSIFFLAGS,
        &mut request,
        "bring the interface up",
    )?;

    // Replace the default route: the old one may be gone with the old address, or not.
    let mut dev = request.name;
    let mut entry = route(config, &mut dev);
    let _ = ioctl(&socket, SIOCDELRT, &mut entry, "remove the default route");
    let mut entry = route(config, &mut dev);
    match ioctl(&socket, SIOCADDRT, &mut entry, "add the default route") {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_of_prefix_lengths() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn macs_parse_only_in_full() {
        assert_eq!(
            parse_mac("52:54:00:ab:CD:0f"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
        );
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
            "",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_kernel_structures_have_their_c_sizes() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifreq("eth0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-far-too-long").is_err());
    }
}
