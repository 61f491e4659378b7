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
pub fn listening(path: &Path) -> io::Result<bool> {
    match UnixStream::connect(path) {
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
        Err(error) => Err(error),
    }
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
