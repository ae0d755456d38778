//! The filter's logic, free of proxy-wasm: everything here is plain Rust over small host traits.
//!
//! [`stream::Stream`] is one HTTP stream: the proxy-wasm glue forwards Envoy's callbacks to it,
//! and it reads and writes through the small [`host::Host`] trait, so every per-request decision
//! is unit-tested here without Envoy. The readers of header maps take a [`headers::HeaderSource`].

pub mod access_log;
pub mod catalog;
pub mod cause_table;
pub mod config;
pub mod error_code;
pub mod extract;
pub mod grpc_status;
pub mod header_pairs;
pub mod headers;
pub mod host;
pub mod local_reply;
pub mod metrics;
pub mod plugin;
pub mod propagation;
pub mod pushback;
pub mod report;
pub mod retry_budget;
pub mod retry_control;
pub mod retry_grant;
pub mod shared_budget;
pub mod shared_data;
pub mod stream;
pub mod trace_context;

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Proves the wasm32 run is what it claims: the arithmetic under test has 32-bit usize.
    #[test]
    fn usize_width_matches_the_target() {
        let expected = if cfg!(target_arch = "wasm32") { 32 } else { 64 };
        assert_eq!(usize::BITS, expected);
    }
}
