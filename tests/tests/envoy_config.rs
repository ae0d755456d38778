//! Generated config against the real Envoy: every bootstrap passes `envoy --mode validate`, the
//! checked-in example config is current, and a bad plugin configuration stops the filter.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshkit_cli::access_log::AccessLog;
use meshkit_cli::locate::WASM_RELATIVE;
use meshkit_cli::process::{log_tail, EnvoyCommand, EnvoyProcess};
use meshkit_sdk::{generate, write_files, OutputFormat, RenderOptions};
use serde_json::Value;

fn envoy_validate(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(common::envoy())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .output()
        .expect("run envoy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_generated_bootstrap_passes_envoy_validate() {
    let mesh = common::example_mesh();
    for format in [OutputFormat::Json, OutputFormat::Yaml] {
        let dir = common::scratch_dir("validate");
        let files = common::render(&mesh, format);
        assert_eq!(files.len(), 4, "frontend, recipes and users' two instances");
        write_files(&dir, &files).unwrap();
        for f in &files {
            let (ok, log) = envoy_validate(&dir.join(&f.file_name));
            assert!(ok, "{} rejected by Envoy:\n{log}", f.file_name);
        }
    }
}

/// Sidecars that find each other by DNS name (containers, VMs): the inbound listener binds an
/// IP (every interface), the callers' clusters resolve the name. `meshkit check` once failed
/// here with "malformed IP address".
#[test]
fn sidecars_addressed_by_dns_name_pass_envoy_validate() {
    let text =
        common::example_spec_text().replace("    sidecar: {", "    sidecar: { address: localhost,");
    let mesh = meshkit_sdk::load_str(&text, meshkit_sdk::Format::Yaml).expect("valid spec");
    assert!(mesh
        .services
        .iter()
        .all(|s| s.sidecar.address == "localhost"));
    let dir = common::scratch_dir("validate-dns");
    let files = common::render(&mesh, OutputFormat::Json);
    write_files(&dir, &files).unwrap();
    for f in &files {
        // A caller resolves its upstreams' names (users calls no one).
        let calls = !mesh.service(&f.service).unwrap().upstreams.is_empty();
        assert_eq!(f.contents.contains("STRICT_DNS"), calls, "{}", f.file_name);
        let (ok, log) = envoy_validate(&dir.join(&f.file_name));
        assert!(ok, "{} rejected by Envoy:\n{log}", f.file_name);
    }
}

/// Every upstream policy at once (load balancing, connect timeout, outlier detection, an HTTP
/// health check on an HTTP/2 upstream, the panic threshold) is accepted by Envoy.
#[test]
fn upstream_policies_pass_envoy_validate() {
    let mut text = common::example_spec_text().replace(
        "protocol: http1 }\n    sidecar: { inbound_port",
        "protocol: http2 }\n    sidecar: { inbound_port",
    );
    for (key, value) in [
        ("load_balancing", "round_robin"),
        ("connect_timeout", "250ms"),
        ("health_check", "{ path: /healthz, interval: 2s, timeout: 500ms, unhealthy_threshold: 3, healthy_threshold: 2 }"),
        ("panic_threshold_percent", "10"),
    ] {
        text = common::with_users_policy(&text, key, value);
    }
    let mesh = meshkit_sdk::load_str(&text, meshkit_sdk::Format::Yaml).expect("valid spec");
    let policy = &mesh.service("recipes").unwrap().upstreams[0].policy;
    assert!(policy.health_check.is_some() && policy.outlier_detection.is_some());
    let dir = common::scratch_dir("validate-policies");
    let files = common::render(&mesh, OutputFormat::Yaml);
    write_files(&dir, &files).unwrap();
    for f in &files {
        let (ok, log) = envoy_validate(&dir.join(&f.file_name));
        assert!(ok, "{} rejected by Envoy:\n{log}", f.file_name);
    }
}

#[test]
fn envoy_validate_catches_a_broken_config() {
    // The check above can fail: a config with a misspelt field is rejected.
    let dir = common::scratch_dir("broken");
    let mesh = common::example_mesh();
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: "x.wasm".into(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .unwrap();
    let broken = files[0]
        .contents
        .replacen("\"static_resources\"", "\"static_resourcez\"", 1);
    std::fs::write(dir.join("broken.json"), broken).unwrap();
    let (ok, log) = envoy_validate(&dir.join("broken.json"));
    assert!(!ok);
    assert!(log.contains("static_resourcez"), "{log}");
}

/// The config under envoy/generated/ is what the SDK renders from envoy/mesh.yaml today
/// (regenerate with `meshkit generate envoy/mesh.yaml -o envoy/generated`).
#[test]
fn checked_in_example_config_is_current() {
    let mesh = meshkit_sdk::load_file(Path::new(common::EXAMPLE)).unwrap();
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: WASM_RELATIVE.into(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/generated");
    for f in &files {
        let on_disk = std::fs::read_to_string(dir.join(&f.file_name)).unwrap_or_default();
        assert!(
            on_disk == f.contents,
            "envoy/generated/{} is stale: run `meshkit generate envoy/mesh.yaml -o envoy/generated`",
            f.file_name
        );
    }
}

/// Replaces the inbound listener's plugin configuration string in a rendered bootstrap.
fn with_plugin_configuration(bootstrap: &str, configuration: &str) -> String {
    let mut b: Value = serde_json::from_str(bootstrap).unwrap();
    let listener = b["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["name"] == "inbound")
        .unwrap();
    let wasm = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("the wasm filter on the inbound listener");
    wasm["typed_config"]["config"]["configuration"]["value"] = Value::String(configuration.into());
    serde_json::to_string_pretty(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plugin_configuration_stops_the_plugin_with_the_field_named() {
    let mesh = common::example_mesh();
    let users = mesh.service("users").unwrap().clone();
    let files = common::render(&mesh, OutputFormat::Json);
    let users_file = files.iter().find(|f| f.service == "users").unwrap();

    for (bad, expected) in [
        (
            r#"{"service":"users","direction":"inbound","colour":"blue"}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"service":"users","direction":"sideways"}"#,
            "invalid plugin configuration: direction: ",
        ),
        (
            r#"{"service":"Users!","direction":"inbound"}"#,
            "invalid plugin configuration: service: ",
        ),
        ("not json", "invalid plugin configuration: (root): "),
    ] {
        let dir = common::scratch_dir("bad-plugin");
        let config = dir.join("users.json");
        std::fs::write(
            &config,
            with_plugin_configuration(&users_file.contents, bad),
        )
        .unwrap();

        // `envoy --mode validate` already refuses it ...
        let (ok, log) = envoy_validate(&config);
        assert!(!ok, "validate accepted plugin configuration {bad}");
        assert!(
            log.contains(expected),
            "validate log lacks {expected:?}:\n{log}"
        );

        // ... and a real start fails instead of running with defaults.
        let admin = SocketAddr::from(([127, 0, 0, 1], users.sidecar.admin_port));
        let cmd = EnvoyCommand {
            binary: common::envoy(),
            config: config.clone(),
            base_id: u32::from(users.sidecar.admin_port),
            concurrency: 1,
            log_path: dir.join("envoy.log"),
            discard_access_log: false,
            drain_time: meshkit_cli::local_mesh::DRAIN_TIME,
            wrapper: Vec::new(),
        };
        let mut envoy =
            EnvoyProcess::spawn("users", admin, &cmd, Arc::new(AccessLog::new(false))).unwrap();
        let ready = envoy.wait_ready(Duration::from_secs(30)).await;
        assert!(
            ready.is_err(),
            "Envoy became ready with plugin configuration {bad}"
        );
        let status = envoy.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert!(!status.success());
        let log = log_tail(&cmd.log_path, 200);
        assert!(
            log.contains(expected),
            "Envoy log lacks {expected:?}:\n{log}"
        );
    }
}
