//! Cross-crate integration tests live in `tests/tests/*.rs`; this library
//! holds the helpers they share.
#![forbid(unsafe_code)]
