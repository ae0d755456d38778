//! Active health checks on real Envoy: `recipes`' sidecar checks both instances of `users`
//! through their sidecars. A replica that fails its check gets no traffic; once it passes
//! again, it does. Health is flipped on the replica directly, at its own inbound listener, and
//! arrivals are counted in each replica's own sidecar log.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use meshkit_cli::local_mesh::LocalMesh;

fn spec() -> String {
    common::with_users_replica(&common::example_spec_text().replace(
        "        load_balancing: least_request          # the default\n",
        "        load_balancing: round_robin\n        health_check: { path: /healthz, interval: 300ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }\n",
    ))
}

/// Polls recipes' admin view until `host`'s flags satisfy `pred`.
async fn wait_flags(mesh: &LocalMesh, host: SocketAddr, what: &str, pred: fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !pred(&common::health_flags(mesh, "recipes", "users", host).await) {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        // Polling Envoy's admin view; it changes on the health checker's own timer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until recipes' health checker of `users` has counted one more `kind` (`failure`).
async fn another_check(mesh: &LocalMesh, kind: &str) {
    let stat = format!("cluster.users.health_check.{kind}");
    let before = common::envoy_stat(mesh, "recipes", &stat).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while common::envoy_stat(mesh, "recipes", &stat).await <= before {
        assert!(tokio::time::Instant::now() < deadline, "no further {kind}");
        // Polling Envoy's admin view; it changes on the health checker's own timer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `n` requests through the chain; how many reached `users-1`.
async fn reaching_replica(mesh: &LocalMesh, entry: SocketAddr, prefix: &str, n: usize) -> usize {
    let mut reached = 0;
    for k in 0..n {
        let id = format!("{prefix}-{k}");
        assert_eq!(common::send_demo(entry, &id, None).await, 200, "{id}");
        common::lines_for(mesh, &id).await;
        reached += usize::from(
            mesh.access_log
                .for_request(&id)
                .iter()
                .any(|l| l.str("service.instance.id") == Some("users-1")),
        );
    }
    reached
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_its_health_check_gets_no_traffic_until_it_passes() {
    let mesh = meshkit_sdk::load_str(&spec(), meshkit_sdk::Format::Yaml).expect("valid spec");
    let mut mesh = common::start(mesh, "health").await;
    let entry = mesh.inbound("frontend").unwrap();
    let replica = mesh.inbound("users-1").unwrap();

    wait_flags(&mesh, replica, "users-1 healthy", |f| f == "healthy").await;
    let before = reaching_replica(&mesh, entry, "hc-before", 10).await;
    assert!(before > 0, "round robin over two healthy replicas");

    common::send_demo(replica, "hc-fail", Some("users-1.health=fail")).await;
    wait_flags(&mesh, replica, "users-1 failing its check", |f| {
        f.contains("failed_active_hc")
    })
    .await;
    // The flags show on the main thread at once; each worker's load balancer gets the new host
    // set by a post that can lag behind under load. Counting starts once recipes has completed
    // one more failed check of users-1 (a whole interval later).
    another_check(&mesh, "failure").await;
    let failing = reaching_replica(&mesh, entry, "hc-failing", 20).await;

    common::send_demo(replica, "hc-ok", Some("users-1.health=ok")).await;
    wait_flags(&mesh, replica, "users-1 healthy again", |f| f == "healthy").await;
    let after = reaching_replica(&mesh, entry, "hc-after", 10).await;
    println!(
        "requests reaching users-1: {before}/10 healthy, {failing}/20 failing its check, {after}/10 healthy again"
    );
    assert_eq!(failing, 0);
    assert!(after > 0, "users-1 never took traffic again");
    mesh.shutdown().await;
}
