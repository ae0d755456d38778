//! What a crash of the filter's VM does to traffic, on real Envoy: a build of the filter that
//! panics on demand (`--features test-panic`) is loaded; one request panics the VM; traffic
//! keeps flowing (Envoy reloads the VM, `failure_policy: FAIL_RELOAD`), the reload shows in
//! Envoy's stats, and the reloaded VM does meshkit's work again.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::Method;
use meshkit_cli::http_client;
use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};

/// Builds the panicking variant into its own target directory (the release .wasm is left
/// alone) and returns its path.
fn panicking_wasm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target/test-panic");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--locked",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "meshkit-filter",
            "--features",
            "test-panic",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the test-panic filter failed");
    target_dir.join("wasm32-wasip1/release/meshkit_filter.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_keeps_flowing_after_the_vm_crashes_and_the_crash_is_counted() {
    let wasm = panicking_wasm();
    let options = LocalMeshOptions {
        envoy: common::envoy(),
        wasm,
        run_dir: common::scratch_dir("vm-crash"),
        concurrency: 1,
        echo_access_log: false,
        report_progress: false,
        app_commands: Vec::new(),
        ads: false,
        ready_timeout: Duration::from_secs(60),
        external_apps: vec![],
    };
    let mut mesh = LocalMesh::start(common::example_mesh(), &options)
        .await
        .expect("start the mesh");
    let entry = mesh.inbound("frontend").unwrap();
    let send = |id: String, extra: Option<(&str, &str)>| {
        let mut headers = vec![("x-request-id".to_string(), id)];
        headers.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
        async move {
            http_client::send(entry, Method::GET, "/", &headers, Duration::from_secs(30)).await
        }
    };
    assert_eq!(send("before".into(), None).await.unwrap().status, 200);

    // The crash: whatever this request gets, it is not a hang.
    let crashed = send("crash".into(), Some(("x-meshkit-test-panic", "1"))).await;
    println!("the crashing request got: {:?}", crashed.map(|r| r.status));

    // Traffic flows again once Envoy has reloaded the VM (after its reload backoff, 100 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed_meanwhile = 0;
    let mut n = 0;
    loop {
        n += 1;
        let r = send(format!("after-{n}"), None).await.unwrap();
        if r.status == 200 {
            break;
        }
        failed_meanwhile += 1;
        assert!(
            Instant::now() < deadline,
            "traffic never recovered: {}",
            r.status
        );
        tokio::task::yield_now().await;
    }
    let reloads =
        common::envoy_stat(&mesh, "frontend", "wasm.meshkit-inbound.vm_reload_success").await;
    println!(
        "after the crash: {failed_meanwhile} requests failed fast before the VM was reloaded; \
         wasm.meshkit-inbound.vm_reload_success = {reloads}"
    );
    assert!(reloads >= 1, "the crash shows in Envoy's stats");
    // And in Envoy's log, with the panic's message and location (the .wasm has no symbol
    // names, but the panic hook logs where it happened).
    let log = std::fs::read_to_string(mesh.run_dir.join("frontend.envoy.log")).unwrap();
    assert!(
        log.contains("meshkit: panicked at filter/src/host/mod.rs"),
        "the panic is logged"
    );

    // The reloaded VM does meshkit's work: the request's log line has meshkit's fields.
    let id = format!("after-{n}");
    let lines = common::lines_for(&mesh, &id).await;
    assert!(
        lines
            .iter()
            .any(|l| l.str("service.name") == Some("frontend")
                && l.str("meshkit.direction") == Some("inbound")),
        "meshkit's fields are back: {:?}",
        lines.iter().map(|l| &l.raw).collect::<Vec<_>>()
    );
    mesh.shutdown().await;
}
