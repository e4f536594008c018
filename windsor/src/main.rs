//! The `windsor` command line.
fn main() {}
