//! banger-proto: see Cargo.toml description.
