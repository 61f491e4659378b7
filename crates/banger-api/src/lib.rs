//! The protocol spoken between the `banger` CLI and the `bangerd` daemon over the
//! daemon's Unix socket, and the async client the CLI uses to speak it.
//!
//! The wire format is newline-delimited JSON. A client sends one [`RequestFrame`] per
//! line; the daemon answers with zero or more event frames (progress stages, streamed
//! output) and exactly one final frame, a result or a typed [`ApiError`]. Every frame
//! carries the request id so that a client can match answers to questions. Methods are
//! typed through the [`Method`] trait: the method name, its parameters and its output
//! live together in [`methods`], so the CLI and the daemon cannot disagree on a shape.

pub mod client;
pub mod error;
pub mod frame;
pub mod methods;
pub mod types;

pub use client::{Client, ClientError};
pub use error::{ApiError, ErrorCode};
pub use frame::{
    Event, Input, InputFrame, MAX_FRAME_BYTES, MAX_INPUT_CHUNK_BYTES, OutputStream,
    PROTOCOL_VERSION, Rejected, RequestFrame, ResponseBody, ResponseFrame, StageState,
    parse_request,
};
pub use methods::Method;
