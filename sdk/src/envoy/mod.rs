//! Typed Envoy v3 messages (envoy-types) built from the validated [`crate::model`].
//!
//! Nothing here formats JSON: the result is a `Bootstrap` message, rendered by [`crate::render`].

pub mod access_log;
pub mod ads;
mod any;
pub mod bootstrap;
mod cluster;
mod health_check_filter;
mod listener;
mod stats;
mod wasm_filter;

pub use ads::{
    ads_bootstrap, NodeResources, RemoteWasm, SplitError, WASM_CLUSTER, WASM_HTTP_PATH, XDS_CLUSTER,
};
pub use bootstrap::{bootstrap, node_id, BootstrapOptions};
