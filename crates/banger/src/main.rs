//! banger binary entry point.
fn main() {}
