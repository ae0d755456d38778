//! Harness for tests that run Envoy: locating it and the built .wasm, starting the mesh.

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

pub mod compose;
pub mod load;
pub mod prometheus;
pub mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use meshkit_cli::access_log::AccessLine;
use meshkit_cli::http_client;
use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};
use meshkit_cli::locate;
use meshkit_sdk::model::Mesh;
use meshkit_sdk::{generate, GeneratedFile, OutputFormat, RenderOptions};
pub use meshkit_tests::{
    example_mesh, example_round_robin_checked, example_spec_text, scratch_dir, with_users_policy,
    EXAMPLE,
};

pub fn envoy() -> PathBuf {
    locate::envoy().expect("Envoy (run scripts/setup.sh)")
}

pub fn wasm() -> PathBuf {
    locate::wasm().expect("meshkit_filter.wasm (run scripts/setup.sh)")
}

/// How Envoy loads the filter here: the built `.wasm` by absolute path.
pub fn render_options(format: OutputFormat) -> RenderOptions {
    let wasm = std::path::absolute(wasm()).expect("absolute .wasm path");
    RenderOptions {
        wasm_path: wasm.display().to_string(),
        format,
        bare: false,
    }
}

/// `mesh` rendered as Envoy will load it here.
pub fn render(mesh: &Mesh, format: OutputFormat) -> Vec<GeneratedFile> {
    generate(mesh, &render_options(format)).expect("render the mesh")
}

/// Starts `mesh` with one worker per Envoy (the machine has 2 cores and runs 3 Envoys).
pub async fn start(mesh: Mesh, name: &str) -> LocalMesh {
    start_with_external_apps(mesh, name, &[]).await
}

/// Like [`start`], leaving the apps of `external` services to the test.
pub async fn start_with_external_apps(mesh: Mesh, name: &str, external: &[&str]) -> LocalMesh {
    start_with(mesh, name, external, 1).await
}

/// The general form: external apps and Envoy worker count.
pub async fn start_with(mesh: Mesh, name: &str, external: &[&str], concurrency: u32) -> LocalMesh {
    LocalMesh::start(mesh, &options(name, external, concurrency))
        .await
        .expect("start the mesh")
}

/// Like [`start`], with every sidecar on meshkit's ADS server ([`LocalMesh::update`] changes
/// the config live).
pub async fn start_ads(mesh: Mesh, name: &str) -> LocalMesh {
    let options = LocalMeshOptions {
        ads: true,
        ..options(name, &[], 1)
    };
    LocalMesh::start(mesh, &options)
        .await
        .expect("start the mesh on ADS")
}

fn options(name: &str, external: &[&str], concurrency: u32) -> LocalMeshOptions {
    LocalMeshOptions {
        envoy: envoy(),
        wasm: wasm(),
        run_dir: scratch_dir(name),
        concurrency,
        echo_access_log: false,
        report_progress: false,
        app_commands: Vec::new(),
        ready_timeout: Duration::from_secs(60),
        external_apps: external.iter().map(|s| s.to_string()).collect(),
        ads: false,
    }
}

/// Every line the sidecar of instance `service` (a service's name: its first instance) wrote
/// before now is in the access log. Each Envoy flushes its
/// own log on its own schedule, so before counting or searching one sidecar's lines a test
/// sends a probe through it and waits for the probe's line, which that Envoy writes after them.
pub async fn flush_barrier(mesh: &LocalMesh, service: &str) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "barrier-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let headers = [("x-request-id".to_string(), id.clone())];
    let addr = mesh.inbound(service).expect("service in the mesh");
    let _ = http_client::send(
        addr,
        hyper::Method::GET,
        "/",
        &headers,
        Duration::from_secs(30),
    )
    .await;
    mesh.access_log
        .wait_for(Duration::from_secs(60), |lines| {
            lines.iter().any(|l| {
                l.str("request_id") == Some(id.as_str())
                    && l.str("service.instance.id") == Some(service)
            })
        })
        .await
        .unwrap_or_else(|_| panic!("barrier through {service} never logged"));
}

/// All lines for request `id`, once every running sidecar has flushed.
pub async fn lines_for(mesh: &LocalMesh, id: &str) -> Vec<AccessLine> {
    for service in mesh.running_sidecars() {
        flush_barrier(mesh, &service).await;
    }
    mesh.access_log.for_request(id)
}

/// A counter from a sidecar's admin `/stats` (Envoy's names; meshkit's own are under
/// `wasmcustom.`), 0 if it was never incremented.
pub async fn envoy_stat(mesh: &LocalMesh, service: &str, name: &str) -> u64 {
    let r = http_client::get(
        mesh.admin(service).expect("service in the mesh"),
        &format!("/stats?filter=^{name}$"),
    )
    .await
    .expect("admin /stats");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
        .unwrap_or(0)
}

/// The health flags `service`'s sidecar shows for `host` in its cluster `cluster` (admin
/// `/clusters`): `healthy`, or flags such as `/failed_outlier_check`, `/failed_active_hc`.
pub async fn health_flags(
    mesh: &LocalMesh,
    service: &str,
    cluster: &str,
    host: std::net::SocketAddr,
) -> String {
    let admin = mesh.admin(service).expect("service in the mesh");
    meshkit_cli::drain::health_flags(admin, cluster, host)
        .await
        .expect("admin /clusters")
        .unwrap_or_default()
}

/// A GET of `/` at `to` with request id `id` and, optionally, `x-demo` directives: its status
/// (0 if it got no answer).
pub async fn send_demo(to: std::net::SocketAddr, id: &str, demo: Option<&str>) -> u16 {
    let mut headers = vec![("x-request-id".to_string(), id.to_string())];
    if let Some(d) = demo {
        headers.push(("x-demo".to_string(), d.to_string()));
    }
    http_client::send(
        to,
        hyper::Method::GET,
        "/",
        &headers,
        Duration::from_secs(30),
    )
    .await
    .map(|r| r.status)
    .unwrap_or(0)
}

/// The value of one series (`name{labels}`, exactly as Envoy prints it) at a sidecar's
/// Prometheus endpoint; 0 if absent.
pub async fn prometheus_sample(mesh: &LocalMesh, service: &str, series: &str) -> f64 {
    let r = http_client::get(
        mesh.admin(service).expect("service in the mesh"),
        "/stats/prometheus",
    )
    .await
    .expect("admin /stats/prometheus");
    let prefix = format!("{series} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}
