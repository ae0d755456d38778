//! A rolling restart on real Envoy: `users` has two replicas, which `recipes` health-checks.
//! While a steady load of 50 requests a second runs through the whole chain, every `users`
//! instance is drained (`/healthcheck/fail`, its callers notice, `/drain_listeners?graceful`,
//! its requests finish), stopped, started again and seen healthy, one at a time. No client
//! request may fail, and every one must be logged.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::http_client;

fn spec() -> String {
    common::example_round_robin_checked(
        "{ path: /healthz, interval: 1s, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 1 }",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request() {
    let mesh = meshkit_sdk::load_str(&spec(), meshkit_sdk::Format::Yaml).expect("valid spec");
    let mut mesh = common::start(mesh, "rolling").await;
    let entry = mesh.inbound("frontend").unwrap();
    for replica in ["users", "users-1"] {
        let host = mesh.inbound(replica).unwrap();
        let admin = mesh.admin("recipes").unwrap();
        let watchers = meshkit_cli::drain::watchers(&mesh.mesh, "users");
        assert_eq!(watchers.len(), 1, "recipes health-checks users");
        meshkit_cli::drain::wait_health(&watchers, "users", host, true)
            .await
            .unwrap_or_else(|e| panic!("{replica} healthy at {admin} before the restart: {e}"));
    }

    // The load: one request every 20 ms, each on its own connection, each its own id.
    let running = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn({
        let running = running.clone();
        async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut k = 0;
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let id = format!("rolling-{k}");
                k += 1;
                let headers = [("x-request-id".to_string(), id.clone())];
                sent.push(tokio::spawn(async move {
                    let r = http_client::send(
                        entry,
                        Method::GET,
                        "/",
                        &headers,
                        Duration::from_secs(30),
                    )
                    .await;
                    (id, r.map(|r| r.status).map_err(|e| e.to_string()))
                }));
            }
            let mut results = Vec::new();
            for s in sent {
                results.push(s.await.expect("a request task"));
            }
            results
        }
    });

    let started = tokio::time::Instant::now();
    let steps = std::sync::Mutex::new(Vec::new());
    mesh.rolling_restart("users", |step| {
        eprintln!(
            "restart users at {:.1}s: {step}",
            started.elapsed().as_secs_f64()
        );
        steps.lock().unwrap().push(step.to_string());
    })
    .await
    .expect("the rolling restart");
    let took = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let results = load.await.expect("the load");

    let failed: Vec<_> = results
        .iter()
        .filter(|(_, r)| !matches!(r, Ok(200)))
        .collect();
    let steps = steps.into_inner().unwrap();
    println!(
        "rolling restart of users (2 replicas) under 50 req/s: {} requests in {:.1}s, {} failed; steps: {steps:?}",
        results.len(),
        took.as_secs_f64(),
        failed.len()
    );
    assert!(
        steps
            .iter()
            .filter(|s| s.ends_with("back in rotation"))
            .count()
            == 2,
        "both replicas restarted: {steps:?}"
    );
    assert!(results.len() >= 50, "the load ran through the restart");
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // Every request is logged: by the entry sidecar, and by the users replica that served it.
    for service in mesh.running_sidecars() {
        common::flush_barrier(&mesh, &service).await;
    }
    for (id, _) in &results {
        let lines = mesh.access_log.for_request(id);
        for service in ["frontend", "users"] {
            assert!(
                lines.iter().any(|l| l.str("service.name") == Some(service)
                    && l.str("meshkit.direction") == Some("inbound")),
                "{id}: no {service} inbound line in {lines:#?}"
            );
        }
    }
}
