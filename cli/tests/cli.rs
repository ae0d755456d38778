//! The `meshkit` binary as a user runs it: exit codes, messages, files, processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

mod common;

use common::*;
use meshkit_tests::{example_spec_text, scratch_dir, EXAMPLE};

#[test]
fn validate_accepts_the_example() {
    let o = run(&["validate", EXAMPLE]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 services (frontend, recipes, users)"));
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let spec = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("service: users", "service: userz")
        .replace("timeout: 5s", "timeout: 0s")
        .replace("admin_port: 19003", "admin_port: 19001");
    let o = run(&["validate", write_spec(&spec).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("(3 problems)"), "{err}");
    for line in [
        "services[1].upstreams[0].service: unknown service \"userz\"",
        "services[0].upstreams[0].routes[0].timeout: must be greater than 0, got \"0s\"",
        "services[2].sidecar.admin_port: port 19001 is already used by services[0].sidecar.admin_port",
    ] {
        assert!(err.lines().any(|l| l == line), "missing line {line:?} in:\n{err}");
    }
}

#[test]
fn generate_writes_nothing_for_an_invalid_spec() {
    let spec = write_spec("version: 1\nmesh: m\nservices: []\n");
    let out = scratch_dir("gen-invalid").join("out");
    let o = run(&[
        "generate",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("services: must list at least one service"));
    assert!(!out.exists(), "no output directory for an invalid spec");
}

#[test]
fn generate_writes_one_bootstrap_per_sidecar() {
    for (format, ext) in [("json", "json"), ("yaml", "yaml")] {
        let out = scratch_dir("gen").join("out");
        let o = run(&[
            "generate",
            EXAMPLE,
            "-o",
            out.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".meshkit-generated".to_string(),
                format!("frontend.{ext}"),
                format!("recipes.{ext}"),
                format!("users-1.{ext}"),
                format!("users.{ext}")
            ]
        );
    }
}

#[test]
fn explain_describes_catalog_and_mesh_codes() {
    let o = run(&["explain", "CM503001", "--spec", EXAMPLE]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("gRPC status: UNAVAILABLE (14)") && out.contains("retryable:   yes"),
        "{out}"
    );
    let o = run(&["explain", "MESH_UPSTREAM_TIMEOUT", "--spec", EXAMPLE]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("envoy flags: UT"));
    let o = run(&["explain", "NOPE1", "--spec", EXAMPLE]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("classified \"unknown\""),
        "{}",
        stderr(&o)
    );
    let o = run(&["explain", "--spec", EXAMPLE]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("MESH_LOCAL_REPLY") && out.contains("CM404001"),
        "{out}"
    );
}

#[test]
fn check_runs_envoy_validate_on_every_sidecar() {
    let o = run(&["check", EXAMPLE]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches(": OK (envoy --mode validate)").count(),
        4,
        "{out}"
    );
}

#[test]
fn up_refuses_a_port_in_use_and_starts_nothing() {
    let spec_text = example_spec_text();
    let spec = write_spec(&spec_text);
    let busy_port = port_of(&spec_text, "frontend", "inbound_port");
    let _busy = TcpListener::bind(("127.0.0.1", busy_port)).unwrap();
    let o = up(&spec, &spec.parent().unwrap().join("run"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "port {busy_port} on 127.0.0.1 (frontend sidecar inbound listener) is already in use"
        )),
        "{err}"
    );
    for service in ["frontend", "recipes", "users"] {
        let admin = port_of(&spec_text, service, "admin_port");
        assert!(
            refuses_connections(admin),
            "{service} sidecar admin is listening: a stray Envoy"
        );
        let app = port_of(&spec_text, service, "port");
        assert!(
            TcpListener::bind(("127.0.0.1", app)).is_ok(),
            "{service} app port still held"
        );
    }
}

#[test]
fn up_without_envoy_says_how_to_get_it() {
    let o = meshkit()
        .args(["up", EXAMPLE])
        .env("MESHKIT_ENVOY", "/nonexistent/envoy")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("MESHKIT_ENVOY=/nonexistent/envoy does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn up_demo_runs_traffic_prints_the_access_log_and_stops() {
    let o = up_demo(&example_spec_text());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let hops = |id: &str| -> std::collections::BTreeSet<(String, String)> {
        records
            .iter()
            .filter(|r| r["request_id"] == id)
            .map(|r| {
                (
                    r["service.name"].to_string(),
                    r["meshkit.direction"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(hops("demo-ok-1").len(), 5, "every hop logged:\n{stdout}");
    assert_eq!(hops("demo-fail-1").len(), 5, "every hop logged:\n{stdout}");
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r["request_id"] == "demo-fail-1")
        .collect();
    assert!(failed
        .iter()
        .any(|r| r["service.name"] == "users" && r["http.response.status_code"] == 503));
    assert!(
        failed.iter().all(|r| r["meshkit.error.origin"] == "users"),
        "{failed:#?}"
    );
    let users_attempts = failed
        .iter()
        .filter(|r| r["service.name"] == "users")
        .count();
    assert_eq!(
        users_attempts, 2,
        "CM503001 is retryable; recipes → users allows 1 retry"
    );
    assert!(
        stderr(&o).contains("x-meshkit-error-origin: users"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn up_streams_logs_and_stops_cleanly_on_sigterm() {
    let spec_text = example_spec_text();
    let spec = write_spec(&spec_text);
    let (mut child, lines) = spawn_with_stderr(&mut up(&spec, &spec.parent().unwrap().join("run")));
    wait_for_line(&mut child, &lines, "streaming access logs");
    let inbound = port_of(&spec_text, "frontend", "inbound_port");
    let mut s = TcpStream::connect(("127.0.0.1", inbound)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: frontend\r\nx-request-id: sigterm-1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("\"sigterm-1\""))
            .count(),
        5,
        "{stdout}"
    );
    for service in ["frontend", "recipes", "users"] {
        assert!(
            refuses_connections(port_of(&spec_text, service, "admin_port")),
            "{service} Envoy still up"
        );
    }
}
