//! banger-helper: the small root helper. It runs as root on its own Unix socket, serves
//! only the owner uid, and performs a closed set of typed operations for the daemon
//! (`banger_proto::helper::HelperRequest`): bridge and taps (`link`), handing an opened
//! tap to an unprivileged VMM, per-guest NAT in banger's own nftables table (`nat`),
//! per-guest network policies (`policy`: layer-2 and IPv4 rules, learned-address sets)
//! and per-link DNS (`dns`), and lists what of banger's is on the host (`listing`, for
//! the daemon's reconcile); `probe` tells whether a helper already answers on a socket,
//! `socket` makes its socket without following a symlink swapped in for its directory,
//! and `cleanup` (run by root at uninstall, not over the socket) removes an
//! installation's bridge, taps, NAT rules, policies and DNS routing (`unusable` tells
//! a backend the host cannot run, so holding nothing, from a real failure). Every
//! argument is validated (`validate`) before anything is touched; external tools run
//! with an explicit argv and a clean environment (`tool`), never through a shell. It is
//! synchronous on purpose: std threads, no async runtime.

pub mod cleanup;
pub mod config;
pub mod dispatch;
pub mod dns;
pub mod link;
pub mod listing;
pub mod log;
pub mod nat;
pub mod policy;
pub mod probe;
pub mod server;
pub mod socket;
pub mod tool;
pub mod unusable;
pub mod validate;

#[cfg(test)]
mod socket_race_tests;
#[cfg(test)]
mod testing;
