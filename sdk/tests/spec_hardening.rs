//! What a new user's own specs, and hostile files, showed: addresses by name, routes that can
//! never match, percentages, call cycles, file bounds, byte-order marks and helpful messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

mod common;

use common::{assert_problem, problems_in};
use meshkit_sdk::{load_file, load_str, Format, LoadError, Problems};

const CHAIN: &str = r#"
version: 1
mesh: shop
services:
  - name: gateway
    app: { port: 8081 }
    sidecar: { inbound_port: 8001, outbound_port: 8101, admin_port: 9001 }
    upstreams:
      - service: orders
        routes:
          - match: { prefix: /orders }
  - name: orders
    app: { port: 8082 }
    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }
    upstreams:
      - service: payments
        routes:
          - match: { prefix: /pay }
  - name: payments
    app: { port: 8083, protocol: http2 }
    sidecar: { inbound_port: 8003, outbound_port: 8103, admin_port: 9003 }
"#;

fn problems(yaml: &str) -> Vec<String> {
    problems_in(yaml, Format::Yaml)
}

/// Replaces the routes of orders → payments.
fn orders_routes(routes: &str) -> String {
    CHAIN.replace(
        "          - match: { prefix: /pay }\n",
        &format!("{routes}\n"),
    )
}

#[test]
fn sidecars_reached_by_dns_name_listen_on_every_interface() {
    let spec = CHAIN.replace(
        "    app: { port: 8083, protocol: http2 }\n    sidecar: {",
        "    app: { port: 8083, protocol: http2 }\n    sidecar: { address: payments.internal,",
    );
    let mesh = load_str(&spec, Format::Yaml).unwrap();
    let payments = mesh.service("payments").unwrap();
    assert_eq!(payments.sidecar.address, "payments.internal");
    assert_eq!(payments.sidecar.listen_address.to_string(), "0.0.0.0");
    let orders = mesh.service("orders").unwrap();
    assert_eq!(
        orders.upstreams[0].endpoints,
        [("payments.internal".to_string(), 8003)]
    );
    // An IP address is listened on as given, unless told otherwise.
    assert_eq!(
        orders.sidecar.listen_address.to_string(),
        "127.0.0.1",
        "loopback by default"
    );
    let spec = spec.replace(
        "address: payments.internal,",
        "address: payments.internal, listen_address: 10.0.0.7,",
    );
    let mesh = load_str(&spec, Format::Yaml).unwrap();
    assert_eq!(
        mesh.service("payments")
            .unwrap()
            .sidecar
            .listen_address
            .to_string(),
        "10.0.0.7"
    );
}

#[test]
fn sidecar_addresses_must_be_ips_or_host_names() {
    for bad in [
        "\"not a host!\"",
        "-payments",
        "a..b",
        "pay_ments",
        "300.1.1.1",
    ] {
        let spec = CHAIN.replace(
            "    sidecar: { inbound_port: 8003,",
            &format!("    sidecar: {{ address: {bad}, inbound_port: 8003,"),
        );
        assert_problem(
            &problems(&spec),
            "services[2].sidecar.address",
            "neither an IP address nor a DNS host name",
        );
    }
    let spec = CHAIN.replace(
        "    sidecar: { inbound_port: 8003,",
        "    sidecar: { address: payments.internal, listen_address: payments.internal, inbound_port: 8003,",
    );
    assert_problem(
        &problems(&spec),
        "services[2].sidecar.listen_address",
        "not an IP address",
    );
}

#[test]
fn services_on_hosts_of_their_own_may_reuse_ports() {
    // Containers or VMs: each sidecar (and its app) is on the host its name resolves to.
    let spec = CHAIN
        .replace(
            "    sidecar: { inbound_port: 8002, outbound_port: 8102, admin_port: 9002 }",
            "    sidecar: { address: orders, inbound_port: 8001, outbound_port: 8101, admin_port: 9001 }",
        )
        .replace("app: { port: 8082 }", "app: { port: 8081 }");
    load_str(&spec, Format::Yaml).unwrap();
    // ...but not on one host.
    let spec = CHAIN.replace("app: { port: 8082 }", "app: { port: 8081 }");
    assert_problem(
        &problems(&spec),
        "services[1].app.port",
        "already used by services[0].app.port",
    );
}

#[test]
fn a_route_an_earlier_route_covers_is_refused_naming_both() {
    let p = problems(&orders_routes(
        "          - match: { prefix: / }\n          - match: { prefix: /pay }",
    ));
    assert_problem(
        &p,
        "services[1].upstreams[0].routes[1].match",
        "never used: services[1].upstreams[0].routes[0] (prefix /)",
    );
    let p = problems(&orders_routes(
        "          - match: { prefix: /pay }\n          - match: { exact: /pay/x }",
    ));
    assert_problem(
        &p,
        "services[1].upstreams[0].routes[1].match",
        "(prefix /pay) comes first and matches every path this route (exact /pay/x)",
    );
    // The specific route first is fine, and so are siblings.
    load_str(
        &orders_routes(
            "          - match: { exact: /pay/x }\n          - match: { prefix: /pay }\n          - match: { prefix: /refund }",
        ),
        Format::Yaml,
    )
    .unwrap();
}

#[test]
fn shadowing_spans_every_upstream_of_the_outbound_listener() {
    // gateway → payments with prefix /, then gateway → orders with /gw: /gw went to payments.
    let spec = CHAIN.replace(
        "    upstreams:\n      - service: orders\n        routes:\n          - match: { prefix: /orders }\n",
        "    upstreams:\n      - service: payments\n        routes:\n          - match: { prefix: / }\n      - service: orders\n        routes:\n          - match: { prefix: /gw }\n",
    );
    assert_problem(
        &problems(&spec),
        "services[0].upstreams[1].routes[0].match",
        "never used: services[0].upstreams[0].routes[0] (prefix /)",
    );
}

#[test]
fn retry_percent_is_a_percentage_of_at_most_100() {
    let with_budget = |budget: &str| {
        CHAIN.replace(
            "      - service: payments\n",
            &format!("      - service: payments\n        retry_budget: {budget}\n"),
        )
    };
    for (budget, message) in [
        (
            "{ retry_percent: 2000 }",
            "between 0 and 100 (a percentage of requests; at most one retry per request), got 2000",
        ),
        ("{ retry_percent: 101 }", "got 101"),
        ("{ retry_percent: -5 }", "got -5"),
        ("{ retry_percent: .nan }", "got NaN"),
    ] {
        let p = problems(&with_budget(budget));
        assert_problem(
            &p,
            "services[1].upstreams[0].retry_budget.retry_percent",
            message,
        );
        assert_eq!(p.len(), 1, "{p:?}");
    }
    let mesh = load_str(&with_budget("{ retry_percent: 100 }"), Format::Yaml).unwrap();
    let budget = mesh.service("orders").unwrap().upstreams[0]
        .retry_budget
        .clone()
        .unwrap();
    assert_eq!(budget.retry_ratio, 1.0);
    // A ratio is never told to become an impossible percentage.
    let p = problems(&with_budget("{ retry_ratio: .inf }"));
    assert_problem(
        &p,
        "services[1].upstreams[0].retry_budget.retry_ratio",
        "more than one retry per request (a fraction: 20 % is 0.2)",
    );
    assert!(!p.iter().any(|p| p.contains("retry_percent")), "{p:?}");
    let p = problems(&with_budget("{ retry_ratio: 5000 }"));
    assert!(!p.iter().any(|p| p.contains("retry_percent")), "{p:?}");
    let p = problems(&with_budget("{ retry_ratio: -0.5 }"));
    assert_problem(
        &p,
        "services[1].upstreams[0].retry_budget.retry_ratio",
        "between 0 and 1, got -0.5",
    );
}

#[test]
fn call_cycles_are_refused_with_the_cycle_spelled_out() {
    let spec = CHAIN.replace(
        "    sidecar: { inbound_port: 8003, outbound_port: 8103, admin_port: 9003 }\n",
        "    sidecar: { inbound_port: 8003, outbound_port: 8103, admin_port: 9003 }\n    upstreams:\n      - service: gateway\n        routes:\n          - match: { prefix: /gw }\n",
    );
    let p = problems(&spec);
    assert_problem(
        &p,
        "services[2].upstreams[0].service",
        "call cycle gateway → orders → payments → gateway",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    // Two services calling each other.
    let spec = CHAIN.replace(
        "    sidecar: { inbound_port: 8003, outbound_port: 8103, admin_port: 9003 }\n",
        "    sidecar: { inbound_port: 8003, outbound_port: 8103, admin_port: 9003 }\n    upstreams:\n      - service: orders\n        routes:\n          - match: { prefix: /o }\n",
    );
    assert_problem(
        &problems(&spec),
        "services[2].upstreams[0].service",
        "call cycle orders → payments → orders",
    );
    // A diamond is not a cycle.
    let spec = CHAIN.replace(
        "          - match: { prefix: /orders }\n",
        "          - match: { prefix: /orders }\n      - service: payments\n        routes:\n          - match: { prefix: /pay }\n",
    );
    load_str(&spec, Format::Yaml).unwrap();
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn hostile_files_are_refused_without_reading_them_whole() {
    // /dev/zero never ends: only the bound is read.
    let err = load_file(std::path::Path::new("/dev/zero")).unwrap_err();
    let LoadError::Invalid(Problems(p)) = err else {
        panic!("{err}")
    };
    assert_eq!(p[0].path, "(root)");
    assert!(
        p[0].message.contains("larger than 8 MiB"),
        "{}",
        p[0].message
    );
    // Deep nesting is refused before the YAML parser (quadratic in depth) runs. Timing is not
    // asserted; the message proves which path was taken.
    for (format, open) in [(Format::Yaml, "["), (Format::Json, "[")] {
        let text = format!(
            "{{\"version\": 1, \"mesh\": \"m\", \"services\": {}{}}}",
            open.repeat(100_000),
            "]".repeat(100_000)
        );
        let (p, took) = timed(|| problems_in(&text, format));
        assert_problem(&p, "(root)", "nested more than 64 deep (at line 1)");
        eprintln!("{format:?} nested 100,000 deep refused in {took:?}");
    }
    let nested = "version: 1\nmesh: m\nservices:\n  - {a: {b: [[[[[ [[ ]] ]]]]]}}\n";
    assert!(!problems(nested)
        .iter()
        .any(|p| p.contains("nested more than")));
}

#[test]
fn brackets_in_values_and_comments_are_not_nesting() {
    let spec = CHAIN.replace(
        "          - match: { prefix: /orders }\n",
        &format!(
            "          - match: {{ prefix: /orders }}\n{}",
            "            # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
        ),
    );
    load_str(&spec, Format::Yaml).unwrap();
    let quoted = format!("mesh: \"{}\"", "[".repeat(100));
    load_str(&CHAIN.replace("mesh: shop", &quoted), Format::Yaml).unwrap();
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_document() {
    load_str(&format!("\u{feff}{CHAIN}"), Format::Yaml).unwrap();
    let json = r#"{"version":1,"mesh":"m","services":[{"name":"a","app":{"port":1},"sidecar":{"inbound_port":2,"outbound_port":3,"admin_port":4}}]}"#;
    load_str(&format!("\u{feff}{json}"), Format::Json).unwrap();
}

#[test]
fn unknown_fields_offer_the_closest_valid_field_and_the_list() {
    let p = problems(&CHAIN.replace("app: { port: 8081 }", "app: { port: 8081, protocl: http2 }"));
    assert_problem(
        &p,
        "services[0].app.protocl",
        "unknown field; did you mean `protocol`? (valid here: address, port, protocol, timeout, circuit_breaker, image)",
    );
    let p = problems(&CHAIN.replace("mesh: shop", "mesh: shop\nzzz: 1"));
    assert_problem(
        &p,
        "zzz",
        "unknown field (valid here: version, mesh, errors, retry_layers, services)",
    );
    let p = problems(&CHAIN.replace(
        "          - match: { prefix: /pay }\n",
        "          - match: { prefix: /pay }\n            retry: { num_retries: 1, backof: { base_interval: 1s } }\n",
    ));
    assert_problem(
        &p,
        "services[1].upstreams[0].routes[0].retry.backof",
        "did you mean `backoff`?",
    );
}

#[test]
fn parse_errors_name_the_path_once() {
    let p = problems(&CHAIN.replace("  - name: payments\n", "  - nme: payments\n"));
    let line = p.iter().find(|p| p.contains("missing field")).unwrap();
    assert!(
        line.starts_with("services[2]: missing field `name`"),
        "{line}"
    );
    // A truncated JSON document: the path stops at the last field serde could name.
    let json = r#"{"version":1,"mesh":"m","services":[{"name":"a","app":{"port":1},"sidecar":{"inbound_port":2,"#;
    let p = problems_in(json, Format::Json);
    assert!(
        p.iter()
            .any(|p| p.starts_with("services[0].sidecar: EOF while parsing")),
        "{p:?}"
    );
    assert!(!p.iter().any(|p| p.contains('?')), "{p:?}");
}
