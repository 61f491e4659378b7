//! The only crate allowed `unsafe`: raw syscalls and ioctls wrapped in safe functions,
//! each `unsafe` block justified with a `// SAFETY:` line. Everything above it in the
//! stack (daemon, drivers, agent, helper) calls these wrappers.
#![allow(unsafe_code)]

pub mod fdpass;
pub mod guest;
pub mod guest_net;
pub mod kvm;
pub mod landlock;
pub mod peer;
pub mod process;
pub mod service;
pub mod space;
pub mod tap;
pub mod terminal;
pub mod tsc;
pub mod vsock;
