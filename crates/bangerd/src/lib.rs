//! bangerd, the banger daemon: it runs as the user, owns banger's state (SQLite, VM
//! directories) and serves the CLI over a Unix socket speaking the `banger-api` protocol.
//!
//! The pieces, each in its own module: `instance_lock` keeps it the only daemon of its
//! state directory, `socket` binds the socket safely, `server` accepts
//! connections and shuts down gracefully, `connection` serves one client (peer uid check,
//! frames in order), `limits` caps what clients may hold (connections, buffered bytes,
//! partial frames), `dispatch` maps a method name to its handler, `handlers` hold one thin
//! function per method, `ops` runs long operations detached from the request, and
//! `context` is the state handlers share. The library form exists so that tests run the
//! real server on a socket of their own.

pub mod connection;
pub mod context;
pub mod crash_at;
pub mod dispatch;
pub mod errors;
pub mod events;
pub mod handlers;
pub mod input;
pub mod instance_lock;
pub mod layout;
pub mod limits;
pub mod networking;
pub mod ops;
pub mod server;
pub mod services;
pub mod shared_store;
pub mod socket;
pub mod wire;

pub use context::DaemonContext;
pub use server::run;
