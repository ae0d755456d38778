//! Compiles the Envoy .proto files that envoy-types ships into one FileDescriptorSet, embedded in
//! the SDK, so rendering proto3 JSON needs neither protoc nor the .proto files at run time.
//!
//! The .proto sources are located through `cargo metadata` (the envoy-types package in this
//! build's dependency graph), so they always match the Rust types being encoded.

use std::path::PathBuf;
use std::process::Command;

use prost::Message;

/// Every message type packed into an `Any` must be reachable from these files.
const ENTRY_FILES: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/wasm/v3/wasm.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "google/protobuf/wrappers.proto",
];

/// The folders under envoy-types' `proto/` that imports resolve against.
const INCLUDE_DIRS: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "opentelemetry-proto",
    "cel-spec",
    "client_model",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let proto_root = envoy_types_proto_dir()?;
    let includes: Vec<PathBuf> = INCLUDE_DIRS.iter().map(|d| proto_root.join(d)).collect();
    let fds = protox::compile(ENTRY_FILES, &includes)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("envoy_descriptor_set.bin");
    std::fs::write(out, fds.encode_to_vec())?;
    Ok(())
}

fn envoy_types_proto_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types")
        .ok_or("envoy-types is not in the dependency graph")?;
    let manifest_path = package["manifest_path"]
        .as_str()
        .ok_or("envoy-types has no manifest_path")?;
    let dir = PathBuf::from(manifest_path)
        .parent()
        .ok_or("bad envoy-types manifest path")?
        .join("proto");
    println!("cargo:rerun-if-changed={}", dir.display());
    Ok(dir)
}
