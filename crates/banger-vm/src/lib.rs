//! banger-vm: see Cargo.toml description.
