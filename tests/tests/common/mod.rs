//! Shared harness: the example mesh on free ports, started with real Envoy and the built .wasm.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};
use meshkit_cli::locate;
use meshkit_sdk::model::Mesh;
use meshkit_sdk::{load_str, Format};

pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/mesh.yaml");

/// The ports the example spec uses, in the order they appear.
const EXAMPLE_PORTS: [u16; 12] = [
    18081, 18001, 18101, 19001, 18082, 18002, 18102, 19002, 18083, 18003, 18103, 19003,
];

/// `n` distinct ports that were free a moment ago (all held open together while choosing, so
/// the kernel cannot hand out one twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The example spec's text with every port replaced by a free one.
pub fn example_spec_text() -> String {
    let mut text = std::fs::read_to_string(EXAMPLE).expect("read envoy/mesh.yaml");
    for (old, new) in EXAMPLE_PORTS.iter().zip(free_ports(EXAMPLE_PORTS.len())) {
        assert!(text.contains(&format!(" {old}")), "example no longer uses port {old}");
        text = text.replace(&format!(" {old}"), &format!(" {new}"));
    }
    text
}

pub fn example_mesh() -> Mesh {
    load_str(&example_spec_text(), Format::Yaml).expect("example spec with free ports is valid")
}

/// A fresh, unique scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshkit-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub fn envoy() -> PathBuf {
    locate::envoy().expect("Envoy (run scripts/setup.sh)")
}

pub fn wasm() -> PathBuf {
    locate::wasm().expect("meshkit_filter.wasm (run scripts/setup.sh)")
}

/// Starts `mesh` with one worker per Envoy (the machine has 2 cores and runs 3 Envoys).
pub async fn start(mesh: Mesh, name: &str) -> LocalMesh {
    let options = LocalMeshOptions {
        envoy: envoy(),
        wasm: wasm(),
        run_dir: scratch_dir(name),
        concurrency: 1,
        echo_access_log: false,
        ready_timeout: Duration::from_secs(60),
    };
    LocalMesh::start(mesh, &options).await.expect("start the mesh")
}
