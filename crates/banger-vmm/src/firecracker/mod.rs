//! The Firecracker backend: Firecracker's HTTP API over a Unix socket. [`api`] builds the
//! requests (pure), [`client`] sends them (hyper over a `UnixStream`), [`driver`] runs the
//! process. The HTTP part needs no process, so it is contract-tested against Firecracker's
//! own API description (`tests/firecracker_contract.rs`).

pub mod api;
pub mod client;
pub mod driver;

pub use api::{ApiRequest, BootPlan, FirecrackerPaths, Method};
pub use client::{ApiError, ApiResponse, FirecrackerApi};
pub use driver::{FirecrackerConfig, FirecrackerDriver};
