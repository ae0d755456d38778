//! Circuit breakers on real Envoy, under a burst: what the breaker refuses is reported as
//! `MESH_UPSTREAM_OVERFLOW` (a pending-queue overflow) or as a retry the breaker refused
//! (`meshkit.retry.budget: overflow`), and meshkit's logs and metrics agree with Envoy's own
//! `upstream_rq_pending_overflow` and `upstream_rq_retry_overflow` counters.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::http_client;
use meshkit_cli::local_mesh::LocalMesh;

/// The example mesh with recipes → users' breaker set to `breaker`.
fn spec(breaker: &str) -> meshkit_sdk::model::Mesh {
    let text = common::with_users_policy(&common::example_spec_text(), "circuit_breaker", breaker);
    meshkit_sdk::load_str(&text, meshkit_sdk::Format::Yaml).expect("valid spec")
}

/// `n` requests at once into frontend, each with `demo` and id `<prefix>-<k>`.
async fn burst(entry: SocketAddr, prefix: &str, n: usize, demo: &str) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|k| {
            let id = format!("{prefix}-{k}");
            let headers = vec![
                ("x-request-id".to_string(), id.clone()),
                ("x-demo".to_string(), demo.to_string()),
            ];
            tokio::spawn(async move {
                let _ =
                    http_client::send(entry, Method::GET, "/", &headers, Duration::from_secs(30))
                        .await;
                id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("request task"));
    }
    ids
}

/// recipes' outbound lines for `ids`, after every sidecar flushed.
async fn recipes_outbound(
    mesh: &LocalMesh,
    ids: &[String],
) -> Vec<meshkit_cli::access_log::AccessLine> {
    common::lines_for(mesh, "cb-flush").await;
    ids.iter()
        .flat_map(|id| mesh.access_log.for_request(id))
        .filter(|l| {
            l.str("service.name") == Some("recipes")
                && l.str("meshkit.direction") == Some("outbound")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pending_queue_is_mesh_upstream_overflow_and_agrees_with_envoy() {
    // One connection to all of users' replicas and one request waiting for it; room for
    // requests otherwise, so that every refusal is the pending queue's.
    let mesh =
        spec("{ max_connections: 1, max_pending_requests: 1, max_requests: 64, max_retries: 1 }");
    let mut mesh = common::start(mesh, "cb-pending").await;
    let entry = mesh.inbound("frontend").unwrap();
    let ids = burst(entry, "cb-p", 12, "users.latency=400ms").await;
    let lines = recipes_outbound(&mesh, &ids).await;
    let ours = lines
        .iter()
        .filter(|l| l.str("meshkit.error.code") == Some("MESH_UPSTREAM_OVERFLOW"))
        .count();
    let envoy = common::envoy_stat(
        &mesh,
        "recipes",
        "cluster.users.upstream_rq_pending_overflow",
    )
    .await;
    let metric = common::prometheus_sample(
        &mesh,
        "recipes",
        r#"meshkit_errors{service="recipes",direction="outbound",upstream="users",origin="users",classification="mesh",code="MESH_UPSTREAM_OVERFLOW"}"#,
    )
    .await;
    let all = http_client::get(mesh.admin("recipes").unwrap(), "/stats/prometheus")
        .await
        .unwrap();
    println!(
        "{}",
        all.text()
            .lines()
            .filter(|l| l.starts_with("meshkit_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("pending overflow: {ours} logged MESH_UPSTREAM_OVERFLOW, Envoy counted {envoy}, metric {metric}");
    assert!(ours > 0, "the burst overflowed nothing: {lines:#?}");
    assert_eq!(ours as u64, envoy);
    assert_eq!(metric as u64, envoy);
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_the_breaker_refuses_are_logged_as_overflow_and_agree_with_envoy() {
    // Room for every request, one retry in flight.
    let mesh =
        spec("{ max_connections: 64, max_pending_requests: 64, max_requests: 64, max_retries: 1 }");
    let mut mesh = common::start(mesh, "cb-retry").await;
    let entry = mesh.inbound("frontend").unwrap();
    let ids = burst(
        entry,
        "cb-r",
        12,
        "users.latency=300ms;users.status=503;users.code=CM503001",
    )
    .await;
    let lines = recipes_outbound(&mesh, &ids).await;
    let ours = lines
        .iter()
        .filter(|l| l.str("meshkit.retry.budget") == Some("overflow"))
        .count();
    let envoy =
        common::envoy_stat(&mesh, "recipes", "cluster.users.upstream_rq_retry_overflow").await;
    let metric = common::prometheus_sample(
        &mesh,
        "recipes",
        r#"meshkit_retry_overflow{service="recipes",upstream="users"}"#,
    )
    .await;
    println!("retry overflow: {ours} logged overflow, Envoy counted {envoy}, metric {metric}");
    assert!(ours > 0, "no retry was refused: {lines:#?}");
    assert_eq!(ours as u64, envoy);
    assert_eq!(metric as u64, envoy);
    mesh.shutdown().await;
}
