//! frames: the typed requests (host -> guest) and replies (guest -> host) of the agent
//! protocol and their JSON shape. Both are `{"id": N, "op": "<name>", ...fields}`; byte
//! payloads are base64 strings.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::b64;

/// Correlates replies with the request that caused them. Id 0 is reserved for replies
/// that belong to no request (the agent could not read a frame's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

impl RequestId {
    /// The id of replies that answer no particular request.
    pub const UNSOLICITED: RequestId = RequestId(0);
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One host -> guest frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    #[serde(flatten)]
    pub op: RequestOp,
}

/// What a request asks for. `stdin`, `stdin_eof` and `signal` address an earlier `exec`
/// by its id (`target`) and get no reply of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RequestOp {
    /// Readiness probe; answered with `hello_ok`.
    Hello { protocol: u32 },
    /// Run a command; answered with `output` frames, then `exit` (or `error`).
    Exec(ExecRequest),
    /// Bytes for the target exec's stdin; each chunk is acknowledged with `stdin_ack`.
    Stdin {
        target: RequestId,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    /// Close the target exec's stdin.
    StdinEof { target: RequestId },
    /// Send a signal to the target exec's process group.
    Signal { target: RequestId, signal: Signal },
    /// New window size for the target exec's terminal (an exec with `tty`); no reply.
    /// Only sent to agents whose `hello` lists [`FEATURE_TTY`].
    Resize {
        target: RequestId,
        #[serde(flatten)]
        size: WindowSize,
    },
    /// List listening TCP and bound UDP sockets; answered with `ports_ok`.
    Ports,
    /// Create or replace a file (parents created); answered with `file_ok`.
    WriteFile {
        path: String,
        mode: u32,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    /// Read a whole file; answered with `file_ok` carrying `data`.
    ReadFile { path: String },
    /// Unpack a tar stream into the directory `dir`. The stream follows as `stdin`
    /// frames addressed to this request, ended by `stdin_eof`; each chunk is
    /// acknowledged with `stdin_ack`, and the end with `tar_ok` (or `error`). Names are
    /// checked as in `banger-tar` (nothing lands outside `dir`); `rename` replaces the
    /// first component of every name; `create` makes `dir` (and its parents) first.
    ReceiveTar {
        dir: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rename: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create: bool,
    },
    /// Pack `path` (not followed if it is a symlink) as a tar whose entries are named
    /// after its last component, or, with `contents`, the directory's children. The
    /// stream comes back as `output` frames on `stdout`, then `tar_ok` (or `error`).
    SendTar {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        contents: bool,
    },
    /// What `path` is, symlinks followed; answered with `stat_ok`.
    Stat { path: String },
    /// Make a guest restored from a snapshot a machine of its own, before anything else
    /// runs in it; answered with `identity_ok`.
    Identity(IdentityRequest),
}

/// The fix-ups of a restored guest, applied in this order: wall clock, kernel RNG (so
/// what is generated next differs between clones), hostname, network, machine-id and ssh
/// host keys (regenerated only where the image has them), then the agent's own state
/// (execs left running in the snapshot are killed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRequest {
    /// The host's wall clock, nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    /// Host entropy credited to the guest's input pool before the CRNG reseeds.
    #[serde(with = "b64")]
    pub seed: Vec<u8>,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<IdentityNet>,
    /// An OpenSSH ed25519 host key made on the host for this clone, installed in place
    /// of the image's own keys (an older daemon sends none: the agent makes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<SshHostKey>,
}

/// An ssh host key pair in OpenSSH's file formats.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshHostKey {
    /// The private key file (`-----BEGIN OPENSSH PRIVATE KEY-----` ...).
    pub private: String,
    /// The public key line (`ssh-ed25519 AAAA...`).
    pub public: String,
}

impl std::fmt::Debug for SshHostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHostKey")
            .field("private", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

/// The clone's own network identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityNet {
    /// The guest interface (`eth0`).
    pub interface: String,
    pub mac: String,
    /// IPv4 address with prefix length, `172.30.0.7/24`.
    pub address: String,
    pub gateway: String,
}

/// A command to run in the guest, without a shell: `argv[0]` is looked up in `PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Added to the agent's base environment (`PATH`, `HOME=/root`); wins over it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the agent uses `/root` (or `/`) when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Whether the command reads stdin from `stdin` frames; otherwise it gets /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Run the command on a new pseudo-terminal of this size, as its session leader
    /// and controlling terminal: stdout and stderr arrive merged as `stdout` output,
    /// `stdin` bytes are typed into it (a Ctrl-C byte interrupts the foreground job).
    /// Only sent to agents whose `hello` lists [`FEATURE_TTY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<WindowSize>,
    /// Run as this user of the guest's `/etc/passwd` (name or numeric uid) with its
    /// primary group, `HOME`, `USER` and `LOGNAME`, and its home as the default working
    /// directory. Only sent to agents whose `hello` lists [`FEATURE_USER`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// `hello` feature: exec with `tty` and the `resize` request.
pub const FEATURE_TTY: &str = "tty";
/// `hello` feature: exec with `user`.
pub const FEATURE_USER: &str = "user";
/// `hello` feature: a command that cannot be found ends with exit 127, one that cannot
/// be executed with 126 (its message on stderr), and a missing working directory is an
/// `error` naming the directory.
pub const FEATURE_EXEC_CODES: &str = "exec_codes";

/// One guest -> host frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub id: RequestId,
    #[serde(flatten)]
    pub body: ReplyBody,
}

/// What a reply carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReplyBody {
    HelloOk(Hello),
    /// A chunk of an exec's stdout or stderr, in the order the command wrote it.
    Output {
        stream: Stream,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    /// The agent has handed `bytes` more stdin bytes to the command (flow control).
    StdinAck {
        bytes: u64,
    },
    /// The exec ended: its exit code, or 128 + the signal that killed it. Sent after
    /// both output pipes reached end of file, so it is the exec's last frame.
    Exit {
        code: i32,
    },
    PortsOk {
        ports: Vec<ListeningPort>,
    },
    /// A file operation succeeded; `data` is the file for `read_file`.
    FileOk {
        #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
        data: Option<Vec<u8>>,
    },
    /// A `receive_tar` or `send_tar` finished: entries and file bytes moved.
    TarOk {
        entries: u64,
        bytes: u64,
    },
    /// What a `stat` found; `kind` is absent when nothing is there.
    StatOk {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<PathKind>,
    },
    /// The identity fix-ups ran: what was changed, and what could not be (a missing
    /// tool, a step the image does not need) without failing the whole request.
    IdentityOk {
        done: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// The request failed; for an exec this ends it (nothing ran, or it was lost).
    Error {
        message: String,
    },
}

/// What a path in the guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    Directory,
    File,
    /// Anything else (device, fifo, socket).
    Other,
}

/// The agent's answer to `hello`: who is running and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// `/proc/sys/kernel/random/boot_id`: changes on every guest boot.
    pub boot_id: String,
    pub hostname: String,
    pub agent_version: String,
    pub protocol: u32,
    pub uptime_ms: u64,
    /// Compatible additions this agent understands (`FEATURE_*`). Absent from agents
    /// that predate them, which the host then does not ask for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Hello {
    /// Whether the agent announced `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|known| known == feature)
    }
}

/// Which output pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The signals the host may send to an exec (named, so the wire does not depend on an
/// architecture's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Signal {
    #[serde(rename = "SIGHUP")]
    Hup,
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGQUIT")]
    Quit,
    #[serde(rename = "SIGKILL")]
    Kill,
    #[serde(rename = "SIGTERM")]
    Term,
}

impl Signal {
    /// The Linux signal number (the same on every architecture banger targets).
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Quit => 3,
            Signal::Kill => 9,
            Signal::Term => 15,
        }
    }
}

/// A socket accepting traffic in the guest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListeningPort {
    pub proto: Transport,
    /// The local address: `0.0.0.0`/`::` for all interfaces.
    pub bind: IpAddr,
    pub port: u16,
    /// The owning process's command name, when the agent could find it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Udp,
}
