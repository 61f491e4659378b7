//! banger-sys: see Cargo.toml description.
