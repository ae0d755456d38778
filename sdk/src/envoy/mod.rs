//! Typed Envoy v3 messages (envoy-types) built from the validated [`crate::model`].
//!
//! Nothing here formats JSON: the result is a `Bootstrap` message, rendered by [`crate::render`].

pub mod access_log;
mod any;
pub mod bootstrap;
mod cluster;
mod health_check_filter;
mod listener;
mod stats;
mod wasm_filter;

pub use bootstrap::{bootstrap, BootstrapOptions};
