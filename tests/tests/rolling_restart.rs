//! A rolling restart on real Envoy: `users` has two replicas, which `recipes` health-checks.
//! While a steady load of 50 requests a second runs through the whole chain, every `users`
//! instance is drained (`/healthcheck/fail`, its callers notice, `/drain_listeners?graceful`,
//! its requests finish), stopped, started again and seen healthy, one at a time. No client
//! request may fail, and every one must be logged.

mod common;

use std::time::Duration;

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
    let load = common::load::SteadyLoad::start(entry, "rolling", Duration::from_millis(20), &[]);

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
    let results = load.stop().await;
    let failed = common::load::failed(&results);
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
