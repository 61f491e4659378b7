//! banger-store: see Cargo.toml description.
