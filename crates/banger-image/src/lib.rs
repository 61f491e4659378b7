//! banger-image: see Cargo.toml description.
