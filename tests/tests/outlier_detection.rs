//! Outlier detection on real Envoy, with replicas: `users` runs two instances behind `recipes`'
//! sidecar, and one of them (`users-1`) answers a retryable catalog code (503 `CM503001`) to
//! every request. It is ejected; while Envoy's own admin view says it is ejected no request
//! reaches it and the client's success rate is ≥ 99 %; after the ejection time it takes
//! traffic again. Arrivals are counted in the access log of each replica's own sidecar.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use meshkit_cli::local_mesh::LocalMesh;

const FAILING: &str = "users-1.status=503;users-1.code=CM503001";

fn spec() -> String {
    common::with_users_policy(
        &common::example_spec_text(),
        "outlier_detection",
        "{ consecutive_5xx: 3, interval: 1s, base_ejection_time: 3s, max_ejection_percent: 50 }",
    )
}

/// Whether recipes' sidecar has `users-1` ejected, in Envoy's own admin view.
async fn ejected(mesh: &LocalMesh, replica: SocketAddr) -> bool {
    common::health_flags(mesh, "recipes", "users", replica)
        .await
        .contains("failed_outlier_check")
}

/// Whether request `id` reached `users-1` (after a flush of every sidecar's log).
fn reached_replica(mesh: &LocalMesh, id: &str) -> bool {
    mesh.access_log
        .for_request(id)
        .iter()
        .any(|l| l.str("service.instance.id") == Some("users-1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_replica_is_ejected_and_comes_back() {
    let mesh = meshkit_sdk::load_str(&spec(), meshkit_sdk::Format::Yaml).expect("valid spec");
    let mut mesh = common::start(mesh, "outlier").await;
    let entry = mesh.inbound("frontend").unwrap();
    let replica = mesh.inbound("users-1").unwrap();

    // 1. Until Envoy ejects it (3 consecutive 5xx from users-1).
    let mut sent = 0;
    while !ejected(&mesh, replica).await {
        sent += 1;
        assert!(sent <= 200, "users-1 never ejected after {sent} requests");
        common::send_demo(entry, &format!("od-find-{sent}"), Some(FAILING)).await;
    }
    let enforced = common::envoy_stat(
        &mesh,
        "recipes",
        "cluster.users.outlier_detection.ejections_enforced_consecutive_5xx",
    )
    .await;
    assert!(enforced >= 1, "Envoy's counter: {enforced}");
    println!("users-1 ejected after {sent} requests");

    // 2. While ejected (by Envoy's view before and after each request), nothing reaches it.
    let mut ok = 0;
    let mut checked = Vec::new();
    for n in 0..100 {
        let id = format!("od-ejected-{n}");
        let before = ejected(&mesh, replica).await;
        let status = common::send_demo(entry, &id, Some(FAILING)).await;
        let after = ejected(&mesh, replica).await;
        ok += usize::from(status == 200);
        if before && after {
            checked.push(id);
        }
    }
    common::lines_for(&mesh, "od-flush").await;
    let leaked: Vec<&String> = checked
        .iter()
        .filter(|id| reached_replica(&mesh, id))
        .collect();
    println!(
        "while ejected: {ok}/100 client successes; {} requests sent with users-1 ejected throughout, {} reached it",
        checked.len(),
        leaked.len()
    );
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(
        !checked.is_empty(),
        "the ejection never held across one request"
    );
    assert!(ok >= 99, "client success {ok}/100");

    // 3. After the ejection time, it takes traffic again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ejected(&mesh, replica).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "users-1 never came back"
        );
        // Polling Envoy's admin view; it changes on Envoy's own timer.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back = None;
    for n in 0..50 {
        let id = format!("od-back-{n}");
        assert_eq!(common::send_demo(entry, &id, None).await, 200);
        common::lines_for(&mesh, &id).await;
        if reached_replica(&mesh, &id) {
            back = Some(n + 1);
            break;
        }
    }
    let back = back.expect("users-1 took no traffic after its ejection ended");
    println!("users-1 back: reached by request {back} after un-ejection");
    mesh.shutdown().await;
}
