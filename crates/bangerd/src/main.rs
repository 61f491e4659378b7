//! bangerd binary entry point.
fn main() {}
