//! Every kind of invalid spec yields the right `path: message`, all at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{assert_problem, problems_in};
use meshkit_sdk::{load_str, Format, Problems};

const VALID: &str = r#"
version: 1
mesh: demo
services:
  - name: frontend
    app: { port: 8081 }
    sidecar: { inbound_port: 8001, outbound_port: 8101, admin_port: 9001 }
    upstreams:
      - service: users
        routes:
          - match: { prefix: /users }
            timeout: 2s
            retry: { num_retries: 2, retry_on: [connect-failure], per_try_timeout: 500ms }
  - name: users
    app: { port: 8082, protocol: http2 }
    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }
"#;

fn problems(yaml: &str) -> Vec<String> {
    problems_in(yaml, Format::Yaml)
}

#[test]
fn the_valid_spec_loads() {
    let mesh = load_str(VALID, Format::Yaml).unwrap();
    assert_eq!(mesh.services.len(), 2);
    let up = &mesh.services[0].upstreams[0];
    assert_eq!((up.service.as_str(), up.endpoints[0].1), ("users", 8002));
    assert_eq!(up.routes[0].retry.as_ref().unwrap().num_retries, 2);
}

#[test]
fn json_and_yaml_specs_are_equivalent() {
    let yaml: serde_json::Value = serde_yaml_ng::from_str(VALID).unwrap();
    let json = serde_json::to_string(&yaml).unwrap();
    assert_eq!(
        load_str(&json, Format::Json).unwrap(),
        load_str(VALID, Format::Yaml).unwrap()
    );
}

#[test]
fn the_example_mesh_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/mesh.yaml");
    let mesh = meshkit_sdk::load_file(std::path::Path::new(path)).unwrap();
    let names: Vec<_> = mesh.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["frontend", "recipes", "users"]);
}

#[test]
fn unknown_upstream() {
    let p = problems(&VALID.replace("service: users", "service: userz"));
    assert_problem(
        &p,
        "services[0].upstreams[0].service",
        "unknown service \"userz\"",
    );
}

#[test]
fn self_upstream() {
    let p = problems(&VALID.replace("service: users", "service: frontend"));
    assert_problem(&p, "services[0].upstreams[0].service", "its own upstream");
}

#[test]
fn duplicate_service_names() {
    let p = problems(&VALID.replace("name: users", "name: frontend"));
    assert_problem(
        &p,
        "services[1].name",
        "duplicate service name \"frontend\" (first at services[0])",
    );
}

#[test]
fn duplicate_ports_across_services() {
    let p = problems(&VALID.replace("admin_port: 9002", "admin_port: 8001"));
    assert_problem(
        &p,
        "services[1].sidecar.admin_port",
        "port 8001 is already used by services[0].sidecar.inbound_port",
    );
}

#[test]
fn port_out_of_range() {
    let p = problems(
        &VALID
            .replace("port: 8081", "port: 70000")
            .replace("inbound_port: 8002", "inbound_port: 0"),
    );
    assert_problem(&p, "services[0].app.port", "between 1 and 65535, got 70000");
    assert_problem(&p, "services[1].sidecar.inbound_port", "got 0");
}

#[test]
fn zero_negative_and_unitless_durations() {
    let p = problems(
        &VALID
            .replace("timeout: 2s", "timeout: 0s")
            .replace("per_try_timeout: 500ms", "per_try_timeout: -1s")
            .replace("app: { port: 8082,", "app: { port: 8082, timeout: \"5\","),
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].timeout",
        "greater than 0",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.per_try_timeout",
        "positive",
    );
    assert_problem(&p, "services[1].app.timeout", "needs a unit");
}

#[test]
fn per_try_timeout_not_shorter_than_route_timeout() {
    // Equal is refused too: the route would time out before a retry could start.
    for per_try in ["3s", "2s"] {
        let p = problems(&VALID.replace(
            "per_try_timeout: 500ms",
            &format!("per_try_timeout: {per_try}"),
        ));
        assert_problem(
            &p,
            "services[0].upstreams[0].routes[0].retry.per_try_timeout",
            "is not shorter than the route timeout (2000ms)",
        );
    }
}

#[test]
fn retry_policy_values() {
    let p = problems(&VALID.replace(
        "retry: { num_retries: 2, retry_on: [connect-failure], per_try_timeout: 500ms }",
        "retry: { num_retries: 50, retry_on: [connect-failure, sometimes] }",
    ));
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.num_retries",
        "between 0 and 10, got 50",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.retry_on[1]",
        "unknown retry condition \"sometimes\"",
    );
}

#[test]
fn match_needs_exactly_one_of_prefix_or_exact() {
    let both = problems(&VALID.replace("{ prefix: /users }", "{ prefix: /users, exact: /users }"));
    assert_problem(
        &both,
        "services[0].upstreams[0].routes[0].match",
        "got both",
    );
    let neither = problems(&VALID.replace("{ prefix: /users }", "{}"));
    assert_problem(
        &neither,
        "services[0].upstreams[0].routes[0].match",
        "got neither",
    );
    let relative = problems(&VALID.replace("{ prefix: /users }", "{ prefix: users }"));
    assert_problem(
        &relative,
        "services[0].upstreams[0].routes[0].match.prefix",
        "must start with '/'",
    );
}

#[test]
fn shadowed_route() {
    let p = problems(&VALID.replace(
        "          - match: { prefix: /users }\n",
        "          - match: { prefix: /users }\n          - match: { prefix: /users }\n",
    ));
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[1].match",
        "never used: services[0].upstreams[0].routes[0] (prefix /users)",
    );
}

#[test]
fn all_unknown_fields_are_reported_together() {
    let p = problems(
        &VALID
            .replace("mesh: demo", "mesh: demo\ncolour: blue")
            .replace("app: { port: 8081 }", "app: { port: 8081, prot: http2 }")
            .replace("timeout: 2s", "timeout: 2s\n            retries: 3"),
    );
    assert_problem(&p, "colour", "unknown field");
    assert_problem(&p, "services[0].app.prot", "unknown field");
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retries",
        "unknown field",
    );
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn semantic_problems_are_all_reported_together() {
    let p = problems(
        &VALID
            .replace("version: 1", "version: 2")
            .replace("service: users", "service: nobody")
            .replace("name: users", "name: Users")
            .replace("timeout: 2s", "timeout: 2 seconds"),
    );
    assert_problem(&p, "version", "unsupported version 2");
    assert_problem(&p, "services[0].upstreams[0].service", "unknown service");
    assert_problem(&p, "services[1].name", "not a valid service name");
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].timeout",
        "unknown unit",
    );
    assert_eq!(p.len(), 4, "{p:?}");
}

#[test]
fn type_errors_name_the_field() {
    let p = problems(&VALID.replace("port: 8081", "port: eighty"));
    assert_problem(&p, "services[0].app.port", "invalid type");
    let p = problems(&VALID.replace("protocol: http2", "protocol: http3"));
    assert_problem(&p, "services[1].app.protocol", "unknown variant `http3`");
}

#[test]
fn bad_address_and_empty_services() {
    let p = problems(&VALID.replace(
        "app: { port: 8081 }",
        "app: { address: not-an-ip, port: 8081 }",
    ));
    assert_problem(&p, "services[0].app.address", "not an IP address");
    let p = problems("version: 1\nmesh: m\nservices: []\n");
    assert_problem(&p, "services", "at least one service");
}

#[test]
fn error_catalog_problems_have_spec_paths() {
    let spec = VALID.replace(
        "mesh: demo\n",
        "mesh: demo\nerrors:\n  app_header: x-meshkit-error-code\n  max_metric_codes: 0\n  catalog:\n    - { code: CM1, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: m }\n    - { code: CM1, http_status: 200, grpc_status: OK, retryable: true, message: m }\n    - { code: MESH_X, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: m }\n",
    );
    let p = problems(&spec);
    assert_problem(&p, "errors.app_header", "reserved");
    assert_problem(&p, "errors.max_metric_codes", "between 1 and 1000");
    assert_problem(
        &p,
        "errors.catalog[1].code",
        "duplicate code \"CM1\" (first at [0])",
    );
    assert_problem(&p, "errors.catalog[1].http_status", "400-599");
    assert_problem(&p, "errors.catalog[1].grpc_status", "must not be OK");
    assert_problem(&p, "errors.catalog[2].code", "reserved");
    assert_eq!(p.len(), 6, "{p:#?}");
}

#[test]
fn bad_grpc_status_name_and_local_replies_are_type_errors_with_paths() {
    let spec = VALID.replace(
        "mesh: demo\n",
        "mesh: demo\nerrors:\n  catalog:\n    - { code: CM1, http_status: 503, grpc_status: NOPE, retryable: true, message: m }\n",
    );
    assert_problem(
        &problems(&spec),
        "errors.catalog[0].grpc_status",
        "unknown variant `NOPE`",
    );
    let spec = VALID.replace(
        "  - name: users\n",
        "  - name: users\n    local_replies: sometimes\n",
    );
    assert_problem(
        &problems(&spec),
        "services[1].local_replies",
        "unknown variant `sometimes`",
    );
}

#[test]
fn retry_budget_guards_the_percent_scale_trap() {
    let with_budget = |budget: &str| {
        VALID.replace(
            "      - service: users\n",
            &format!("      - service: users\n        retry_budget: {budget}\n"),
        )
    };
    let p = problems(&with_budget("{ retry_ratio: 20 }"));
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.retry_ratio",
        "retry_ratio is a fraction (20 % is 0.2)",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.retry_ratio",
        "retry_percent: 20",
    );
    let p = problems(&with_budget("{ retry_ratio: 0.2, retry_percent: 20 }"));
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.retry_percent",
        "not both",
    );
    let p = problems(&with_budget(
        "{ retry_percent: -5, ttl: 90s, min_retries_per_second: -1 }",
    ));
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.retry_percent",
        "between 0 and",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.ttl",
        "between 1s and 60s",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].retry_budget.min_retries_per_second",
        "≥ 0",
    );

    let mesh = load_str(
        &with_budget("{ retry_percent: 20, ttl: 30s }"),
        Format::Yaml,
    )
    .unwrap();
    let b = mesh.services[0].upstreams[0].retry_budget.clone().unwrap();
    assert_eq!(
        (b.retry_ratio, b.ttl_ms),
        (0.2, 30_000),
        "20 % is 0.2, not 0.002"
    );
    let mesh = load_str(&with_budget("{ enabled: false }"), Format::Yaml).unwrap();
    assert_eq!(mesh.services[0].upstreams[0].retry_budget, None);
    let mesh = load_str(VALID, Format::Yaml).unwrap();
    assert_eq!(
        mesh.services[0].upstreams[0]
            .retry_budget
            .as_ref()
            .unwrap()
            .retry_ratio,
        0.2,
        "on by default"
    );
}

#[test]
fn retry_policy_refuses_status_conditions_and_unknown_methods() {
    let p = problems(&VALID.replace(
        "retry: { num_retries: 2, retry_on: [connect-failure], per_try_timeout: 500ms }",
        "retry: { num_retries: 2, retry_on: [5xx, gateway-error], methods: [GET, FETCH], backoff: { base_interval: 100ms, max_interval: 10ms } }",
    ));
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.retry_on[0]",
        "catalog `retryable` flag",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.retry_on[1]",
        "catalog `retryable` flag",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.methods[1]",
        "unknown method \"FETCH\"",
    );
    assert_problem(
        &p,
        "services[0].upstreams[0].routes[0].retry.backoff.max_interval",
        "shorter than base_interval",
    );
    let mesh = load_str(
        &VALID.replace("retry_on: [connect-failure], ", ""),
        Format::Yaml,
    )
    .unwrap();
    let retry = mesh.services[0].upstreams[0].routes[0]
        .retry
        .clone()
        .unwrap();
    assert_eq!(
        retry.retry_on,
        ["connect-failure", "refused-stream", "reset"]
    );
    assert_eq!(
        retry.methods,
        ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
    );
}

#[test]
fn syntax_errors_are_reported() {
    let p = problems("version: 1\nmesh: [unclosed\n");
    assert!(!p.is_empty());
    let p = match load_str("{\"version\": 1,", Format::Json) {
        Err(Problems(p)) => p,
        Ok(_) => panic!(),
    };
    assert_eq!(p.len(), 1);
}

#[test]
fn circuit_breaker_thresholds_are_checked_and_default_sensibly() {
    let spec = VALID
        .replace(
            "app: { port: 8081 }",
            "app: { port: 8081, circuit_breaker: { max_requests: 0 } }",
        )
        .replace(
            "      - service: users\n",
            "      - service: users\n        circuit_breaker: { max_connections: -1, max_retries: 2000000 }\n",
        );
    let all = problems(&spec);
    assert_problem(
        &all,
        "services[0].app.circuit_breaker.max_requests",
        "between 1 and 1000000, got 0",
    );
    assert_problem(
        &all,
        "services[0].upstreams[0].circuit_breaker.max_connections",
        "got -1",
    );
    assert_problem(
        &all,
        "services[0].upstreams[0].circuit_breaker.max_retries",
        "got 2000000",
    );

    let mesh = load_str(
        &VALID.replace(
            "      - service: users\n",
            "      - service: users\n        circuit_breaker: { max_requests: 50 }\n",
        ),
        Format::Yaml,
    )
    .unwrap();
    let b = mesh.services[0].upstreams[0].circuit_breaker;
    assert_eq!(
        (b.max_requests, b.max_retries, b.max_connections),
        (50, 50, 1024),
        "max_retries follows max_requests"
    );
}
