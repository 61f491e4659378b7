//! banger-doctor: see Cargo.toml description.
