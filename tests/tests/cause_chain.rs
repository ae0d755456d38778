//! The cause chain under load: about 2,000 requests in flight through a 3-hop chain
//! (a → b → c, every app taking 3 s), c failing each request with a code of its own, a and b
//! answering plain 500s. Every client response must name c as the origin and carry its own
//! request's code (the shared cause table never hands out another request's cause), and at
//! most 0.1 % may lose it. Prints the figures.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::http_client;

const HOP_LATENCY: &str = "3s";
const RATE: u32 = 240;
const SECONDS: u32 = 10;

fn chain() -> meshkit_sdk::model::Mesh {
    let mut ports = meshkit_tests::free_ports(12).into_iter();
    let mut port = || ports.next().unwrap();
    // Room for the load: Envoy's default breakers admit 1,024 requests per cluster.
    let breaker = "circuit_breaker: { max_connections: 8192, max_pending_requests: 8192, max_requests: 8192 }";
    let mut spec = "version: 1\nmesh: causes\nservices:\n".to_string();
    for (name, next) in [("a", Some("b")), ("b", Some("c")), ("c", None)] {
        spec += &format!(
            "  - name: {name}\n    app: {{ port: {}, timeout: 60s, {breaker} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
            port(), port(), port(), port()
        );
        if let Some(next) = next {
            spec += &format!(
                "    upstreams:\n      - {{ service: {next}, {breaker}, routes: [ {{ match: {{ prefix: / }}, timeout: 60s }} ] }}\n"
            );
        }
    }
    meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn causes_survive_two_thousand_requests_in_flight() {
    let mut mesh = common::start_with(chain(), "cause-load", &[], 2).await;
    let entry = mesh.inbound("a").unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let total = (RATE * SECONDS) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        tasks.spawn(async move {
            let code = format!("CX{i}");
            let headers = vec![
                ("x-request-id".to_string(), format!("cause-{i}")),
                (
                    "x-demo".to_string(),
                    format!("*.latency={HOP_LATENCY};c.status=503;c.code={code}"),
                ),
            ];
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let r =
                http_client::send(entry, Method::GET, "/", &headers, Duration::from_secs(60)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let r = r.expect("answered");
            let got = (
                r.header("x-meshkit-error-code").map(str::to_string),
                r.header("x-meshkit-error-origin").map(str::to_string),
            );
            (r.status, code, got)
        });
    }
    let (mut lost, mut foreign) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (status, code, (got_code, got_origin)) = result.unwrap();
        assert_eq!(status, 500);
        match got_code {
            Some(c) if c == code && got_origin.as_deref() == Some("c") => {}
            Some(c) if c.starts_with("CX") => foreign += 1,
            _ => lost += 1,
        }
    }
    let peak = peak.load(Ordering::SeqCst);
    let evicted_name = "wasmcustom.meshkit.cause_table.evicted";
    let evicted = common::envoy_stat(&mesh, "a", evicted_name).await
        + common::envoy_stat(&mesh, "b", evicted_name).await;
    println!(
        "cause chain under load: {total} error responses through a → b → c, peak {peak} in \
         flight; {lost} lost their origin ({:.3} %), {foreign} carried another request's \
         cause; cause-table evictions {evicted}",
        100.0 * lost as f64 / total as f64
    );
    assert!(
        peak >= 2_000,
        "the load reached {peak} in flight, not 2,000"
    );
    assert_eq!(foreign, 0, "no request ever sees another request's cause");
    assert!(
        lost as f64 <= 0.001 * total as f64,
        "{lost} of {total} lost their origin"
    );
    mesh.shutdown().await;
}
