//! process: filled in by its owner (see the crate's lib.rs).
