//! probe: what listens on a helper socket. [`listening`] answers whether anything
//! accepts connections there (so [`crate::server::bind`] never takes a live helper's
//! socket away); [`probe`] asks it `hello` and says whether it is a banger-helper, for
//! `banger-helper probe`, which setup scripts run before starting one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use banger_proto::helper::{
    HelperError, HelperOutcome, HelperReply, HelperRequest, Ipv4Subnet, MAX_HELPER_LINE_BYTES,
    decode_helper_reply, encode_helper_line,
};

/// How long the probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether something accepts connections on `path`. A missing file or a socket nobody
/// listens on (left by a helper that died) is `false`.
///
/// A connect the socket's mode refuses says nothing either way: the helper's own socket
/// belongs to the owner, mode 0600, and the helper under systemd is root without
/// `CAP_DAC_OVERRIDE`, so a restarted helper cannot connect to the socket its killed
/// predecessor left. Then the kernel's table of listening sockets
/// (`/proc/net/unix`) answers instead.
pub fn listening(path: &Path) -> io::Result<bool> {
    listening_in(path, path)
}

/// [`listening`] for the socket `path`, connecting by `connect_to` (another name for the
/// same file: [`crate::socket`] goes through its opened directory). When the socket's
/// mode refuses the connect, a listener in the table counts if it was bound as `path`
/// or as any `/proc/self/fd/<fd>/<its file name>`, the form [`crate::socket::bind`]
/// binds with: which directory that was cannot be told from the table, so such a
/// listener is taken as live (refusing to replace a stale socket is the safe mistake).
pub fn listening_in(connect_to: &Path, path: &Path) -> io::Result<bool> {
    match UnixStream::connect(connect_to) {
        Ok(stream) => {
            let _ = stream.shutdown(Shutdown::Both);
            Ok(true)
        }
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            Ok(false)
        }
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            let table = std::fs::read_to_string("/proc/net/unix")?;
            let absolute = std::path::absolute(path)?;
            Ok(unix_table_has_listener(&table, path)
                || unix_table_has_listener(&table, &absolute)
                || path
                    .file_name()
                    .is_some_and(|name| unix_table_has_fd_listener(&table, name)))
        }
        Err(error) => Err(error),
    }
}

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s `Flags`: the socket listens.
const SO_ACCEPTCON: u32 = 0x0001_0000;

/// Whether `/proc/net/unix` text lists a listening socket bound to `path`. Its lines are
/// `Num RefCount Protocol Flags Type St Inode [Path]`, hex numbers, the path last (it may
/// hold spaces; abstract names start with `@` and never match a path).
pub fn unix_table_has_listener(table: &str, path: &Path) -> bool {
    let Some(wanted) = path.to_str() else {
        return false;
    };
    unix_table_listeners(table).any(|bound| bound == wanted)
}

/// Whether `/proc/net/unix` text lists a listening socket bound as
/// `/proc/self/fd/<digits>/<name>`.
pub fn unix_table_has_fd_listener(table: &str, name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    unix_table_listeners(table).any(|bound| {
        bound
            .strip_prefix("/proc/self/fd/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(fd, file)| {
                !fd.is_empty() && fd.bytes().all(|b| b.is_ascii_digit()) && file == name
            })
    })
}

/// The names listening sockets were bound with, from `/proc/net/unix` text.
fn unix_table_listeners(table: &str) -> impl Iterator<Item = &str> {
    table.lines().skip(1).filter_map(|line| {
        let mut rest = line.trim_start();
        let mut fields = Vec::with_capacity(7);
        for _ in 0..7 {
            let (field, after) = rest.split_once(' ')?;
            fields.push(field);
            rest = after.trim_start();
        }
        let listens = u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & SO_ACCEPTCON != 0);
        listens.then_some(rest)
    })
}

/// A banger-helper that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It serves us: its bridge and pool.
    Serving { bridge: String, subnet: Ipv4Subnet },
    /// It answered, but serves another uid.
    ServingUid { refused_uid: u32 },
}

/// Why no banger-helper answered.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect")]
    Connect(#[source] io::Error),
    #[error("no answer")]
    Io(#[source] io::Error),
    #[error("it closed the connection without answering")]
    Closed,
    #[error("something listens there, but it does not speak the helper protocol")]
    NotAHelper,
}

/// Asks whatever listens on `path` for `hello`.
pub fn probe(path: &Path, timeout: Duration) -> Result<Found, ProbeError> {
    let mut stream = UnixStream::connect(path).map_err(ProbeError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ProbeError::Io)?;
    let line = encode_helper_line(&HelperRequest::Hello).map_err(|_| ProbeError::NotAHelper)?;
    // A helper that refuses our uid answers without reading: a failed write still
    // leaves its answer to read.
    let written = stream.write_all(&line);
    let mut reply = Vec::new();
    let read = BufReader::new((&stream).take(MAX_HELPER_LINE_BYTES as u64 + 1))
        .read_until(b'\n', &mut reply);
    match (written, read) {
        (_, Ok(n)) if n > 0 => {}
        (Err(error), _) | (Ok(()), Err(error)) => return Err(ProbeError::Io(error)),
        (Ok(()), Ok(_)) => return Err(ProbeError::Closed),
    }
    let reply = reply.strip_suffix(b"\n").unwrap_or(&reply);
    match decode_helper_reply(reply).map_err(|_| ProbeError::NotAHelper)? {
        HelperReply::Ok(HelperOutcome::Hello { bridge, subnet, .. }) => {
            Ok(Found::Serving { bridge, subnet })
        }
        HelperReply::Err(HelperError::Unauthorized { uid }) => {
            Ok(Found::ServingUid { refused_uid: uid })
        }
        HelperReply::Ok(_) | HelperReply::Err(_) => Err(ProbeError::NotAHelper),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 20117 /run/banger/helper.sock
0000000000000000: 00000003 00000000 00000000 0001 03 20118 /run/banger/other.sock
0000000000000000: 00000002 00000000 00010000 0001 01 19001 @/tmp/.X11-unix/X0
0000000000000000: 00000002 00000000 00010000 0001 01 19002 /run/with space/s.sock
0000000000000000: 00000002 00000000 00000000 0002 01 19003
0000000000000000: 00000002 00000000 00010000 0001 01 19004 /proc/self/fd/7/helper.sock
0000000000000000: 00000002 00000000 00000000 0001 03 19005 /proc/self/fd/8/other.sock
";

    #[test]
    fn the_unix_table_tells_a_listener_from_a_connected_or_absent_socket() {
        let has = |path: &str| unix_table_has_listener(TABLE, Path::new(path));
        assert!(has("/run/banger/helper.sock"));
        // connected (St 03, no __SO_ACCEPTCON), not listening
        assert!(!has("/run/banger/other.sock"));
        // an abstract name is no path
        assert!(!has("/tmp/.X11-unix/X0"));
        assert!(has("/run/with space/s.sock"));
        assert!(!has("/run/banger/gone.sock"));
        assert!(!has("/run/banger/helper"));
        assert!(!unix_table_has_listener(
            "",
            Path::new("/run/banger/helper.sock")
        ));
        let fd_form = |name: &str| unix_table_has_fd_listener(TABLE, name.as_ref());
        assert!(fd_form("helper.sock"));
        // connected, not listening
        assert!(!fd_form("other.sock"));
        assert!(!fd_form("helper"));
        assert!(!fd_form("s.sock"));
    }

    #[test]
    fn a_socket_bound_here_is_in_the_unix_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let table = std::fs::read_to_string("/proc/net/unix").unwrap();
        assert!(unix_table_has_listener(&table, &path), "{table}");
        drop(listener);
        let table = std::fs::read_to_string("/proc/net/unix").unwrap();
        assert!(!unix_table_has_listener(&table, &path));
    }
}
