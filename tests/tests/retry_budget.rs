//! Retry budgeting on real Envoy: catalog-driven retryability, client-proof retry counts,
//! amplification across a 3-layer chain in both modes, and the budget holding a fixed-rate
//! load against a failing upstream with 2 Envoy workers sharing it.

mod common;

use common::{flush_barrier, lines_for};

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::access_log::AccessLine;
use meshkit_cli::http_client::{self, Response};
use meshkit_cli::local_mesh::LocalMesh;

const LOG_WAIT: Duration = Duration::from_secs(60);

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    request_id: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("x-request-id".to_string(), request_id.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    http_client::send(addr, method, path, &headers, Duration::from_secs(30))
        .await
        .expect("request")
}

fn outbound(mesh: &LocalMesh, service: &str) -> SocketAddr {
    SocketAddr::from((
        [127, 0, 0, 1],
        mesh.mesh.service(service).unwrap().sidecar.outbound_port,
    ))
}

fn count(lines: &[AccessLine], service: &str, direction: &str) -> usize {
    lines
        .iter()
        .filter(|l| {
            l.str("service.name") == Some(service) && l.str("meshkit.direction") == Some(direction)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_retryable_app_codes_and_idempotent_methods_are_retried() {
    let mut mesh = common::start(common::example_mesh(), "retryable").await;
    let recipes_out = outbound(&mesh, "recipes"); // recipes → users: num_retries 1

    // Retryable catalog code: retried once (2 attempts at users).
    let r = send(
        recipes_out,
        Method::GET,
        "/users",
        "r-retryable",
        &[("x-demo", "users.status=503;users.code=CM503001")],
    )
    .await;
    assert_eq!(r.header("x-envoy-attempt-count"), Some("2"));
    let lines = lines_for(&mesh, "r-retryable").await;
    assert_eq!(count(&lines, "users", "inbound"), 2);
    let out = lines
        .iter()
        .find(|l| l.str("service.name") == Some("recipes"))
        .unwrap();
    assert_eq!(out.str("meshkit.retry.allowed"), Some("1"));
    assert_eq!(out.str("meshkit.retry.budget"), Some("full"));

    // Non-retryable code, even with a 5xx status: exactly one attempt.
    let r = send(
        recipes_out,
        Method::GET,
        "/users",
        "r-nonretryable",
        &[("x-demo", "users.status=500;users.code=CM500003")],
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-envoy-attempt-count"), Some("1"));
    assert_eq!(
        count(
            &lines_for(&mesh, "r-nonretryable").await,
            "users",
            "inbound"
        ),
        1
    );

    // A plain 503 without a code is not retried either (status alone says nothing).
    let r = send(
        recipes_out,
        Method::GET,
        "/users",
        "r-plain",
        &[("x-demo", "users.status=503")],
    )
    .await;
    assert_eq!(r.header("x-envoy-attempt-count"), Some("1"));

    // Non-idempotent method: not retried, even for a retryable code.
    let r = send(
        recipes_out,
        Method::POST,
        "/users",
        "r-post",
        &[("x-demo", "users.status=503;users.code=CM503001")],
    )
    .await;
    assert_eq!(r.header("x-envoy-attempt-count"), Some("1"));

    // Connect failures are retried by the router itself (Envoy replies, not the app): those
    // retries are charged and counted too, in step with Envoy's own counter.
    assert!(mesh.stop_service("users").await);
    let r = send(recipes_out, Method::GET, "/users", "r-uf", &[]).await;
    assert_eq!(r.header("x-envoy-attempt-count"), Some("2"));
    assert_eq!(
        r.header("x-meshkit-error-code"),
        Some("MESH_UPSTREAM_CONNECT_FAILURE")
    );
    let ours = meshkit_retry(&mesh, "recipes", "retries", "users").await;
    let envoys = common::envoy_stat(&mesh, "recipes", "cluster.users.upstream_rq_retry").await;
    assert_eq!(ours as u64, envoys);
    assert_eq!(envoys, 2, "r-retryable and r-uf each retried once");

    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_force_retries() {
    let mut mesh = common::start(common::example_mesh(), "force-retries").await;
    let recipes_out = outbound(&mesh, "recipes");
    let force = [
        ("x-envoy-max-retries", "5"),
        ("x-envoy-retry-on", "5xx,retriable-4xx"),
        ("x-envoy-retriable-status-codes", "500"),
        ("x-demo", "users.status=500;users.code=CM500003"),
    ];
    let r = send(recipes_out, Method::GET, "/users", "r-force", &force).await;
    assert_eq!(
        r.header("x-envoy-attempt-count"),
        Some("1"),
        "app side of the sidecar"
    );
    let entry = mesh.inbound("frontend").unwrap();
    send(entry, Method::GET, "/", "r-force-edge", &force).await;
    let lines = lines_for(&mesh, "r-force-edge").await;
    assert_eq!(count(&lines, "users", "inbound"), 1, "edge request");
    mesh.shutdown().await;
}

/// Services calling each other in a chain, `names[0]` → `names[1]` → …, each route allowing 3
/// retries (1 ms backoff), the default retry budget or none, `retry_layers` as given.
fn retry_chain(names: &[&str], layers: &str, budget: bool) -> meshkit_sdk::model::Mesh {
    let budget = if budget {
        ""
    } else {
        "retry_budget: { enabled: false }, "
    };
    let mut ports = meshkit_tests::free_ports(4 * names.len()).into_iter();
    let mut port = || ports.next().expect("enough free ports");
    let mut spec = format!(
        "version: 1\nmesh: chain\nretry_layers: {layers}\nerrors:\n  catalog:\n    - {{ code: CM503001, \
         http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: unavailable }}\nservices:\n"
    );
    for (i, name) in names.iter().enumerate() {
        spec += &format!(
            "  - name: {name}\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
            port(), port(), port(), port()
        );
        if let Some(next) = names.get(i + 1) {
            spec += &format!(
                "    upstreams:\n      - {{ service: {next}, {budget}routes: [ {{ match: {{ prefix: /{next} }}, \
                 timeout: 10s, retry: {{ num_retries: 3, backoff: {{ base_interval: 1ms }} }} }} ] }}\n"
            );
        }
    }
    meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap()
}

/// A chain of three services, the deepest failing with a retryable code.
fn chain(layers: &str, budget: bool) -> meshkit_sdk::model::Mesh {
    retry_chain(&["a", "b", "c"], layers, budget)
}

/// Attempts reaching `c` for one client request into `a`.
async fn attempts_at_deepest(layers: &str, budget: bool) -> usize {
    let mut mesh = common::start(chain(layers, budget), "chain").await;
    let entry = mesh.inbound("a").unwrap();
    let id = format!("chain-{layers}-{budget}");
    let r = send(
        entry,
        Method::GET,
        "/",
        &id,
        &[("x-demo", "c.status=503;c.code=CM503001")],
    )
    .await;
    assert_eq!(r.header("x-meshkit-error-origin"), Some("c"));
    flush_barrier(&mesh, "c").await;
    let n = count(&mesh.access_log.for_request(&id), "c", "inbound");
    mesh.shutdown().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_do_not_multiply_across_layers() {
    let naive = attempts_at_deepest("every_hop", false).await;
    let every_hop_budgeted = attempts_at_deepest("every_hop", true).await;
    let nearest = attempts_at_deepest("nearest_hop", true).await;
    println!(
        "attempts at the deepest of 3 services per client request (num_retries 3 per hop): \
         naive (every hop, no budget) = {naive}, every hop with budgets = {every_hop_budgeted}, \
         nearest hop = {nearest}"
    );
    assert_eq!(naive, 16, "(1 + 3) × (1 + 3)");
    assert_eq!(nearest, 4, "only b retries c");
}

/// `load` → `target`, 3 retries allowed per request, the default budget (20 %, 10/s, 10 s)
/// or none.
fn load_pair(budget: bool) -> meshkit_sdk::model::Mesh {
    retry_chain(&["load", "target"], "nearest_hop", budget)
}

const RATE: u32 = 200;
const SECONDS: u32 = 10;

/// Sends `RATE` requests per second for `SECONDS` to `load`'s outbound listener (acting as the
/// `load` app), all failing at `target` with a retryable code unless `directives` is empty.
/// Returns (requests, attempts that reached target).
async fn fixed_rate(mesh: &LocalMesh, prefix: &str, directives: &str) -> (usize, usize) {
    let via = outbound(mesh, "load");
    let total = (RATE * SECONDS) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let id = format!("{prefix}-{i}");
        let directives = directives.to_string();
        tasks.spawn(async move {
            let extra: Vec<(&str, &str)> = if directives.is_empty() {
                vec![]
            } else {
                vec![("x-demo", directives.as_str())]
            };
            send(via, Method::GET, "/target", &id, &extra).await.status
        });
    }
    while let Some(status) = tasks.join_next().await {
        status.unwrap();
    }
    let ours = |l: &AccessLine| {
        l.str("request_id")
            .is_some_and(|id| id.starts_with(&format!("{prefix}-")))
    };
    let lines = mesh
        .access_log
        .wait_for(LOG_WAIT, |lines| {
            lines
                .iter()
                .filter(|l| ours(l) && l.str("service.name") == Some("load"))
                .count()
                >= total
        })
        .await
        .unwrap_or_else(|_| panic!("not every {prefix} request was logged"));
    drop(lines);
    flush_barrier(mesh, "target").await;
    let attempts = mesh
        .access_log
        .snapshot()
        .iter()
        .filter(|l| ours(l) && l.str("service.name") == Some("target"))
        .count();
    (total, attempts)
}

/// A `meshkit_retry_*` sample from the sidecar's Prometheus endpoint.
async fn meshkit_retry(mesh: &LocalMesh, service: &str, kind: &str, upstream: &str) -> f64 {
    common::prometheus_sample(
        mesh,
        service,
        &format!(r#"meshkit_retry_{kind}{{service="{service}",upstream="{upstream}"}}"#),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bounds_retries_under_load_across_two_workers() {
    let failing = "target.status=503;target.code=CM503001";

    // Budget on.
    let mut mesh = common::start_with(load_pair(true), "load-on", &[], 2).await;
    let (requests, attempts) = fixed_rate(&mesh, "on", failing).await;
    let bound = requests as f64 * 1.2 + 10.0 * f64::from(SECONDS);
    println!(
        "budget on: {requests} requests at {RATE}/s for {SECONDS}s → {attempts} attempts at the \
         failing upstream ({:.2} per request; bound {bound})",
        attempts as f64 / requests as f64
    );
    assert!(
        attempts as f64 <= bound * 1.1,
        "{attempts} attempts exceed the budget bound {bound} (+10 %)"
    );
    assert!(attempts > requests, "the budget still allowed some retries");

    // Our counters agree with Envoy's own.
    let envoy_retries = common::envoy_stat(&mesh, "load", "cluster.target.upstream_rq_retry").await;
    let ours = meshkit_retry(&mesh, "load", "retries", "target").await;
    assert_eq!(
        ours as u64, envoy_retries,
        "meshkit_retry_retries vs upstream_rq_retry"
    );
    assert_eq!(envoy_retries as usize, attempts - requests);
    let denied = meshkit_retry(&mesh, "load", "denied", "target").await;
    assert!(denied > 0.0, "denials were counted");
    assert_eq!(
        meshkit_retry(&mesh, "load", "requests", "target").await as usize,
        requests
    );
    let denied_line = mesh
        .access_log
        .snapshot()
        .into_iter()
        .find(|l| l.str("meshkit.retry.budget") == Some("denied"))
        .expect("a denied request in the log");
    // The log line describes the error the app got (the upstream's, not retryable for the app)
    // and, in its own field, why it was not retried.
    assert_eq!(denied_line.str("meshkit.error.code"), Some("CM503001"));
    assert_eq!(denied_line.str("meshkit.error.origin"), Some("target"));
    assert_eq!(denied_line.str("meshkit.error.retryable"), Some("false"));
    assert_eq!(
        denied_line.num("http.response.status_code"),
        Some(503.0),
        "returned as-is"
    );

    // The upstream recovers: successes refill the budget and nothing is denied. (Retries
    // granted to requests in flight together can overdraw the window by a few withdrawals,
    // hence more successes than the 5-per-retry ratio alone needs.)
    for i in 0..300 {
        let r = send(
            outbound(&mesh, "load"),
            Method::GET,
            "/target",
            &format!("ok-{i}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let ok_lines = mesh
        .access_log
        .wait_for_request("ok-299", 2, LOG_WAIT)
        .await
        .unwrap();
    assert!(!ok_lines.is_empty());
    let lines = mesh.access_log.snapshot();
    assert!(
        lines
            .iter()
            .filter(|l| l.str("request_id").is_some_and(|id| id.starts_with("ok-")))
            .all(|l| l.str("meshkit.retry.budget") != Some("denied")),
        "successful traffic is never denied"
    );
    let r = send(
        outbound(&mesh, "load"),
        Method::GET,
        "/target",
        "after-refill",
        &[("x-demo", failing)],
    )
    .await;
    assert_eq!(
        r.header("x-envoy-attempt-count"),
        Some("4"),
        "refilled: the full 3 retries again"
    );
    mesh.shutdown().await;

    // Budget off: every request makes all 4 attempts (Envoy's default breaker, 3 retries in
    // flight, used to cap this at random).
    let mut mesh = common::start_with(load_pair(false), "load-off", &[], 2).await;
    let (requests_off, attempts_off) = fixed_rate(&mesh, "off", failing).await;
    println!(
        "budget off: {requests_off} requests → {attempts_off} attempts ({:.2} per request)",
        attempts_off as f64 / requests_off as f64
    );
    // Exact, whatever the machine's speed: the generated circuit breaker allows as many
    // retries in flight as requests, so nothing but the budget could have capped them.
    assert_eq!(attempts_off, 4 * requests_off, "4× without a budget");
    mesh.shutdown().await;
}
