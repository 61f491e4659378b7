//! The Model Context Protocol as `banger mcp` speaks it: JSON-RPC 2.0, one message per
//! line on stdin/stdout, the subset of MCP's current revision a tool server needs
//! (`initialize` with version negotiation, `ping`, `tools/list`, `tools/call`,
//! `notifications/progress` out, `notifications/cancelled` in). The pure parts —
//! messages and their errors ([`jsonrpc`]), the handshake ([`protocol`]), output caps
//! ([`cap`]), what a session may do ([`policy`]) and the client config snippets
//! ([`config`]) — are separate from the one I/O loop ([`server`]), which is generic over
//! its reader, writer and [`server::Handler`], so tests drive it over in-memory pipes.
//! Nothing here knows banger's daemon: the CLI implements the handler.

pub mod cap;
pub mod config;
pub mod jsonrpc;
pub mod policy;
pub mod protocol;
pub mod server;

pub use server::{CallError, Cancel, Handler, Progress, ServerInfo, serve};
