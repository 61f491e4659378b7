//! banger-vmm: see Cargo.toml description.
