//! banger's domain types and the pure rules over them: VM names, sizes, VM specs and
//! their limits, and the progress-reporting trait long operations use. Nothing here does
//! I/O, so every rule is table-tested and shared by the CLI and the daemon.

pub mod dirs;
pub mod progress;
pub mod state;
