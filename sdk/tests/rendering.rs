//! Rendering: the example mesh becomes typed Envoy config, deterministically.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use meshkit_sdk::{generate, load_file, OutputFormat, RenderOptions};
use serde_json::Value;

fn example() -> meshkit_sdk::model::Mesh {
    load_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../envoy/mesh.yaml"
    )))
    .unwrap()
}

fn options(format: OutputFormat) -> RenderOptions {
    RenderOptions {
        wasm_path: "/opt/meshkit/meshkit_filter.wasm".into(),
        format,
        bare: false,
    }
}

fn bootstrap(service: &str) -> Value {
    let files = generate(&example(), &options(OutputFormat::Json)).unwrap();
    let f = files.iter().find(|f| f.service == service).unwrap();
    serde_json::from_str(&f.contents).unwrap()
}

fn hcm<'a>(b: &'a Value, listener: &str) -> &'a Value {
    let l = b["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap();
    &l["filter_chains"][0]["filters"][0]["typed_config"]
}

#[test]
fn one_file_per_sidecar() {
    let files = generate(&example(), &options(OutputFormat::Json)).unwrap();
    let names: Vec<_> = files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "frontend.json",
            "recipes.json",
            "users.json",
            "users-1.json"
        ]
    );
    let yaml = generate(&example(), &options(OutputFormat::Yaml)).unwrap();
    assert_eq!(yaml[0].file_name, "frontend.yaml");
}

#[test]
fn rendering_is_deterministic() {
    for format in [OutputFormat::Json, OutputFormat::Yaml] {
        let a = generate(&example(), &options(format)).unwrap();
        for _ in 0..5 {
            assert_eq!(generate(&example(), &options(format)).unwrap(), a);
        }
    }
}

#[test]
fn both_listeners_run_meshkit_before_the_router_and_log_json() {
    let b = bootstrap("recipes");
    for (listener, direction) in [("inbound", "inbound"), ("outbound", "outbound")] {
        let hcm = hcm(&b, listener);
        assert_eq!(
            hcm["@type"],
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        let filters = hcm["http_filters"].as_array().unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0]["name"], "envoy.filters.http.wasm");
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        let plugin = &filters[0]["typed_config"]["config"];
        assert_eq!(
            plugin["vm_config"]["code"]["local"]["filename"],
            "/opt/meshkit/meshkit_filter.wasm"
        );
        let config: Value =
            serde_json::from_str(plugin["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(config["service"], "recipes");
        assert_eq!(config["direction"], direction);
        assert_eq!(config["local_replies"], "headers_and_body");
        assert_eq!(config["errors"]["catalog"].as_array().unwrap().len(), 3);
        assert_eq!(
            config["errors"]["grpc_detail_type"],
            "meshkit.demo.ApplicationError"
        );
        // What the SDK renders is exactly what the filter accepts.
        let text = plugin["configuration"]["value"].as_str().unwrap();
        meshkit_filter::core::config::PluginConfig::parse(text.as_bytes()).unwrap();
        assert_eq!(plugin["allow_on_headers_stop_iteration"], true);

        let log = &hcm["access_log"][0];
        assert_eq!(log["name"], "envoy.access_loggers.stdout");
        let format = &log["typed_config"]["log_format"]["json_format"];
        // Constants of the listener, in the format: no request pays to write them.
        assert_eq!(format["service.name"], "recipes");
        assert_eq!(format["meshkit.direction"], direction);
        assert_eq!(
            format["meshkit.error.code"],
            "%FILTER_STATE(wasm.meshkit.error.code:PLAIN)%"
        );
        assert_eq!(format["meshkit.schema_version"], 1.0);

        // meshkit's headers are stripped natively: from requests on both listeners, and from
        // the app's responses on the inbound one (upstream sidecars' stamps must pass outbound).
        let vhost = &hcm["route_config"]["virtual_hosts"][0];
        let meshkit: Vec<Value> = meshkit_filter::core::propagation::ALL
            .iter()
            .map(|h| Value::from(*h))
            .collect();
        assert_eq!(
            vhost["request_headers_to_remove"],
            Value::from(meshkit.clone())
        );
        if direction == "inbound" {
            assert_eq!(vhost["response_headers_to_remove"], Value::from(meshkit));
        } else {
            assert!(vhost["response_headers_to_remove"].is_null());
        }
    }
}

#[test]
fn stats_tags_extract_the_error_labels() {
    let b = bootstrap("users");
    let tags = b["stats_config"]["stats_tags"].as_array().unwrap();
    let names: Vec<_> = tags
        .iter()
        .map(|t| t["tag_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "service",
            "direction",
            "upstream",
            "origin",
            "classification",
            "code",
        ],
        "one extractor per tag name: Envoy skips (and warns about) a second one"
    );
}

#[test]
fn outbound_routes_and_retry_policy_come_from_the_spec() {
    let b = bootstrap("frontend");
    let vhost = &hcm(&b, "outbound")["route_config"]["virtual_hosts"][0];
    assert_eq!(vhost["include_attempt_count_in_response"], true);
    let route = &vhost["routes"][0];
    assert_eq!(route["match"]["prefix"], "/recipes");
    assert_eq!(route["route"]["cluster"], "recipes");
    assert_eq!(route["route"]["timeout"], "5s");
    assert_eq!(route["route"]["retry_policy"]["num_retries"], 2);
    let policy = &route["route"]["retry_policy"];
    assert_eq!(
        policy["retry_on"],
        "connect-failure,refused-stream,reset,retriable-headers"
    );
    assert_eq!(policy["per_try_timeout"], "2s");
    assert_eq!(
        route["name"], "recipes/0",
        "the filter finds its retry settings by name"
    );
    // App errors are retried only when the failing service's sidecar marked them retryable,
    // and only for idempotent methods.
    assert_eq!(
        policy["retriable_headers"][0]["name"],
        "x-meshkit-error-retryable"
    );
    assert_eq!(
        policy["retriable_headers"][0]["string_match"]["exact"],
        "true"
    );
    assert_eq!(policy["retriable_request_headers"][0]["name"], ":method");
    assert_eq!(
        policy["retriable_request_headers"][0]["string_match"]["safe_regex"]["regex"],
        "^(GET|HEAD|OPTIONS|TRACE|PUT|DELETE)$"
    );
    let filter = &hcm(&b, "outbound")["http_filters"][0]["typed_config"]["config"];
    let config: Value =
        serde_json::from_str(filter["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(config["retries"]["routes"]["recipes/0"]["num_retries"], 2);
    assert_eq!(config["retries"]["budgets"]["recipes"]["retry_ratio"], 0.2);
    assert_eq!(config["retries"]["budgets"]["recipes"]["ttl_ms"], 10000);

    let clusters = b["static_resources"]["clusters"].as_array().unwrap();
    let recipes = clusters.iter().find(|c| c["name"] == "recipes").unwrap();
    let addr = &recipes["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(addr["port_value"], 18002, "recipes' sidecar inbound port");
}

#[test]
fn http2_apps_get_an_explicit_http2_cluster() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/mesh.yaml"))
        .unwrap()
        .replace(
            "port: 18083, protocol: http1",
            "port: 18083, protocol: http2",
        );
    let mesh = meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap();
    let files = generate(&mesh, &options(OutputFormat::Json)).unwrap();
    let recipes: Value = serde_json::from_str(&files[1].contents).unwrap();
    let users_cluster = recipes["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "users")
        .unwrap()
        .clone();
    let opts = &users_cluster["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(
        opts["explicit_http_config"]["http2_protocol_options"].is_object(),
        "{users_cluster}"
    );
}

/// Every plugin configuration in `mesh`'s bootstraps, as the filter parses it.
fn plugin_configs(
    mesh: &meshkit_sdk::model::Mesh,
) -> Vec<meshkit_filter::core::config::PluginConfig> {
    let mut configs = Vec::new();
    for f in generate(mesh, &options(OutputFormat::Json)).unwrap() {
        let b: Value = serde_json::from_str(&f.contents).unwrap();
        for listener in ["inbound", "outbound"] {
            let filters = hcm(&b, listener)["http_filters"].as_array().unwrap();
            let wasm = filters
                .iter()
                .find(|f| f["name"] == "envoy.filters.http.wasm")
                .unwrap();
            let plugin = &wasm["typed_config"]["config"];
            let text = plugin["configuration"]["value"].as_str().unwrap();
            configs
                .push(meshkit_filter::core::config::PluginConfig::parse(text.as_bytes()).unwrap());
        }
    }
    configs
}

#[test]
fn breakers_cause_table_and_retry_holds_follow_the_spec_and_the_filter_accepts_them() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/mesh.yaml"))
        .unwrap()
        .replace("timeout: 5s", "timeout: 15m")
        .replace(
            "timeout: 10s",
            "timeout: 2h, circuit_breaker: { max_requests: 3000 }",
        );
    let mesh = meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap();
    let configs = plugin_configs(&mesh);
    let frontend_out = &configs[1];
    let route = &frontend_out.retries.routes["recipes/0"];
    assert_eq!(
        route.timeout_ms, 600_000,
        "15m is capped at the longest hold"
    );
    assert_eq!(route.methods.first().map(String::as_str), Some("GET"));
    let table = frontend_out.cause_table;
    assert_eq!(table.max_age_ms, 600_000, "2h + 1s, capped");
    assert_eq!(
        table.buckets, 2048,
        "4 × 3000 / 8, rounded up to a power of two"
    );

    // Every cluster has explicit thresholds, max_retries = max_requests by default.
    let files = generate(&mesh, &options(OutputFormat::Json)).unwrap();
    let b: Value = serde_json::from_str(&files[0].contents).unwrap();
    for c in b["static_resources"]["clusters"].as_array().unwrap() {
        let t = &c["circuit_breakers"]["thresholds"][0];
        assert_eq!(t["max_retries"], t["max_requests"], "{c}");
        assert!(t["max_connections"].as_u64().unwrap() >= 1024, "{c}");
    }
}
