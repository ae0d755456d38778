//! Live configuration on real Envoy: every sidecar of the example mesh gets its listeners,
//! routes, clusters, endpoints and meshkit filter configuration from meshkit's ADS server.
//! While a steady load runs through the chain, the spec changes four times; each change shows
//! in traffic, and no request of the load fails.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use hyper::Method;
use meshkit_cli::http_client;
use meshkit_cli::local_mesh::LocalMesh;
use meshkit_cli::xds::snapshot::{Resource, TypeResources};
use meshkit_cli::xds::{ResourceType, Snapshot};
use prost::Message;

fn load(text: &str) -> meshkit_sdk::model::Mesh {
    meshkit_sdk::load_str(text, meshkit_sdk::Format::Yaml).expect("valid spec")
}

/// Pushes `text` and returns how long until every sidecar acknowledged it.
async fn update(mesh: &mut LocalMesh, text: &str) -> Duration {
    let started = Instant::now();
    mesh.update(load(text))
        .await
        .expect("the update is acknowledged");
    started.elapsed()
}

/// Sends probes built by `probe` until `seen` holds for one; how long that took.
async fn until_seen<F, Fut>(what: &str, mut probe: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    for k in 0.. {
        if probe(k).await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never seen: {what}"
        );
    }
    unreachable!()
}

/// The status of `GET path` sent straight into frontend's outbound listener, as its app would.
async fn via_frontend_outbound(mesh: &LocalMesh, path: &str) -> u16 {
    let s = mesh.mesh.instance("frontend").expect("frontend");
    let outbound = SocketAddr::from(([127, 0, 0, 1], s.sidecar.outbound_port));
    http_client::send(outbound, Method::GET, path, &[], Duration::from_secs(10))
        .await
        .expect("frontend's outbound listener answers")
        .status
}

/// How many attempts recipes' sidecar made for a request that fails at users with CM503001.
async fn attempts_at_users(mesh: &LocalMesh, id: &str) -> f64 {
    common::send_demo(
        mesh.inbound("frontend").unwrap(),
        id,
        Some("users.status=503;users.code=CM503001"),
    )
    .await;
    let lines = common::lines_for(mesh, id).await;
    lines
        .iter()
        .find(|l| l.sidecar == "recipes" && l.str("meshkit.direction") == Some("outbound"))
        .and_then(|l| l.num("envoy.attempt_count"))
        .unwrap_or_else(|| panic!("no recipes outbound line for {id}: {lines:#?}"))
}

async fn listener_changes(mesh: &LocalMesh) -> u64 {
    let mut total = 0;
    for s in mesh.running_sidecars() {
        for stat in [
            "listener_manager.listener_modified",
            "listener_manager.listener_removed",
        ] {
            total += common::envoy_stat(mesh, &s, stat).await;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_changes_reach_running_sidecars_without_failing_a_request() {
    let v1 = common::example_spec_text();
    let mut mesh = common::start_ads(load(&v1), "live").await;
    let cp = mesh.control_plane.as_ref().expect("on ADS");
    cp.wait_acked(Duration::from_secs(30))
        .await
        .expect("initial config acknowledged");
    let entry = mesh.inbound("frontend").unwrap();
    assert_eq!(common::send_demo(entry, "ads-first", None).await, 200);

    let load = common::load::SteadyLoad::start(entry, "live", Duration::from_millis(20), &[]);
    let mut figures = Vec::new();

    // 1. A route's retry count: frontend → recipes allows 2 retries, then 1.
    let v2 = v1.replacen("num_retries: 2", "num_retries: 1", 1);
    let acked = update(&mut mesh, &v2).await;
    let seen = until_seen("frontend allows 1 retry", |k| {
        let id = format!("retries-{k}");
        let mesh = &mesh;
        async move {
            common::send_demo(entry, &id, None).await;
            common::lines_for(mesh, &id).await.iter().any(|l| {
                l.sidecar == "frontend"
                    && l.str("meshkit.direction") == Some("outbound")
                    && l.str("meshkit.retry.allowed") == Some("1")
            })
        }
    })
    .await;
    figures.push(("route retry count", acked, seen));

    // 2. A catalog entry's `retryable`: recipes stops retrying CM503001. Only the filter's
    // configuration changes (ECDS): no listener is modified, so none drains.
    assert_eq!(attempts_at_users(&mesh, "retryable-before").await, 2.0);
    let listeners_before = listener_changes(&mesh).await;
    let v3 = v2.replace(
        "{ code: CM503001, http_status: 503, grpc_status: UNAVAILABLE, retryable: true",
        "{ code: CM503001, http_status: 503, grpc_status: UNAVAILABLE, retryable: false",
    );
    assert_ne!(v3, v2);
    let acked = update(&mut mesh, &v3).await;
    let seen = until_seen("CM503001 not retried", |k| {
        let mesh = &mesh;
        async move { attempts_at_users(mesh, &format!("retryable-{k}")).await == 1.0 }
    })
    .await;
    figures.push(("catalog retryable", acked, seen));
    assert_eq!(
        listener_changes(&mesh).await,
        listeners_before,
        "a filter configuration change modified a listener"
    );

    // 3. A new upstream route (a new cluster with its endpoints, then the route).
    assert_eq!(via_frontend_outbound(&mesh, "/users").await, 404);
    let route = "\n      - service: users\n        routes:\n          - match: { prefix: /users }\n            timeout: 2s\n";
    let frontend_upstreams_end = v3
        .find("\n  - name: recipes")
        .expect("recipes follows frontend");
    let v4 = format!(
        "{}{route}{}",
        &v3[..frontend_upstreams_end].trim_end(),
        &v3[frontend_upstreams_end..]
    );
    let acked = update(&mut mesh, &v4).await;
    let seen = until_seen("/users routed from frontend", |_| {
        let mesh = &mesh;
        async move { via_frontend_outbound(mesh, "/users").await == 200 }
    })
    .await;
    figures.push(("new upstream route", acked, seen));

    // 4. The route removed again; its cluster goes once no route refers to it.
    let acked = update(&mut mesh, &v3).await;
    let seen = until_seen("/users no longer routed", |_| {
        let mesh = &mesh;
        async move { via_frontend_outbound(mesh, "/users").await == 404 }
    })
    .await;
    figures.push(("removed route", acked, seen));
    let clusters = http_client::get(mesh.admin("frontend").unwrap(), "/clusters")
        .await
        .unwrap();
    assert!(
        !clusters.text().lines().any(|l| l.starts_with("users::")),
        "frontend still has the users cluster"
    );

    load.wait_sent(100).await;
    let results = load.stop().await;
    let failed = common::load::failed(&results);
    for (what, acked, seen) in &figures {
        println!(
            "live change, {what}: acknowledged by all {} sidecars in {:.0} ms, seen in traffic {:.0} ms later",
            mesh.running_sidecars().len(),
            acked.as_secs_f64() * 1e3,
            seen.as_secs_f64() * 1e3
        );
    }
    println!(
        "steady load through all four changes: {} requests, {} failed",
        results.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    mesh.shutdown().await;
}

/// `snapshot` with frontend's outbound route table broken in a way only Envoy notices: two
/// virtual hosts both for `*`.
fn with_a_route_table_envoy_refuses(snapshot: &Snapshot) -> Snapshot {
    let mut broken = snapshot.clone();
    let node = broken
        .nodes
        .get_mut("frontend-sidecar")
        .expect("frontend's node");
    let node = Arc::make_mut(node);
    let routes = node.types.get_mut(&ResourceType::Route).expect("routes");
    let resources = routes
        .resources
        .iter()
        .map(|r| {
            if r.name != "outbound" {
                return r.clone();
            }
            let mut table = RouteConfiguration::decode(r.any.value.as_slice()).unwrap();
            let mut twin = table.virtual_hosts[0].clone();
            twin.name = "twin".into();
            table.virtual_hosts.push(twin);
            Resource::of(&r.name, &table).unwrap()
        })
        .collect();
    *routes = TypeResources::new(resources);
    broken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_envoy_refuses_is_reported_and_the_old_one_keeps_serving() {
    let text = common::example_spec_text();
    let mut mesh = common::start_ads(load(&text), "nack").await;
    let entry = mesh.inbound("frontend").unwrap();
    let cp = mesh.control_plane.as_ref().expect("on ADS");
    cp.wait_acked(Duration::from_secs(30)).await.unwrap();
    let server = cp.server().unwrap();
    let good = server.snapshot();
    let held = |s: &meshkit_cli::xds::StatusBoard| {
        s.nodes()["frontend-sidecar"].types[&ResourceType::Route].clone()
    };
    let before = held(&server.status);

    let load = common::load::SteadyLoad::start(entry, "nack", Duration::from_millis(20), &[]);
    let broken = with_a_route_table_envoy_refuses(&good);
    let refused = broken.nodes["frontend-sidecar"]
        .get(ResourceType::Route)
        .version
        .clone();
    server.update(broken);
    let started = Instant::now();
    let nack = loop {
        if let Some(n) = held(&server.status).nack {
            break n;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no NACK");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "NACK after {:.0} ms: frontend-sidecar RDS {}: {}",
        started.elapsed().as_secs_f64() * 1e3,
        nack.version,
        nack.detail
    );
    assert_eq!(nack.version, refused);
    assert!(nack.detail.contains("wildcard"), "{}", nack.detail);
    assert_eq!(
        held(&server.status).acked,
        before.acked,
        "Envoy keeps the old table"
    );
    let view = server.status.render();
    assert!(view.contains("last NACK: RDS"), "{view}");
    println!("{view}");
    // Traffic keeps flowing on the old config meanwhile.
    for k in 0..5 {
        assert_eq!(
            common::send_demo(entry, &format!("after-nack-{k}"), None).await,
            200
        );
    }
    // The spec as it was is what Envoy holds: nothing to send, and all is acknowledged.
    cp.push(&mesh.mesh).unwrap();
    cp.wait_acked(Duration::from_secs(30)).await.unwrap();

    load.wait_sent(100).await;
    let results = load.stop().await;
    let failed = common::load::failed(&results);
    println!(
        "load through the refused update: {} requests, {} failed",
        results.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_keep_serving_while_the_server_restarts_and_then_reconnect() {
    let text = common::example_spec_text();
    let mut mesh = common::start_ads(load(&text), "restart-cp").await;
    let entry = mesh.inbound("frontend").unwrap();
    mesh.control_plane
        .as_ref()
        .unwrap()
        .wait_acked(Duration::from_secs(30))
        .await
        .unwrap();

    let load = common::load::SteadyLoad::start(entry, "cp-restart", Duration::from_millis(20), &[]);
    let spec = mesh.mesh.clone();
    mesh.control_plane.as_mut().unwrap().stop().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::envoy_stat(&mesh, "frontend", "control_plane.connected_state").await != 0 {
        assert!(
            Instant::now() < deadline,
            "frontend never saw the server go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With the server gone, requests still flow on the config each sidecar holds.
    for k in 0..10 {
        assert_eq!(
            common::send_demo(entry, &format!("no-server-{k}"), None).await,
            200
        );
    }
    let started = Instant::now();
    let cp = mesh.control_plane.as_mut().unwrap();
    cp.start_again(&spec).await.unwrap();
    cp.wait_acked(Duration::from_secs(60)).await.unwrap();
    let back = started.elapsed();
    let status = cp.server().unwrap().status.nodes();
    load.wait_sent(100).await;
    let results = load.stop().await;
    let failed = common::load::failed(&results);
    println!(
        "server restarted: all {} sidecars reconnected and acknowledged in {:.0} ms; load {} requests, {} failed",
        status.len(),
        back.as_secs_f64() * 1e3,
        results.len(),
        failed.len()
    );
    assert!(status.values().all(|n| n.connected && n.streams == 1));
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_module_comes_from_the_server_and_a_wrong_sha256_is_refused() {
    let text = common::example_spec_text();
    let mut mesh = common::start_ads(load(&text), "wasm-sha").await;
    let entry = mesh.inbound("frontend").unwrap();
    let cp = mesh.control_plane.as_ref().expect("on ADS");
    cp.wait_acked(Duration::from_secs(30)).await.unwrap();
    // Every sidecar runs the module it fetched: its config names no local file.
    let dump = http_client::get(
        mesh.admin("users").unwrap(),
        "/config_dump?resource=ecds_filters",
    )
    .await
    .unwrap()
    .text();
    assert!(
        dump.contains(&cp.module.remote.sha256) && dump.contains("/meshkit_filter.wasm"),
        "{dump}"
    );
    assert!(!dump.contains("\"filename\""), "{dump}");
    assert_eq!(common::send_demo(entry, "fetched", None).await, 200);

    // The config now claims a module the server does not have. Envoy accepts the config (the
    // fetch is asynchronous) but refuses the bytes: its log says so at critical level, and the
    // filter fails closed, so no request passes a module nobody verified.
    let server = cp.server().unwrap();
    let mut wrong = cp.module.remote.clone();
    wrong.sha256 = "0".repeat(64);
    let render = common::render_options(meshkit_sdk::OutputFormat::Json);
    server.update(Snapshot::build(&mesh.mesh, &render, Some(&wrong)).unwrap());
    let refused = until_seen(
        "requests refused by a filter that failed to load",
        |k| async move { common::send_demo(entry, &format!("wrong-sha-{k}"), None).await != 200 },
    )
    .await;
    let log = std::fs::read_to_string(mesh.run_dir.join("frontend.envoy.log")).unwrap();
    let critical: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[critical]") && l.contains("failed to load"))
        .collect();
    assert!(!critical.is_empty(), "no critical log line:\n{log}");
    println!(
        "wrong sha256: requests refused after {:.0} ms; frontend's log: {}",
        refused.as_secs_f64() * 1e3,
        critical[0]
    );

    // The right module again: requests pass.
    cp.push(&mesh.mesh).unwrap();
    cp.wait_acked(Duration::from_secs(30)).await.unwrap();
    let back = until_seen("requests served again", |k| async move {
        common::send_demo(entry, &format!("right-sha-{k}"), None).await == 200
    })
    .await;
    println!(
        "right sha256 again: served after {:.0} ms",
        back.as_secs_f64() * 1e3
    );
    mesh.shutdown().await;
}
