//! The lifecycle API.
//!
//! This crate will own the XenAPI-compatible object model, XML-RPC at `/`
//! and JSON-RPC at `/jsonrpc`, XAPI's error codes, and the Rust client
//! library the `windsor` command line uses.
#![forbid(unsafe_code)]
