//! banger's ssh side: its own ed25519 keypair ([`Keypair`]), its own known_hosts file
//! with the host keys recorded at each guest's first boot ([`KnownHosts`]), and the
//! arguments and config block that make the system `ssh` use both with strict host key
//! checking ([`ssh_args`], [`ssh_config_block`]), and the plan for putting that block in
//! the user's ssh config and taking it out again ([`user_config`], pure: bytes in, the
//! change out). Nothing here touches `~/.ssh`; the CLI applies the plan.
//!
//! Fetching a guest's host key is the VM service's job (through the agent); this crate
//! validates what it got ([`parse_host_public_key`]) and records it.

pub mod client;
pub mod error;
pub mod host_key;
pub mod key_line;
pub mod keypair;
pub mod known_hosts;
pub mod paths;
pub mod user_config;

pub use client::{SshTarget, host_patterns, quote, ssh_args, ssh_config_block, vm_host_name};
pub use error::{KeyLineError, SshError};
pub use host_key::{HostKeyPair, generate_host_key};
pub use key_line::{PublicKey, parse_host_public_key, parse_key_line};
pub use keypair::Keypair;
pub use known_hosts::KnownHosts;
pub use paths::SshPaths;
