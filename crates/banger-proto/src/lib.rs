//! banger-proto: the wire protocols between banger's processes. `agent` is the host <->
//! guest agent protocol (JSON lines, sync, shared by the static guest binary and the
//! daemon); `agent_client` (feature `client`, pulls in tokio) is the daemon's async
//! client for it; `helper` is the daemon <-> root helper protocol.

pub mod agent;
pub mod helper;

#[cfg(feature = "client")]
pub mod agent_client;
