//! The filter's logic, free of proxy-wasm: everything here is plain Rust over small host traits.
//!
//! Data flows one way: the host hands in what Envoy shows ([`headers::HeaderSource`]), the core
//! decides, and the host writes the result back (filter state, headers).

pub mod access_log;
pub mod config;
pub mod headers;
pub mod trace_context;
