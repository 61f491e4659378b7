//! client: the daemon's side of the root helper's socket. [`HelperTransport`] is the
//! narrow trait (one request in, one answer out) with the real [`UnixTransport`] and the
//! recording fake in `fake`. [`HelperClient`] puts one typed async method per operation
//! on top; each exchange is a short blocking socket conversation run on tokio's blocking
//! pool, so the daemon's runtime never waits on the helper.
//!
//! One connection per request: the helper serves each on its own thread, a helper restart
//! costs nothing, and an `open_tap` descriptor can never be mistaken for another reply's.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_proto::helper::{
    HELPER_PROTOCOL_VERSION, HelperError, HelperFrameError, HelperOutcome, HelperReply,
    HelperRequest, Ipv4Subnet, MAX_HELPER_LINE_BYTES, NetworkListing, PolicyAddress, PolicyNet,
    decode_helper_reply, encode_helper_line,
};
use banger_sys::fdpass::recv_with_fds;

/// How long one exchange may take. Creating a tap runs a handful of `ip` commands; NAT a
/// couple of `nft` ones. The helper's own per-tool limit is 20 s.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// A successful answer and the descriptor that came with it (only `open_tap` sends one).
#[derive(Debug)]
pub struct HelperAnswer {
    pub outcome: HelperOutcome,
    pub fd: Option<OwnedFd>,
}

/// What the helper says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperInfo {
    pub version: u32,
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    pub gateway: Ipv4Addr,
}

/// Why a helper call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HelperClientError {
    #[error("cannot connect to banger-helper at {}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to banger-helper failed")]
    Io(#[source] std::io::Error),
    #[error("banger-helper did not answer within {}s", .timeout.as_secs())]
    TimedOut { timeout: Duration },
    #[error("banger-helper closed the connection without answering")]
    Closed,
    #[error("banger-helper sent an unreadable reply")]
    Protocol(#[source] HelperFrameError),
    #[error("banger-helper answered {op} with {outcome}")]
    UnexpectedOutcome { op: &'static str, outcome: String },
    #[error("banger-helper sent no descriptor with its {op} answer")]
    MissingFd { op: &'static str },
    #[error("banger-helper speaks protocol {helper}; this daemon speaks {HELPER_PROTOCOL_VERSION}")]
    Version { helper: u32 },
    #[error("banger-helper refused {op}")]
    Refused {
        op: &'static str,
        #[source]
        source: HelperError,
    },
    #[error("the helper call was cancelled")]
    Cancelled(#[source] tokio::task::JoinError),
}

impl HelperClientError {
    /// The helper's typed refusal, when that is what this is (for example `unsupported`,
    /// which the daemon turns into a manual step).
    pub fn helper_error(&self) -> Option<&HelperError> {
        match self {
            HelperClientError::Refused { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The helper is not there at all (not installed or not running).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HelperClientError::Connect { .. })
    }
}

/// One request in, one answer out. A refusal is `Err(Refused)`.
pub trait HelperTransport: Send + Sync + std::fmt::Debug {
    fn exchange(&self, request: &HelperRequest) -> Result<HelperAnswer, HelperClientError>;
}

/// The real transport: the helper's Unix socket.
#[derive(Debug, Clone)]
pub struct UnixTransport {
    socket: PathBuf,
    timeout: Duration,
}

impl UnixTransport {
    pub fn new(socket: impl Into<PathBuf>) -> UnixTransport {
        UnixTransport {
            socket: socket.into(),
            timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> UnixTransport {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl HelperTransport for UnixTransport {
    fn exchange(&self, request: &HelperRequest) -> Result<HelperAnswer, HelperClientError> {
        let op = request.op_name();
        let mut stream =
            UnixStream::connect(&self.socket).map_err(|source| HelperClientError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(HelperClientError::Io)?;
        let line = encode_helper_line(request).map_err(HelperClientError::Protocol)?;
        // A helper that refuses the peer answers and closes without reading, so the
        // write can fail with a broken pipe while its answer waits in our buffer: the
        // answer, when there is one, says more than the pipe error.
        let (reply_line, mut fds) = match stream.write_all(&line) {
            Ok(()) => self.read_reply_line(&stream)?,
            Err(error) if closed_by_peer(&error) => self
                .read_reply_line(&stream)
                .map_err(|_| self.io_error(error))?,
            Err(error) => return Err(self.io_error(error)),
        };
        let reply = decode_helper_reply(&reply_line).map_err(HelperClientError::Protocol)?;
        match reply {
            HelperReply::Ok(outcome) => Ok(HelperAnswer {
                outcome,
                // Only the first is meaningful; any extra ones close on drop.
                fd: (!fds.is_empty()).then(|| fds.remove(0)),
            }),
            HelperReply::Err(source) => Err(HelperClientError::Refused { op, source }),
        }
    }
}

fn closed_by_peer(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

impl UnixTransport {
    fn io_error(&self, error: std::io::Error) -> HelperClientError {
        match error.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                HelperClientError::TimedOut {
                    timeout: self.timeout,
                }
            }
            _ => HelperClientError::Io(error),
        }
    }

    /// Reads up to the reply's newline with `recvmsg`, keeping any descriptors that ride
    /// on those bytes.
    fn read_reply_line(
        &self,
        stream: &UnixStream,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), HelperClientError> {
        let mut line = Vec::new();
        let mut fds = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let (n, received) =
                recv_with_fds(stream.as_fd(), &mut buf).map_err(|error| self.io_error(error))?;
            fds.extend(received);
            if n == 0 {
                return Err(HelperClientError::Closed);
            }
            line.extend_from_slice(&buf[..n]);
            if let Some(end) = line.iter().position(|&b| b == b'\n') {
                line.truncate(end);
                return Ok((line, fds));
            }
            if line.len() > MAX_HELPER_LINE_BYTES {
                return Err(HelperClientError::Protocol(HelperFrameError::TooLarge {
                    size: line.len(),
                }));
            }
        }
    }
}

/// The daemon's typed, async handle on the helper.
#[derive(Debug, Clone)]
pub struct HelperClient {
    transport: Arc<dyn HelperTransport>,
}

fn unexpected(op: &'static str, outcome: &HelperOutcome) -> HelperClientError {
    HelperClientError::UnexpectedOutcome {
        op,
        outcome: format!("{outcome:?}"),
    }
}

impl HelperClient {
    pub fn new(transport: Arc<dyn HelperTransport>) -> HelperClient {
        HelperClient { transport }
    }

    /// A client of the helper listening at `socket`.
    pub fn unix(socket: impl Into<PathBuf>) -> HelperClient {
        HelperClient::new(Arc::new(UnixTransport::new(socket)))
    }

    /// Sends one request from tokio's blocking pool.
    pub async fn call(&self, request: HelperRequest) -> Result<HelperAnswer, HelperClientError> {
        let transport = self.transport.clone();
        tokio::task::spawn_blocking(move || transport.exchange(&request))
            .await
            .map_err(HelperClientError::Cancelled)?
    }

    async fn done(&self, request: HelperRequest) -> Result<(), HelperClientError> {
        let op = request.op_name();
        match self.call(request).await?.outcome {
            HelperOutcome::Done => Ok(()),
            other => Err(unexpected(op, &other)),
        }
    }

    /// The helper's version and configuration; fails if the protocol differs.
    pub async fn hello(&self) -> Result<HelperInfo, HelperClientError> {
        match self.call(HelperRequest::Hello).await?.outcome {
            HelperOutcome::Hello {
                version,
                bridge,
                subnet,
                gateway,
            } => {
                if version != HELPER_PROTOCOL_VERSION {
                    return Err(HelperClientError::Version { helper: version });
                }
                Ok(HelperInfo {
                    version,
                    bridge,
                    subnet,
                    gateway,
                })
            }
            other => Err(unexpected("hello", &other)),
        }
    }

    pub async fn ensure_bridge(&self) -> Result<(), HelperClientError> {
        self.done(HelperRequest::EnsureBridge).await
    }

    pub async fn create_tap(&self, name: &str) -> Result<(), HelperClientError> {
        self.done(HelperRequest::CreateTap {
            name: name.to_owned(),
        })
        .await
    }

    /// An opened descriptor for the tap, for QEMU's `-netdev tap,fd=N`.
    pub async fn open_tap(&self, name: &str) -> Result<OwnedFd, HelperClientError> {
        const OP: &str = "open_tap";
        let answer = self
            .call(HelperRequest::OpenTap {
                name: name.to_owned(),
            })
            .await?;
        match answer.outcome {
            HelperOutcome::TapOpened { .. } => {
                answer.fd.ok_or(HelperClientError::MissingFd { op: OP })
            }
            other => Err(unexpected(OP, &other)),
        }
    }

    pub async fn delete_tap(&self, name: &str) -> Result<(), HelperClientError> {
        self.done(HelperRequest::DeleteTap {
            name: name.to_owned(),
        })
        .await
    }

    pub async fn add_nat(&self, guest_ip: Ipv4Addr) -> Result<(), HelperClientError> {
        self.done(HelperRequest::AddNat { guest_ip }).await
    }

    pub async fn remove_nat(&self, guest_ip: Ipv4Addr) -> Result<(), HelperClientError> {
        self.done(HelperRequest::RemoveNat { guest_ip }).await
    }

    /// banger's taps and the guests its NAT rules name, as the helper sees the host.
    /// The reply is checked against `pool` (the helper lists only its pool's guests and
    /// banger's tap names; anything else means the wrong helper or a bug).
    pub async fn list_network(
        &self,
        pool: &Ipv4Subnet,
    ) -> Result<NetworkListing, HelperClientError> {
        const OP: &str = "list_network";
        match self.call(HelperRequest::ListNetwork).await?.outcome {
            HelperOutcome::Network(listing) => match listing.check(pool) {
                Ok(()) => Ok(listing),
                Err(problem) => Err(HelperClientError::UnexpectedOutcome {
                    op: OP,
                    outcome: problem,
                }),
            },
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Routes `*.vm` on `bridge` to `server_ip:port`. A host without systemd-resolved
    /// answers `Refused` with [`HelperError::Unsupported`], whose reason is the manual step.
    pub async fn setup_dns(
        &self,
        bridge: &str,
        server_ip: Ipv4Addr,
        port: u16,
    ) -> Result<(), HelperClientError> {
        self.done(HelperRequest::SetupDns {
            bridge: bridge.to_owned(),
            server_ip,
            port,
        })
        .await
    }

    /// Installs or replaces a guest's network policy (see `HelperRequest::SetPolicy`).
    pub async fn set_policy(
        &self,
        guest_ip: Ipv4Addr,
        tap: &str,
        resolver_port: u16,
        sni_port: Option<u16>,
        nets: Vec<PolicyNet>,
        keep_learned: bool,
    ) -> Result<(), HelperClientError> {
        self.done(HelperRequest::SetPolicy {
            guest_ip,
            tap: tap.to_owned(),
            resolver_port,
            sni_port,
            nets,
            keep_learned,
        })
        .await
    }

    pub async fn remove_policy(&self, guest_ip: Ipv4Addr) -> Result<(), HelperClientError> {
        self.done(HelperRequest::RemovePolicy { guest_ip }).await
    }

    /// Allows answered addresses for a while.
    pub async fn add_policy_addresses(
        &self,
        guest_ip: Ipv4Addr,
        entries: Vec<PolicyAddress>,
    ) -> Result<(), HelperClientError> {
        self.done(HelperRequest::AddPolicyAddresses { guest_ip, entries })
            .await
    }

    /// Packets the guest's policy dropped so far, and the destinations it denied.
    pub async fn policy_counters(
        &self,
        guest_ip: Ipv4Addr,
    ) -> Result<(u64, Vec<banger_proto::helper::PolicyDenied>), HelperClientError> {
        match self
            .call(HelperRequest::PolicyCounters { guest_ip })
            .await?
            .outcome
        {
            HelperOutcome::PolicyCounters {
                dropped_packets,
                denied,
            } => Ok((dropped_packets, denied)),
            other => Err(unexpected("policy_counters", &other)),
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
