//! Benchmarks of windsor-xenstored against the reference daemons.
fn main() {}
