//! Identity fix-ups inside a restored guest (used by the agent): set the wall clock,
//! set the hostname, and credit host-supplied entropy to the kernel RNG and force the
//! CRNG to reseed (`RNDADDENTROPY`, then `RNDRESEEDCRNG`), so clones of one snapshot stop
//! sharing the random state they were saved with. All need root in the guest.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOW('R', 0x03, int[2])`: add entropy with a credited bit count.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the input pool now.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// The most seed bytes one call credits.
pub const MAX_SEED_BYTES: usize = 256;

/// Sets `CLOCK_REALTIME` to `unix_nanos` nanoseconds since the epoch.
pub fn set_realtime(unix_nanos: u128) -> io::Result<()> {
    let seconds = libc::time_t::try_from(unix_nanos / 1_000_000_000)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "time out of range"))?;
    let time = libc::timespec {
        tv_sec: seconds,
        tv_nsec: (unix_nanos % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `time` is a valid timespec that lives across the call.
    let result = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the kernel's hostname (the UTS name).
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid across the call; the
    // kernel copies them and needs no terminator.
    let result = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The `struct rand_pool_info` header followed by its buffer, as `RNDADDENTROPY` reads it.
#[repr(C)]
struct PoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; MAX_SEED_BYTES],
}

/// Credits `seed` (at most [`MAX_SEED_BYTES`]) to the input pool at 8 bits a byte, then
/// makes the CRNG reseed from it, through `/dev/urandom`.
pub fn reseed_rng(seed: &[u8]) -> io::Result<()> {
    if seed.is_empty() || seed.len() > MAX_SEED_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a seed is 1 to {MAX_SEED_BYTES} bytes"),
        ));
    }
    let device = OpenOptions::new().write(true).open("/dev/urandom")?;
    let mut info = PoolInfo {
        entropy_count: (seed.len() * 8) as libc::c_int,
        buf_size: seed.len() as libc::c_int,
        buf: [0; MAX_SEED_BYTES],
    };
    info.buf[..seed.len()].copy_from_slice(seed);
    // SAFETY: `info` is a live, properly laid out rand_pool_info whose buf_size does not
    // exceed its buffer; the kernel only reads it.
    let result = unsafe { libc::ioctl(device.as_raw_fd(), RNDADDENTROPY as _, &info) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    let result = unsafe { libc::ioctl(device.as_raw_fd(), RNDRESEEDCRNG as _) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr
        let r = libc::c_ulong::from(b'R');
        let iow = |nr: libc::c_ulong, size: libc::c_ulong| (1 << 30) | (size << 16) | (r << 8) | nr;
        assert_eq!(RNDADDENTROPY, iow(0x03, 8));
        assert_eq!(RNDRESEEDCRNG, (r << 8) | 0x07);
    }

    #[test]
    fn bad_seeds_are_refused_before_any_ioctl() {
        assert_eq!(
            reseed_rng(&[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            reseed_rng(&[0; MAX_SEED_BYTES + 1]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
