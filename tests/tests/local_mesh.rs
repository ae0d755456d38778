//! The example mesh (frontend → recipes → users) on real Envoy with the built filter: every
//! sidecar hop logs one JSON line per request, with the filter's fields.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::access_log::AccessLine;
use meshkit_cli::http_client::{self, Response};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

async fn get(addr: SocketAddr, request_id: &str, demo: Option<&str>) -> Response {
    let mut headers = vec![
        ("x-request-id".to_string(), request_id.to_string()),
        ("traceparent".to_string(), TRACEPARENT.to_string()),
        ("user-agent".to_string(), "meshkit-it".to_string()),
    ];
    if let Some(d) = demo {
        headers.push(("x-demo".to_string(), d.to_string()));
    }
    http_client::send(
        addr,
        Method::GET,
        "/start?x=1",
        &headers,
        Duration::from_secs(30),
    )
    .await
    .expect("request into frontend")
}

fn hop(line: &AccessLine) -> (String, String) {
    (
        line.str("service.name").unwrap_or("?").to_string(),
        line.str("meshkit.direction").unwrap_or("?").to_string(),
    )
}

fn find<'a>(lines: &'a [AccessLine], service: &str, direction: &str) -> &'a AccessLine {
    lines
        .iter()
        .find(|l| hop(l) == (service.to_string(), direction.to_string()))
        .unwrap_or_else(|| panic!("no {service} {direction} line in {lines:#?}"))
}

fn status(line: &AccessLine) -> u16 {
    line.num("http.response.status_code").unwrap_or(-1.0) as u16
}

const ALL_HOPS: [(&str, &str); 5] = [
    ("frontend", "inbound"),
    ("frontend", "outbound"),
    ("recipes", "inbound"),
    ("recipes", "outbound"),
    ("users", "inbound"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_logs_one_json_line_with_the_same_request_id() {
    let mut mesh = common::start(common::example_mesh(), "every-hop").await;
    let entry = mesh.inbound("frontend").unwrap();
    assert_eq!(
        meshkit_cli::demo_traffic::plan(&mesh.mesh).requests[0].min_lines,
        5
    );

    let ok = get(entry, "it-ok-1", None).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let lines = common::lines_for(&mesh, "it-ok-1").await;
    assert_eq!(lines.len(), 5, "exactly one line per hop: {lines:#?}");
    let hops: BTreeSet<_> = lines.iter().map(hop).collect();
    let expected: BTreeSet<_> = ALL_HOPS
        .iter()
        .map(|(s, d)| (s.to_string(), d.to_string()))
        .collect();
    assert_eq!(hops, expected);

    for line in &lines {
        assert!(line.json().is_some(), "not JSON: {}", line.raw);
        // The instance that wrote it (users runs two replicas).
        assert_eq!(
            Some(line.sidecar.as_str()),
            line.str("service.instance.id"),
            "line came from its own sidecar's stdout"
        );
        assert!(line.sidecar.starts_with(&hop(line).0), "{}", line.raw);
        assert_eq!(status(line), 200);
        assert_eq!(line.num("meshkit.schema_version"), Some(1.0));
        assert_eq!(line.str("http.request.method"), Some("GET"));
        assert_eq!(
            line.str("trace_id"),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(line.str("span_id"), Some("b7ad6b7169203331"));
        assert_eq!(line.str("envoy.response_flags"), Some("-"));
        assert_eq!(line.num("envoy.attempt_count"), Some(1.0));
        assert!(line.num("duration_ms").is_some(), "{}", line.raw);
        let ts = line.str("timestamp").unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
            "RFC 3339 with ms: {ts}"
        );
    }
    let edge = find(&lines, "frontend", "inbound");
    assert_eq!(edge.str("url.path"), Some("/start"), "path without query");
    assert_eq!(edge.str("user_agent.original"), Some("meshkit-it"));
    assert_eq!(edge.str("envoy.upstream_cluster"), Some("local_app"));
    assert_eq!(edge.str("client.address"), Some("127.0.0.1"));
    let out = find(&lines, "frontend", "outbound");
    assert_eq!(out.str("envoy.upstream_cluster"), Some("recipes"));
    assert_eq!(out.str("url.path"), Some("/recipes"));
    let recipes_port = mesh.mesh.service("recipes").unwrap().sidecar.inbound_port;
    assert_eq!(
        out.str("envoy.upstream_host"),
        Some(format!("127.0.0.1:{recipes_port}").as_str())
    );

    // A failure injected at the deepest service shows at every hop, with the right status.
    let failed = get(
        entry,
        "it-fail-1",
        Some("users.status=503;users.code=CM503001"),
    )
    .await;
    assert_eq!(
        failed.status, 500,
        "recipes and frontend apps answer a plain 500"
    );
    let lines = common::lines_for(&mesh, "it-fail-1").await;
    assert_eq!(status(find(&lines, "users", "inbound")), 503);
    assert_eq!(status(find(&lines, "recipes", "outbound")), 503);
    assert_eq!(status(find(&lines, "recipes", "inbound")), 500);
    assert_eq!(status(find(&lines, "frontend", "outbound")), 500);
    assert_eq!(status(find(&lines, "frontend", "inbound")), 500);

    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_shows_as_uf_503_at_the_caller() {
    let mut mesh = common::start(common::example_mesh(), "dead-upstream").await;
    let entry = mesh.inbound("frontend").unwrap();

    // Only the users app is gone: users' own sidecar fails to connect to it.
    assert!(mesh.stop_app("users"));
    get(entry, "it-app-down", None).await;
    let lines = common::lines_for(&mesh, "it-app-down").await;
    let users_in = find(&lines, "users", "inbound");
    assert_eq!(status(users_in), 503);
    assert!(
        users_in.str("envoy.response_flags").unwrap().contains("UF"),
        "{}",
        users_in.raw
    );

    // The whole users service is gone: recipes' outbound sidecar cannot connect (UF), and
    // its route retries connect failures once before giving up (URX).
    assert!(mesh.stop_service("users").await);
    get(entry, "it-svc-down", None).await;
    let lines = common::lines_for(&mesh, "it-svc-down").await;
    assert_eq!(lines.len(), 4, "users logs nothing: {lines:#?}");
    let recipes_out = find(&lines, "recipes", "outbound");
    assert_eq!(status(recipes_out), 503);
    let flags = recipes_out.str("envoy.response_flags").unwrap();
    assert!(
        flags.split(',').any(|f| f == "UF"),
        "flags {flags}: {}",
        recipes_out.raw
    );
    assert_eq!(recipes_out.str("envoy.upstream_cluster"), Some("users"));
    assert_eq!(
        recipes_out.num("envoy.attempt_count"),
        Some(2.0),
        "num_retries: 1 in the spec"
    );

    mesh.shutdown().await;
}
