//! Compiles the Envoy .proto files vendored in `proto/` (copied out of envoy-types by
//! `scripts/vendor-envoy-protos.py`) into one FileDescriptorSet, embedded in the SDK, so
//! rendering proto3 JSON needs neither protoc nor the .proto files at run time.
//!
//! The files are vendored rather than located in the cargo cache: finding a dependency's
//! sources from a build script needs `cargo metadata`, which wants every crate of the lock file
//! (other platforms' included) and so fails on a fresh cargo home. The build refuses to run
//! while the vendored version differs from envoy-types in Cargo.lock, and rendering refuses any
//! field the descriptors do not know (`render::check_known`), so the two cannot drift apart.

use std::path::{Path, PathBuf};

use prost::Message;

/// The folders under `proto/` that imports resolve against (envoy-types' layout).
const INCLUDE_DIRS: &[&str] = &["data-plane-api", "xds", "googleapis", "protoc-gen-validate"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = manifest_dir.join("proto");
    let lock = manifest_dir.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed={}", lock.display());

    let vendored = std::fs::read_to_string(proto.join("ENVOY_TYPES_VERSION"))?;
    if let Some(locked) = locked_version(&lock, "envoy-types")? {
        if locked != vendored.trim() {
            return Err(format!(
                "sdk/proto holds envoy-types {} but Cargo.lock has {locked}: run scripts/vendor-envoy-protos.py",
                vendored.trim()
            )
            .into());
        }
    }
    let entries: Vec<String> = std::fs::read_to_string(proto.join("entry_files.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let includes: Vec<PathBuf> = INCLUDE_DIRS.iter().map(|d| proto.join(d)).collect();
    let fds = protox::compile(&entries, &includes)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("envoy_descriptor_set.bin");
    std::fs::write(out, fds.encode_to_vec())?;
    Ok(())
}

/// The version of `package` in a Cargo.lock (`None` if the lock file or the package is absent,
/// as when the SDK is built outside this workspace).
fn locked_version(lock: &Path, package: &str) -> Result<Option<String>, std::io::Error> {
    let text = match std::fs::read_to_string(lock) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let name_line = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'));
            return Ok(version.map(String::from));
        }
    }
    Ok(None)
}
