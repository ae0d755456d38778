//! Harness for tests that run Envoy: locating it and the built .wasm, starting the mesh.

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

use std::path::PathBuf;
use std::time::Duration;

use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};
use meshkit_cli::locate;
use meshkit_sdk::model::Mesh;
pub use meshkit_tests::{example_mesh, example_spec_text, scratch_dir, EXAMPLE};

pub fn envoy() -> PathBuf {
    locate::envoy().expect("Envoy (run scripts/setup.sh)")
}

pub fn wasm() -> PathBuf {
    locate::wasm().expect("meshkit_filter.wasm (run scripts/setup.sh)")
}

/// Starts `mesh` with one worker per Envoy (the machine has 2 cores and runs 3 Envoys).
pub async fn start(mesh: Mesh, name: &str) -> LocalMesh {
    start_with_external_apps(mesh, name, &[]).await
}

/// Like [`start`], leaving the apps of `external` services to the test.
pub async fn start_with_external_apps(mesh: Mesh, name: &str, external: &[&str]) -> LocalMesh {
    let options = LocalMeshOptions {
        envoy: envoy(),
        wasm: wasm(),
        run_dir: scratch_dir(name),
        concurrency: 1,
        echo_access_log: false,
        ready_timeout: Duration::from_secs(60),
        external_apps: external.iter().map(|s| s.to_string()).collect(),
    };
    LocalMesh::start(mesh, &options)
        .await
        .expect("start the mesh")
}
