//! meshkit's proxy-wasm HTTP filter.
//!
//! [`core`] holds every decision the filter makes, in plain Rust with no proxy-wasm dependency, so
//! it is unit-tested natively and on wasm32. `host` is the thin proxy-wasm glue, compiled only for
//! the `.wasm` that Envoy loads (`wasm32-wasip1`).

pub mod core;

#[cfg(target_os = "wasi")]
mod host;
