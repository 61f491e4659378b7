//! banger-e2e: see Cargo.toml description.
