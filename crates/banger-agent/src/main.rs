//! banger-agent binary entry point.
fn main() {}
