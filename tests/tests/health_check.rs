//! Active health checks on real Envoy: `recipes`' sidecar checks both instances of `users`
//! through their sidecars. A replica that fails its check gets no traffic; once it passes
//! again, it does. When every replica fails (and the panic threshold is 0), callers answer
//! `MESH_NO_HEALTHY_UPSTREAM` without trying any, until one passes. Health is flipped on the replica directly, at its own inbound listener, and
//! arrivals are counted in each replica's own sidecar log.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use meshkit_cli::local_mesh::LocalMesh;

fn spec() -> String {
    common::example_round_robin_checked(
        "{ path: /healthz, interval: 300ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }",
    )
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
    // set by a post (at once: the generator sets `update_merge_window` to 0, Envoy's default
    // merges for 1 s). Counting starts once recipes has completed one more failed check of
    // users-1 (a whole interval later), so a busy worker cannot make this test flaky.
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

    // Dozens of checks went through the replicas' sidecars; none is in their access logs.
    let checks = common::envoy_stat(&mesh, "recipes", "cluster.users.health_check.attempt").await;
    common::flush_barrier(&mesh, "users").await;
    common::flush_barrier(&mesh, "users-1").await;
    let logged = mesh
        .access_log
        .snapshot()
        .iter()
        .filter(|l| l.str("url.path") == Some("/healthz"))
        .count();
    println!("{checks} health checks, {logged} of them logged");
    assert!(checks > 10, "{checks} health checks");
    assert_eq!(logged, 0, "health checks are not access-logged");
    mesh.shutdown().await;
}

/// What recipes' sidecar made of request `id` on its way to `users`: the mesh code it logged
/// (`None` for a success) and the `users` instance that served it, if any.
async fn via_users(
    mesh: &LocalMesh,
    entry: SocketAddr,
    id: &str,
) -> (Option<String>, Option<String>) {
    common::send_demo(entry, id, None).await;
    common::lines_for(mesh, id).await;
    let lines = mesh.access_log.for_request(id);
    let code = lines
        .iter()
        .find(|l| l.sidecar == "recipes" && l.str("meshkit.direction") == Some("outbound"))
        .and_then(|l| l.str("meshkit.error.code").map(str::to_string));
    let served = lines
        .iter()
        .filter_map(|l| l.str("service.instance.id"))
        .find(|i| i.starts_with("users"))
        .map(str::to_string);
    (code, served)
}

/// Sends requests until `pred` holds for one (the callers' workers take the new host set by a
/// post, just after the flags show it), then requires it of the next five.
async fn settles_on(
    mesh: &LocalMesh,
    entry: SocketAddr,
    prefix: &str,
    what: &str,
    pred: impl Fn(&(Option<String>, Option<String>)) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut k = 0;
    loop {
        let seen = via_users(mesh, entry, &format!("{prefix}-{k}")).await;
        k += 1;
        if pred(&seen) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: last {seen:?}"
        );
    }
    for j in 0..5 {
        let seen = via_users(mesh, entry, &format!("{prefix}-then-{j}")).await;
        assert!(pred(&seen), "{what}, then not: {seen:?}");
    }
    println!("{what} after {k} request(s), and for the next 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_failing_its_check_is_mesh_no_healthy_upstream_until_one_passes() {
    // With Envoy's default panic threshold (50 %) a caller whose replicas all fail would route
    // to them anyway; 0 (Istio's default) makes it fail fast instead.
    let text = common::with_users_policy(&spec(), "panic_threshold_percent", "0");
    let mesh = meshkit_sdk::load_str(&text, meshkit_sdk::Format::Yaml).expect("valid spec");
    let mut mesh = common::start(mesh, "health-all").await;
    let entry = mesh.inbound("frontend").unwrap();
    let replicas = [
        ("users", mesh.inbound("users").unwrap()),
        ("users-1", mesh.inbound("users-1").unwrap()),
    ];
    for (_, addr) in replicas {
        wait_flags(&mesh, addr, "healthy", |f| f == "healthy").await;
    }

    for (name, addr) in replicas {
        common::send_demo(
            addr,
            &format!("{name}-fail"),
            Some(&format!("{name}.health=fail")),
        )
        .await;
    }
    for (_, addr) in replicas {
        wait_flags(&mesh, addr, "failing its check", |f| {
            f.contains("failed_active_hc")
        })
        .await;
    }
    settles_on(
        &mesh,
        entry,
        "all-failing",
        "MESH_NO_HEALTHY_UPSTREAM",
        |(code, served)| code.as_deref() == Some("MESH_NO_HEALTHY_UPSTREAM") && served.is_none(),
    )
    .await;
    let panics = common::envoy_stat(&mesh, "recipes", "cluster.users.lb_healthy_panic").await;
    assert_eq!(panics, 0, "panic mode with a threshold of 0");

    let (name, addr) = replicas[1];
    common::send_demo(addr, "users-1-ok", Some(&format!("{name}.health=ok"))).await;
    wait_flags(&mesh, addr, "healthy again", |f| f == "healthy").await;
    settles_on(
        &mesh,
        entry,
        "one-passing",
        "served by users-1",
        |(code, served)| code.is_none() && served.as_deref() == Some("users-1"),
    )
    .await;
    mesh.shutdown().await;
}
