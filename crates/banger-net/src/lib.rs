//! banger-net: guest networking for the daemon. Pure planning — the address pool
//! (`pool`), tap names and MACs (`names`) — and the client of the root helper that
//! applies it (`client`), wrapped in the [`Network`] service the VM service calls:
//! `attach` gives a VM an address, a tap (opened, for an unprivileged QEMU) and
//! optionally NAT and a network policy; `detach` takes them away. `fake` is an in-memory
//! helper for tests. `sni` and `sni_proxy` are the TLS server-name check policy guests'
//! port-443 connections go through.
//!
//! The NAT ruleset itself is not here: it belongs to the helper (`banger-helper`'s
//! `nat.rs`), which is the only place that applies it and which may not depend on this
//! crate. The rules both sides must agree on (interface names, the pool's arithmetic,
//! the wire types) are in `banger_proto::helper`.

pub mod client;
pub mod fake;
pub mod forward;
pub mod names;
pub mod network;
pub mod pool;
pub mod port_owner;
pub mod sni;
pub mod sni_proxy;

pub use banger_proto::helper::{
    DEFAULT_BRIDGE, DEFAULT_HELPER_SOCKET, DEFAULT_SUBNET, Ipv4Subnet, NetworkListing,
};
pub use client::{
    DEFAULT_HELPER_TIMEOUT, HelperAnswer, HelperClient, HelperClientError, HelperInfo,
    HelperTransport, UnixTransport,
};
pub use forward::{Forward, ForwardError};
pub use names::{MacAddress, mac_address, tap_name};
pub use network::{AttachRequest, NetAttachment, NetError, Network, NetworkConfig};
pub use pool::AddressPool;
