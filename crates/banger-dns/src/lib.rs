//! banger's DNS responder for `<name>.vm`: guests and the host resolve VM names to their
//! addresses through it (the daemon binds it on the bridge address). It answers A
//! queries for known VM names, NXDOMAIN for other names under `.vm`, and REFUSED for
//! everything else: it is not a resolver and forwards nothing.
//!
//! Beside it, [`policy_server`] is the resolver of guests under a network policy: it
//! forwards only the names their policy allows (the pure part is [`filter`]) and feeds
//! the answers' addresses to the host's rules before the guest sees them.
//!
//! [`wire`] holds the pure packet logic ([`answer`]), [`names`] the lookup side
//! ([`NameTable`], [`StaticNames`]) and [`server`] the UDP loop ([`serve`]), which takes a
//! bound socket and a shutdown future.

pub mod filter;
pub mod names;
pub mod policy_server;
pub mod server;
pub mod wire;

pub use names::{NameTable, StaticNames};
pub use policy_server::{PolicyLookup, PolicyTable, serve_policy};
pub use server::serve;
pub use wire::{TTL_SECS, ZONE, answer, answer_into};

/// The UDP port the daemon binds the responder to on the bridge address. Not 53: the
/// daemon runs as the user, and 53 is usually taken by the host's own resolver.
pub const DEFAULT_PORT: u16 = 42069;
