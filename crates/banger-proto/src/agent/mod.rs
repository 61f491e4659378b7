//! agent: the host <-> guest agent protocol. One JSON object per line in each direction;
//! every frame carries a request id (`id`) and an `op` tag. Requests go host -> guest,
//! replies guest -> host, and several replies may share one id (an exec streams `output`
//! frames, then one `exit`). The channel (virtio-serial under QEMU, vsock under
//! Firecracker) can hand a new host connection bytes a previous connection left behind,
//! so clients pick random id ranges and drop frames whose id they did not send.

mod b64;
mod codec;
mod frames;
mod lines;

pub use codec::{FrameError, decode_reply, decode_request, encode_frame};
pub use frames::{
    ExecRequest, FEATURE_EXEC_CODES, FEATURE_TTY, FEATURE_USER, Hello, IdentityNet,
    IdentityRequest, ListeningPort, PathKind, Reply, ReplyBody, Request, RequestId, RequestOp,
    Signal, SshHostKey, Stream, Transport, WindowSize,
};
pub use lines::{LineEvent, LineSplitter};

/// Bumped on any incompatible change of the frames; both sides report it in `hello`.
/// Compatible additions (new optional fields, new requests) keep it and are announced
/// as `features` in `hello` instead, so a guest restored from an older snapshot still
/// answers and the host only asks it for what it knows.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest frame either side sends or accepts, newline excluded. A `write_file` or
/// `read_file` payload must fit in one frame after base64 (about 3 MiB of file data).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The largest file `write_file`/`read_file` carry: base64 of it plus the frame's other
/// fields stays under [`MAX_FRAME_BYTES`].
pub const MAX_FILE_BYTES: usize = MAX_FRAME_BYTES / 4 * 3 - 64 * 1024;

/// The name of the virtio-serial port QEMU gives the agent channel.
pub const SERIAL_PORT_NAME: &str = "banger.agent";

/// The AF_VSOCK port the agent listens on in Firecracker guests.
pub const DEFAULT_VSOCK_PORT: u32 = 52;
