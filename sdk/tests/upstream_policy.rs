//! Upstream policies in the spec: defaults, ranges, the Envoy traps, and what they render to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

mod common;

use common::{assert_problem, problems_in};
use meshkit_sdk::model::LoadBalancing;
use meshkit_sdk::{generate, load_str, Format, OutputFormat, Problems, RenderOptions};

const SPEC: &str = r#"
version: 1
mesh: shop
services:
  - name: orders
    app: { port: 8081 }
    sidecar: { inbound_port: 8001, outbound_port: 8101, admin_port: 9001 }
    upstreams:
      - service: payments
        POLICY
        routes:
          - match: { prefix: /pay }
  - name: payments
    app: { port: 8082 }
    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }
"#;

fn with(policy: &str) -> String {
    SPEC.replace("POLICY", policy)
}

fn problems(policy: &str) -> Vec<String> {
    problems_in(&with(policy), Format::Yaml)
}

const AT: &str = "services[0].upstreams[0]";

#[test]
fn defaults_are_least_request_outlier_detection_on_and_envoys_panic_threshold() {
    let mesh = load_str(&with(""), Format::Yaml).unwrap();
    let p = &mesh.services[0].upstreams[0].policy;
    assert_eq!(p.load_balancing, LoadBalancing::LeastRequest);
    assert_eq!(p.connect_timeout, Duration::from_secs(1));
    let o = p.outlier_detection.as_ref().unwrap();
    assert_eq!((o.consecutive_5xx, o.consecutive_gateway_failure), (5, 5));
    assert_eq!(o.max_ejection_percent, 50.0);
    assert!(p.health_check.is_none());
    assert_eq!(p.panic_threshold_percent, 50.0);
    let off = load_str(&with("outlier_detection: { enabled: false }"), Format::Yaml).unwrap();
    assert!(off.services[0].upstreams[0]
        .policy
        .outlier_detection
        .is_none());
}

#[test]
fn the_envoy_traps_are_refused_with_a_hint() {
    let p = problems("outlier_detection: { max_ejection_percent: 0.5 }");
    assert_problem(
        &p,
        &format!("{AT}.outlier_detection.max_ejection_percent"),
        "0.5 looks like a ratio; this field is a percentage (0–100): write 50 for 50%",
    );
    let p = problems("panic_threshold_percent: 0.2");
    assert_problem(
        &p,
        &format!("{AT}.panic_threshold_percent"),
        "looks like a ratio",
    );
    let p = problems("health_check: { path: /healthz, interval: 1s, timeout: 2s }");
    assert_problem(
        &p,
        &format!("{AT}.health_check.timeout"),
        "2000ms is not shorter than the interval (1000ms)",
    );
}

#[test]
fn every_value_has_a_range() {
    let p = problems(
        "outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 5000, interval: 2h, base_ejection_time: 60s, max_ejection_time: 10s, max_ejection_percent: 150 }\n        health_check: { path: healthz, unhealthy_threshold: -1 }\n        connect_timeout: 0s\n        load_balancing: fastest",
    );
    // A type error (the unknown variant) stops parsing, so check it alone first.
    assert_problem(
        &p,
        &format!("{AT}.load_balancing"),
        "unknown variant `fastest`",
    );
    let p = problems(
        "outlier_detection: { consecutive_5xx: 0, consecutive_gateway_failure: 5000, interval: 2h, base_ejection_time: 60s, max_ejection_time: 10s, max_ejection_percent: 150 }\n        health_check: { path: healthz, unhealthy_threshold: -1 }\n        connect_timeout: 0s",
    );
    let od = format!("{AT}.outlier_detection");
    assert_problem(
        &p,
        &format!("{od}.consecutive_5xx"),
        "between 1 and 1000, got 0",
    );
    assert_problem(&p, &format!("{od}.consecutive_gateway_failure"), "got 5000");
    assert_problem(&p, &format!("{od}.interval"), "at most 1h");
    assert_problem(
        &p,
        &format!("{od}.max_ejection_time"),
        "not be shorter than base_ejection_time",
    );
    assert_problem(
        &p,
        &format!("{od}.max_ejection_percent"),
        "between 0 and 100, got 150",
    );
    assert_problem(&p, &format!("{AT}.health_check.path"), "absolute path");
    assert_problem(
        &p,
        &format!("{AT}.health_check.unhealthy_threshold"),
        "got -1",
    );
    assert_problem(&p, &format!("{AT}.connect_timeout"), "greater than 0");
}

#[test]
fn policies_render_to_envoy_cluster_fields() {
    let mesh = load_str(
        &with("load_balancing: random\n        connect_timeout: 250ms\n        health_check: { path: /healthz, interval: 2s, timeout: 500ms }\n        panic_threshold_percent: 25"),
        Format::Yaml,
    )
    .unwrap();
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: "meshkit_filter.wasm".into(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .unwrap();
    let orders: serde_json::Value = serde_json::from_str(&files[0].contents).unwrap();
    let cluster = orders["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "payments")
        .unwrap();
    assert_eq!(cluster["lb_policy"], "RANDOM");
    assert_eq!(cluster["connect_timeout"], "0.250s");
    assert_eq!(cluster["outlier_detection"]["consecutive_5xx"], 5);
    assert_eq!(
        cluster["outlier_detection"]["enforcing_consecutive_gateway_failure"],
        100
    );
    assert_eq!(
        cluster["health_checks"][0]["http_health_check"]["path"],
        "/healthz"
    );
    assert_eq!(cluster["health_checks"][0]["timeout"], "0.500s");
    assert_eq!(
        cluster["common_lb_config"]["healthy_panic_threshold"]["value"],
        25.0
    );
    // The app cluster has none of it.
    let local = orders["static_resources"]["clusters"][0].clone();
    assert_eq!(local["name"], "local_app");
    assert!(local.get("outlier_detection").is_none());
}

#[test]
fn replicas_are_instances_callers_balance_over() {
    let spec = SPEC.replace("POLICY", "").replace(
        "    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }\n",
        "    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }\n    replicas:\n      - { app_port: 8092, inbound_port: 8012, outbound_port: 8112, admin_port: 9012 }\n      - { address: payments-2.internal, app_port: 8082, inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }\n",
    );
    let mesh = load_str(&spec, Format::Yaml).unwrap();
    let payments = mesh.service("payments").unwrap();
    assert_eq!(payments.instance_count(), 3);
    assert_eq!(payments.instance_name(2), "payments-2");
    let up = &mesh.services[0].upstreams[0];
    assert_eq!(
        up.endpoints,
        [
            ("127.0.0.1".to_string(), 8002),
            ("127.0.0.1".to_string(), 8012),
            ("payments-2.internal".to_string(), 8002)
        ]
    );
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: "meshkit_filter.wasm".into(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "orders.json",
            "payments.json",
            "payments-1.json",
            "payments-2.json"
        ]
    );
    let replica: serde_json::Value = serde_json::from_str(&files[2].contents).unwrap();
    assert_eq!(replica["node"]["id"], "payments-1-sidecar");
    assert_eq!(
        replica["admin"]["address"]["socket_address"]["port_value"],
        9012
    );
    let orders: serde_json::Value = serde_json::from_str(&files[0].contents).unwrap();
    let cluster = &orders["static_resources"]["clusters"][1];
    assert_eq!(cluster["type"], "STRICT_DNS", "one replica is named");
    assert_eq!(
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Replicas on the local host need ports of their own.
    let clash = spec.replace("app_port: 8092", "app_port: 8081");
    let p = match load_str(&clash, Format::Yaml) {
        Err(Problems(p)) => p,
        Ok(_) => panic!("a port used twice on one host"),
    };
    assert!(
        p.iter().any(|p| {
            p.to_string()
            == "services[1].replicas[0].app_port: port 8081 is already used by services[0].app.port"
        }),
        "{p:?}"
    );
}
