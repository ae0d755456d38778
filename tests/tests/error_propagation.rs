//! Error-code propagation on real Envoy, HTTP: app codes, the cause chain through an app that
//! answers a plain 500, uniform errors for Envoy-made failures, spoofing, Prometheus counters.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::access_log::AccessLine;
use meshkit_cli::http_client::{self, Response};
use meshkit_cli::local_mesh::LocalMesh;
use serde_json::Value;

async fn send(addr: SocketAddr, path: &str, request_id: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("x-request-id".to_string(), request_id.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    http_client::send(addr, Method::GET, path, &headers, Duration::from_secs(30))
        .await
        .expect("request")
}

fn line<'a>(lines: &'a [AccessLine], service: &str, direction: &str) -> &'a AccessLine {
    lines
        .iter()
        .find(|l| {
            l.str("service.name") == Some(service) && l.str("meshkit.direction") == Some(direction)
        })
        .unwrap_or_else(|| panic!("no {service} {direction} line in {lines:#?}"))
}

/// `meshkit_errors` samples from a sidecar's Prometheus endpoint, keyed by their label set.
/// `meshkit_errors` of every instance of `service`, summed (its callers balance over them).
async fn error_counters(mesh: &LocalMesh, service: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    let instances: Vec<String> = mesh
        .mesh
        .service(service)
        .unwrap()
        .instances()
        .map(|(n, _)| n)
        .collect();
    for instance in instances {
        let r = http_client::get(mesh.admin(&instance).unwrap(), "/stats/prometheus")
            .await
            .unwrap();
        for l in r
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("meshkit_errors{"))
        {
            let Some((labels, value)) = l.rsplit_once("} ") else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap();
            *sums.entry(labels.to_string()).or_insert(0.0) += value;
        }
    }
    sums
}

fn labels(
    service: &str,
    direction: &str,
    upstream: &str,
    origin: &str,
    class: &str,
    code: &str,
) -> String {
    format!(
        r#"service="{service}",direction="{direction}",upstream="{upstream}",origin="{origin}",classification="{class}",code="{code}""#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_failing_service_is_reported_through_every_hop() {
    let mut mesh = common::start(common::example_mesh(), "cause-chain").await;
    let entry = mesh.inbound("frontend").unwrap();

    // users fails with CM503001; recipes and frontend (unchanged demo apps) answer a plain 500.
    let r = send(
        entry,
        "/",
        "e-chain",
        &[("x-demo", "users.status=503;users.code=CM503001")],
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-meshkit-error-code"), Some("CM503001"));
    assert_eq!(r.header("x-meshkit-error-origin"), Some("users"));
    // Only the caller next to users may retry (retry_layers: nearest_hop): recipes' sidecar
    // tells frontend the error is not for it to retry.
    assert_eq!(r.header("x-meshkit-error-retryable"), Some("false"));

    let lines = common::lines_for(&mesh, "e-chain").await;
    for (service, direction, source, retryable) in [
        ("users", "inbound", "header", "true"),
        // recipes' sidecar retried users itself: its app is not told to retry on top.
        ("recipes", "outbound", "upstream", "false"),
        ("recipes", "inbound", "cause", "false"),
        ("frontend", "outbound", "upstream", "false"),
        ("frontend", "inbound", "cause", "false"),
    ] {
        let l = line(&lines, service, direction);
        assert_eq!(l.str("meshkit.error.code"), Some("CM503001"), "{}", l.raw);
        assert_eq!(l.str("meshkit.error.origin"), Some("users"), "{}", l.raw);
        assert_eq!(
            l.str("meshkit.error.classification"),
            Some("catalog"),
            "{}",
            l.raw
        );
        assert_eq!(
            l.str("meshkit.error.retryable"),
            Some(retryable),
            "{}",
            l.raw
        );
        assert_eq!(l.str("meshkit.error.source"), Some(source), "{}", l.raw);
    }
    assert_eq!(
        line(&lines, "recipes", "inbound").str("meshkit.error.cause"),
        Some("users:CM503001")
    );

    // A reused request id does not inherit the earlier request's cause: recipes now fails by
    // itself with a plain 500 and users is never called.
    let r = send(entry, "/", "e-chain", &[("x-demo", "recipes.status=500")]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("x-meshkit-error-code"),
        None,
        "stale cause reported: {:?}",
        r.headers
    );

    // A success carries no error at any hop.
    send(entry, "/", "e-ok", &[]).await;
    let ok = common::lines_for(&mesh, "e-ok").await;
    assert!(
        ok.iter().all(|l| l.str("meshkit.error.code").is_none()),
        "{ok:#?}"
    );

    // An app's own code wins over the remembered cause, and the cause is kept.
    let r = send(
        entry,
        "/",
        "e-own",
        &[(
            "x-demo",
            "users.status=503;users.code=CM503001;recipes.status=404;recipes.code=CM404001",
        )],
    )
    .await;
    // recipes answers itself (status directive): users is never called, so no cause.
    assert_eq!(r.header("x-meshkit-error-code"), Some("CM404001"));
    assert_eq!(r.header("x-meshkit-error-origin"), Some("recipes"));
    assert_eq!(r.header("x-meshkit-error-retryable"), Some("false"));

    // An unknown code is carried, classified "unknown", not retryable.
    let r = send(
        entry,
        "/",
        "e-unknown",
        &[("x-demo", "users.status=500;users.code=ZZ999")],
    )
    .await;
    assert_eq!(r.header("x-meshkit-error-code"), Some("ZZ999"));
    let lines = common::lines_for(&mesh, "e-unknown").await;
    assert_eq!(
        line(&lines, "users", "inbound").str("meshkit.error.classification"),
        Some("unknown")
    );

    // Codes keep their dots in metric labels: these two are distinct series.
    for (id, code) in [
        ("e-dots", "shop.pay.declined"),
        ("e-underscores", "shop_pay_declined"),
    ] {
        let demo = format!("users.status=500;users.code={code}");
        let r = send(entry, "/", id, &[("x-demo", &demo)]).await;
        assert_eq!(r.header("x-meshkit-error-code"), Some(code));
    }

    // problem+json bodies are read when enabled (the example spec enables them).
    let r = send(
        entry,
        "/",
        "e-problem",
        &[("x-demo", "users.status=503;users.problem=CM503001")],
    )
    .await;
    assert_eq!(r.header("x-meshkit-error-code"), Some("CM503001"));
    let lines = common::lines_for(&mesh, "e-problem").await;
    assert_eq!(
        line(&lines, "users", "inbound").str("meshkit.error.source"),
        Some("problem_json")
    );

    // Prometheus: labelled counters with the right values.
    let recipes = error_counters(&mesh, "recipes").await;
    assert_eq!(
        recipes.get(&labels(
            "recipes", "outbound", "users", "users", "catalog", "CM503001"
        )),
        Some(&2.0),
        "{recipes:#?}"
    );
    assert_eq!(
        recipes.get(&labels(
            "recipes",
            "inbound",
            "local_app",
            "users",
            "catalog",
            "CM503001"
        )),
        Some(&2.0),
        "{recipes:#?}"
    );
    assert_eq!(
        recipes.get(&labels(
            "recipes",
            "inbound",
            "local_app",
            "recipes",
            "catalog",
            "CM404001"
        )),
        Some(&1.0),
        "{recipes:#?}"
    );
    let users = error_counters(&mesh, "users").await;
    // Unknown codes, dots kept: `shop.pay.declined` and `shop_pay_declined` are two series.
    for code in ["ZZ999", "shop.pay.declined", "shop_pay_declined"] {
        assert_eq!(
            users.get(&labels(
                "users",
                "inbound",
                "local_app",
                "users",
                "unknown",
                code
            )),
            Some(&1.0),
            "{users:#?}"
        );
    }

    // One stats_tags extractor per tag name: Envoy warned "Skipping duplicate tag" on every
    // sidecar when meshkit's first metric was defined, with two extractors per name.
    for service in ["frontend", "recipes", "users"] {
        let log = std::fs::read_to_string(mesh.run_dir.join(format!("{service}.envoy.log")))
            .expect("the sidecar's Envoy log");
        assert!(
            !log.contains("Skipping duplicate tag"),
            "{service}: Envoy warned about duplicate tags"
        );
    }

    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_made_failures_get_mesh_codes_and_uniform_bodies() {
    // A short per-try timeout on recipes → users, so a slow users times out quickly.
    let spec = common::example_spec_text().replace("per_try_timeout: 1s", "per_try_timeout: 300ms");
    let mesh_spec = meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap();
    let mut mesh = common::start(mesh_spec, "local-replies").await;
    let entry = mesh.inbound("frontend").unwrap();
    let recipes_out = SocketAddr::from((
        [127, 0, 0, 1],
        mesh.mesh.service("recipes").unwrap().sidecar.outbound_port,
    ));

    // users slower than the route allows: UT at recipes' outbound sidecar.
    let slow = [("x-demo", "users.latency=1s")];
    let r = send(entry, "/", "e-ut", &slow).await;
    assert_eq!(
        r.header("x-meshkit-error-code"),
        Some("MESH_UPSTREAM_TIMEOUT")
    );
    assert_eq!(r.header("x-meshkit-error-origin"), Some("users"));
    let lines = common::lines_for(&mesh, "e-ut").await;
    let out = line(&lines, "recipes", "outbound");
    assert_eq!(out.num("http.response.status_code"), Some(504.0));
    assert_eq!(
        out.str("meshkit.error.code"),
        Some("MESH_UPSTREAM_TIMEOUT"),
        "{}",
        out.raw
    );
    assert_eq!(out.str("meshkit.error.source"), Some("local_reply"));
    assert_eq!(out.str("meshkit.error.classification"), Some("mesh"));

    // What recipes' app itself received: a problem+json body.
    let r = send(recipes_out, "/users", "e-ut-direct", &slow).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["type"], "urn:meshkit:error:MESH_UPSTREAM_TIMEOUT");
    assert_eq!(body["status"], 504);
    assert_eq!(body["code"], "MESH_UPSTREAM_TIMEOUT");
    assert_eq!(body["origin"], "users");
    assert_eq!(
        body["retryable"], false,
        "the route retries GETs: this sidecar already retried, the app must not"
    );
    assert_eq!(body["request_id"], "e-ut-direct");
    assert_eq!(body["detail"], "upstream request timeout");

    // A gRPC caller gets a gRPC status with details instead.
    let r = send(
        recipes_out,
        "/users",
        "e-ut-grpc",
        &[slow[0], ("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(
        r.header("grpc-status"),
        Some("4"),
        "DEADLINE_EXCEEDED: {:?}",
        r.headers
    );
    assert_eq!(r.header("grpc-message"), Some("Upstream timed out"));
    let details = r.header("grpc-status-details-bin").unwrap();
    match meshkit_filter::core::grpc_status::code_from_details(details.as_bytes(), None) {
        meshkit_filter::core::grpc_status::DetailsCode::Found { code, .. } => {
            assert_eq!(code, "MESH_UPSTREAM_TIMEOUT")
        }
        other => panic!("{other:?}"),
    }

    // users gone entirely: UF at recipes' outbound sidecar, reported to the edge.
    assert!(mesh.stop_service("users").await);
    let r = send(entry, "/", "e-uf", &[]).await;
    assert_eq!(
        r.header("x-meshkit-error-code"),
        Some("MESH_UPSTREAM_CONNECT_FAILURE")
    );
    assert_eq!(r.header("x-meshkit-error-origin"), Some("users"));
    let r = send(recipes_out, "/users", "e-uf-direct", &[]).await;
    assert_eq!(r.status, 503);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["code"], "MESH_UPSTREAM_CONNECT_FAILURE");
    assert_eq!(body["title"], "Upstream connection failed");

    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_spoof_meshkit_headers() {
    let mut mesh = common::start(common::example_mesh(), "spoof").await;
    let entry = mesh.inbound("frontend").unwrap();
    let spoof = [
        ("x-meshkit-error-code", "FAKE1"),
        ("x-meshkit-error-origin", "evil"),
        ("x-meshkit-error-cause", "evil:FAKE1"),
        ("x-meshkit-error-retryable", "true"),
    ];
    let r = send(entry, "/", "e-spoof-ok", &spoof).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-meshkit-error-code"), None);
    let lines = common::lines_for(&mesh, "e-spoof-ok").await;
    assert!(
        lines.iter().all(|l| l.str("meshkit.error.code").is_none()),
        "{lines:#?}"
    );

    let mut failing = spoof.to_vec();
    failing.push(("x-demo", "users.status=503;users.code=CM503001"));
    let r = send(entry, "/", "e-spoof-fail", &failing).await;
    assert_eq!(r.header("x-meshkit-error-code"), Some("CM503001"));
    assert_eq!(r.header("x-meshkit-error-origin"), Some("users"));
    assert_eq!(r.header("x-meshkit-error-cause"), Some("users:CM503001"));
    mesh.shutdown().await;
}
