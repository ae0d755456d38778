//! What a new user found running the CLI on their own mesh: each finding, as a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use meshkit_tests::{free_ports, scratch_dir, EXAMPLE};

/// A stand-in for a binary that claims to be the pinned Envoy and then never finishes
/// anything: it records its pid and sleeps. For the paths real Envoy is too quick to hit
/// (a signal while it runs, a sidecar that never becomes ready).
fn hanging_envoy(dir: &Path) -> PathBuf {
    let script = dir.join("envoy");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'envoy  version: 0/1.40.0/Clean/RELEASE/BoringSSL'; exit 0; fi\necho $$ >> {}/pids\nexec sleep 300\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Running, not merely a zombie waiting for a reaper.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Polls until `f` holds (a child's children exit asynchronously).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        // Polling process state; there is nothing to be notified by.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn explain_knows_mesh_codes_anywhere_and_refuses_empty_codes() {
    let elsewhere = scratch_dir("explain");
    let broken = elsewhere.join("broken.yaml");
    std::fs::write(&broken, "version: 1\nmesh: [\n").unwrap();
    for args in [
        vec!["explain", "MESH_UPSTREAM_TIMEOUT"],
        vec!["explain", "MESH_UPSTREAM_TIMEOUT", "--spec", "broken.yaml"],
    ] {
        let o = meshkit()
            .args(&args)
            .current_dir(&elsewhere)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("envoy flags: UT"));
    }
    let o = meshkit().args(["explain", ""]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the code to explain is empty"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("as-is"), "{}", stderr(&o));
    let o = meshkit()
        .args(["explain", "CM503001"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no catalog to look it up in"),
        "{}",
        stderr(&o)
    );
    let o = meshkit().args(["explain", "bad code!"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a valid code"), "{}", stderr(&o));
    // Listing outside the repository lists the mesh codes.
    let o = meshkit()
        .args(["explain"])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("MESH_LOCAL_REPLY"));
}

fn generate(spec: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    meshkit()
        .args([
            "generate",
            spec.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

const ONE_SERVICE_JSON: &str = r#"{"version":1,"mesh":"m","services":[{"name":"gateway","app":{"port":28081},"sidecar":{"inbound_port":28001,"outbound_port":28101,"admin_port":29001}}]}"#;

#[test]
fn generate_never_overwrites_its_own_input() {
    let dir = scratch_dir("gen-input");
    let spec = dir.join("gateway.json");
    std::fs::write(&spec, ONE_SERVICE_JSON).unwrap();
    let o = generate(&spec, &dir, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("this is the spec being read"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), ONE_SERVICE_JSON);
}

#[test]
fn a_failed_generate_leaves_nothing_and_names_the_path_once() {
    let out = scratch_dir("gen-partial").join("part");
    std::fs::create_dir_all(out.join("recipes.json")).unwrap();
    let o = generate(Path::new(EXAMPLE), &out, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}: is a directory",
            out.join("recipes.json").display()
        )),
        "{err}"
    );
    assert_eq!(err.matches("directory").count(), 1, "{err}");
    assert_eq!(listing(&out), ["recipes.json"], "nothing else written");
    // An output path that is a file: the same exit code, the OS error once.
    let file = scratch_dir("gen-file").join("out");
    std::fs::write(&file, "").unwrap();
    let o = generate(Path::new(EXAMPLE), &file, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("os error").count(), 1, "{}", stderr(&o));
}

#[test]
fn generate_owns_its_directory_stale_files_go_other_files_stay() {
    let dir = scratch_dir("gen-stale");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("README.txt"), "mine").unwrap();
    let o = generate(Path::new(EXAMPLE), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // users removed from the spec (recipes no longer calls it).
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let without_users = &text[..text.find("  - name: users").unwrap()];
    let recipes_upstreams = without_users.find("  - name: recipes").unwrap();
    let cut = without_users[recipes_upstreams..]
        .find("    upstreams:")
        .unwrap()
        + recipes_upstreams;
    let spec = dir.join("two.yaml");
    std::fs::write(&spec, &without_users[..cut]).unwrap();
    let o = generate(&spec, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("removed"), "{}", stderr(&o));
    assert_eq!(
        listing(&out),
        [
            ".meshkit-generated",
            "README.txt",
            "frontend.json",
            "recipes.json"
        ]
    );
    let o = generate(&spec, &out, &["--format", "yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        listing(&out),
        [
            ".meshkit-generated",
            "README.txt",
            "frontend.yaml",
            "recipes.yaml"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("README.txt")).unwrap(),
        "mine"
    );
    // A bootstrap of the user's own is never replaced.
    std::fs::write(out.join("frontend.json"), "hand-written").unwrap();
    let o = generate(&spec, &out, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("was not written by meshkit generate"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("frontend.json")).unwrap(),
        "hand-written"
    );
}

#[test]
fn check_only_trusts_the_pinned_envoy() {
    let o = meshkit()
        .args(["check", EXAMPLE])
        .env("MESHKIT_ENVOY", "/bin/true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/bin/true is not Envoy 1.40.0"),
        "{}",
        stderr(&o)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("OK"));
}

#[test]
fn a_terminated_check_leaves_no_envoy_and_no_temporary_directory() {
    let dir = scratch_dir("check-term");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (mut child, _lines) = spawn_with_stderr(
        meshkit()
            .args(["check", EXAMPLE])
            .env("MESHKIT_ENVOY", hanging_envoy(&dir))
            .env("TMPDIR", &tmp),
    );
    eventually("the validating Envoy started", || !pids(&dir).is_empty());
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143));
    let envoy = pids(&dir)[0];
    eventually("the validating Envoy is gone", || !alive(envoy));
    assert!(listing(&tmp).is_empty(), "{:?}", listing(&tmp));
}

#[test]
fn the_pinned_version_is_the_one_setup_installs() {
    let setup =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/setup.sh"))
            .unwrap();
    assert!(
        setup.contains(&format!(
            "ENVOY_VERSION={}\n",
            meshkit_cli::locate::ENVOY_VERSION
        )),
        "scripts/setup.sh and locate::ENVOY_VERSION disagree"
    );
}

#[test]
fn errors_print_the_os_error_once_and_exit_codes_are_deliberate() {
    let o = run(&["validate", "/nonexistent/mesh.yaml"]);
    assert_eq!(o.status.code(), Some(1), "an unreadable spec is bad input");
    assert_eq!(
        stderr(&o).matches("os error 2").count(),
        1,
        "{}",
        stderr(&o)
    );
    let o = run(&["up", EXAMPLE, "--concurrency", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["up", EXAMPLE, "--duration", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A 5-service mesh: gateway → orders → (payments over gRPC, inventory), notifications on
/// its own; long names; a catalog without CM503001.
fn shop_spec() -> String {
    let p = free_ports(20);
    let mut text = String::from(
        "version: 1\nmesh: shop\nerrors:\n  catalog:\n    - { code: SHOP-402, http_status: 402, grpc_status: FAILED_PRECONDITION, retryable: false, message: declined }\n    - { code: SHOP-503, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: down }\nservices:\n",
    );
    let services = [
        ("gateway", "http1", vec![("orders-service", "/orders")]),
        (
            "orders-service",
            "http1",
            vec![("payments-service", "/pay"), ("inventory", "/stock")],
        ),
        ("payments-service", "http2", vec![]),
        ("inventory", "http1", vec![]),
        ("notifications-service", "http1", vec![]),
    ];
    for (i, (name, protocol, ups)) in services.iter().enumerate() {
        text.push_str(&format!(
            "  - name: {name}\n    app: {{ port: {}, protocol: {protocol} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
            p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]
        ));
        if !ups.is_empty() {
            text.push_str("    upstreams:\n");
            for (up, prefix) in ups {
                text.push_str(&format!(
                    "      - service: {up}\n        routes:\n          - match: {{ prefix: {prefix} }}\n            retry: {{ num_retries: 1 }}\n"
                ));
            }
        }
    }
    text
}

#[test]
fn up_demo_works_for_any_mesh_with_its_own_catalog() {
    let o = up_demo(&shop_spec());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("payments-service answers 503 with app error code SHOP-503"),
        "{err}"
    );
    assert!(!err.contains("CM503001"), "{err}");
    assert!(err.contains("starting mesh \"shop\""), "{err}");
    assert!(err.contains("gateway sidecar ready"), "{err}");
    // The banner's columns line up, whatever the names' lengths.
    let columns: Vec<usize> = err
        .lines()
        .filter(|l| l.contains(" inbound http://"))
        .map(|l| l.find(" inbound http://").unwrap())
        .collect();
    assert_eq!(columns.len(), 5, "{err}");
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let failing: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["request_id"] == "demo-fail-1")
        .collect();
    assert!(failing.len() >= 5, "{stdout}");
    assert!(
        failing
            .iter()
            .all(|r| r["meshkit.error.origin"] == "payments-service"),
        "{failing:#?}"
    );
    // payments-service speaks gRPC: its demo app failed the call the documented way, with the
    // code in grpc-status-details-bin, and its sidecar read it from there.
    let payments = failing
        .iter()
        .find(|r| r["service.name"] == "payments-service" && r["meshkit.direction"] == "inbound")
        .unwrap_or_else(|| panic!("{failing:#?}"));
    assert_eq!(payments["rpc.grpc.status_code"], 14, "{payments:#?}");
    assert_eq!(
        payments["meshkit.error.source"], "grpc_details",
        "{payments:#?}"
    );
    assert_eq!(payments["meshkit.error.code"], "SHOP-503", "{payments:#?}");
}

#[test]
fn a_sidecar_that_cannot_start_is_explained_cause_first() {
    let dir = scratch_dir("bad-wasm");
    let wasm = dir.join("garbage.wasm");
    std::fs::write(&wasm, b"\0asm this is not a module").unwrap();
    let spec = write_spec(&meshkit_tests::example_spec_text());
    // Over ADS, Envoy refuses the filter's configuration and keeps running: `up` says which
    // sidecar refused what, with Envoy's reason, and stops everything.
    let o = up(&spec, &dir.join("run"))
        .env("MESHKIT_WASM", &wasm)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.contains("refused its config (ECDS NACK): Unable to create Wasm plugin"),
        "{err}"
    );
    // With static bootstraps, Envoy itself exits; its own words come first.
    let o = up(&spec, &dir.join("run-static"))
        .arg("--static")
        .env("MESHKIT_WASM", &wasm)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    let error = &err[err.find("error: ").unwrap()..];
    let mut lines = error.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .contains("sidecar Envoy exited during start-up"),
        "{err}"
    );
    let cause = lines.next().unwrap();
    assert!(
        cause.contains("[critical]") || cause.contains("[error]"),
        "{err}"
    );
    assert!(error.len() < 2_000, "{} bytes:\n{error}", error.len());
}

#[test]
fn ctrl_c_during_start_up_stops_everything_and_says_so() {
    let dir = scratch_dir("up-int");
    let spec = write_spec(&meshkit_tests::example_spec_text());
    let (mut child, lines) =
        spawn_with_stderr(up(&spec, &dir.join("run")).env("MESHKIT_ENVOY", hanging_envoy(&dir)));
    wait_for_line(&mut child, &lines, "starting mesh");
    // The stand-in Envoys never become ready: start-up is still running when the signal comes.
    eventually("four sidecars started", || pids(&dir).len() == 4);
    signal(&child, libc::SIGINT);
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted by Ctrl-C during start-up")),
        "{rest:?}"
    );
    for pid in pids(&dir) {
        eventually("no sidecar left running", || !alive(pid));
    }
}

#[test]
fn up_runs_your_own_app_command_per_service() {
    let spec_text = meshkit_tests::example_spec_text();
    let spec = write_spec(&spec_text);
    let run_dir = spec.parent().unwrap().join("run");
    // A real, independent HTTP server as `users`: Python's, bound where meshkit says, serving
    // the path recipes calls.
    let site = spec.parent().unwrap().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("users"), "{\"from\": \"python\"}").unwrap();
    // recipes health-checks users at /healthz: a file there answers 200.
    std::fs::write(site.join("healthz"), "ok").unwrap();
    let (mut child, lines) = spawn_with_stderr(
        up(&spec, &run_dir)
            .arg("--app")
            .arg(format!(
                "users=exec python3 -m http.server \"$MESHKIT_APP_PORT\" --bind \"$MESHKIT_APP_ADDRESS\" --directory {}",
                site.display()
            )),
    );
    let seen = wait_for_line(&mut child, &lines, "streaming access logs");
    assert!(
        seen.iter()
            .any(|l| l.contains("users app listening on 127.0.0.1:")),
        "{seen:?}"
    );
    let inbound = port_of(&spec_text, "frontend", "inbound_port");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", inbound)).unwrap();
    use std::io::{Read, Write};
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: f\r\nx-request-id: own-app-1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("python"), "{response}");
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
    // Each replica runs its own copy of the command; recipes balanced the request to one.
    let log = ["users", "users-1"]
        .map(|i| std::fs::read_to_string(run_dir.join(format!("{i}.app.log"))).unwrap())
        .join("\n");
    assert!(
        log.contains("GET /users"),
        "the request reached python:\n{log}"
    );
    let app_port = port_of(&spec_text, "users", "port");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", app_port)).is_ok(),
        "the app was stopped with the mesh"
    );
}

#[test]
fn up_refuses_bad_app_flags_and_reports_an_app_that_dies() {
    let spec = write_spec(&meshkit_tests::example_spec_text());
    let run_dir = spec.parent().unwrap().join("run");
    for (flag, message) in [
        ("nosuch=true", "nosuch: no such service"),
        ("users", "expected SERVICE=COMMAND"),
        ("users= ", "the command is empty"),
    ] {
        let o = meshkit()
            .args(["up", spec.to_str().unwrap(), "--app", flag, "--run-dir"])
            .arg(&run_dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{flag}: {}", stderr(&o));
    }
    let o = meshkit()
        .args([
            "up",
            spec.to_str().unwrap(),
            "--app",
            "users=echo boom; exit 3",
            "--run-dir",
        ])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("users app exited before listening"), "{err}");
    assert!(err.contains("boom"), "its log is shown: {err}");
}

/// `restart SERVICE` typed on `meshkit up`'s stdin: a rolling restart, step by step, and a
/// clear answer for a service that does not exist. (Zero failed requests under load is proven
/// in `tests/tests/rolling_restart.rs`.)
#[test]
fn restart_on_stdin_restarts_a_service_one_instance_at_a_time() {
    let spec_text = meshkit_tests::with_users_policy(
        &meshkit_tests::example_spec_text(),
        "health_check",
        "{ path: /healthz, interval: 500ms, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }",
    );
    let spec = write_spec(&spec_text);
    let run_dir = spec.parent().unwrap().join("run");
    let (mut child, lines) = spawn_with_stderr(up(&spec, &run_dir).stdin(Stdio::piped()));
    wait_for_line(&mut child, &lines, "type `restart SERVICE`");
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    writeln!(stdin, "restart nosuch").unwrap();
    wait_for_line(
        &mut child,
        &lines,
        "restart nosuch: failed: no service \"nosuch\"",
    );
    writeln!(stdin, "reboot users").unwrap();
    wait_for_line(&mut child, &lines, "unknown command \"reboot users\"");
    writeln!(stdin, "restart users").unwrap();
    let seen = wait_for_line(&mut child, &lines, "restart users: done");
    let steps: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("restart users: "))
        .collect();
    for step in [
        "users: leaving its callers' rotation, draining",
        "users: back in rotation",
        "users-1: leaving its callers' rotation, draining",
        "users-1: back in rotation",
    ] {
        assert!(steps.iter().any(|l| l.ends_with(step)), "{step}: {seen:#?}");
    }
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
}

/// A plain HTTP/1.1 GET through `port` on 127.0.0.1; the whole response.
fn http_get(port: u16, path: &str, id: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: m\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// `meshkit up` serves its sidecars over ADS and watches the spec: a valid edit reaches them
/// live, an invalid one is refused with its problems and changes nothing.
#[test]
fn up_applies_an_edited_spec_live_and_refuses_an_invalid_one() {
    let spec_text = meshkit_tests::example_spec_text();
    let spec = write_spec(&spec_text);
    let run_dir = spec.parent().unwrap().join("run");
    let (mut child, lines) = spawn_with_stderr(&mut up(&spec, &run_dir));
    wait_for_line(&mut child, &lines, "streaming access logs");
    let outbound = port_of(&spec_text, "frontend", "outbound_port");
    let inbound = port_of(&spec_text, "frontend", "inbound_port");
    assert!(http_get(outbound, "/users", "edit-0").starts_with("HTTP/1.1 404"));

    // A new route from frontend straight to users; saved the way editors do (rename over).
    let marker = "\n  - name: recipes";
    let at = spec_text.find(marker).unwrap();
    let edited = format!(
        "{}\n      - service: users\n        routes:\n          - match: {{ prefix: /users }}\n{}",
        spec_text[..at].trim_end(),
        &spec_text[at..]
    );
    let tmp = spec.with_extension("tmp");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::rename(&tmp, &spec).unwrap();
    wait_for_line(
        &mut child,
        &lines,
        "changed: every sidecar has the new config",
    );
    assert!(http_get(outbound, "/users", "edit-1").starts_with("HTTP/1.1 200"));

    // An invalid edit: refused with the problem's path, and the mesh keeps serving.
    std::fs::write(&spec, edited.replace("timeout: 5s", "timeout: 5 parsecs")).unwrap();
    let seen = wait_for_line(&mut child, &lines, "is invalid (1 problem)");
    wait_for_line(
        &mut child,
        &lines,
        "services[0].upstreams[0].routes[0].timeout",
    );
    assert!(
        seen.last().unwrap().contains("the mesh keeps its config"),
        "{seen:?}"
    );
    assert!(http_get(outbound, "/users", "edit-2").starts_with("HTTP/1.1 200"));
    assert!(http_get(inbound, "/", "edit-3").starts_with("HTTP/1.1 200"));

    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
}

/// The status page of `meshkit serve --status`.
fn status_page(port: u16) -> String {
    let r = http_get(port, "/", "status");
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(r)
}

/// `meshkit serve` on its own, as on a real host: a sidecar started from a `generate --ads`
/// bootstrap gets its config from it and acknowledges every type; a stream claiming an
/// unknown node id is refused.
#[test]
fn serve_feeds_a_sidecar_started_from_an_ads_bootstrap_and_refuses_unknown_nodes() {
    let spec_text = meshkit_tests::example_spec_text();
    let spec = write_spec(&spec_text);
    let dir = spec.parent().unwrap().to_path_buf();
    let [listen, status] = free_ports(2)[..] else {
        unreachable!()
    };
    let ads = format!("127.0.0.1:{listen}");
    let wasm = std::path::absolute(meshkit_cli::locate::wasm().unwrap()).unwrap();
    let wasm = wasm.to_str().unwrap();
    let (mut serve, lines) = spawn_with_stderr(meshkit().args([
        "serve",
        spec.to_str().unwrap(),
        "--listen",
        &ads,
        "--http",
        &format!("127.0.0.1:{status}"),
        "--wasm",
        wasm,
    ]));
    wait_for_line(
        &mut serve,
        &lines,
        "serving mesh \"recipes-demo\" (4 sidecars)",
    );

    let out = dir.join("ads");
    let o = run(&[
        "generate",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--ads",
        &ads,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bootstrap = std::fs::read_to_string(out.join("users.json")).unwrap();
    assert!(bootstrap.contains("\"ads_config\""), "{bootstrap}");
    assert!(
        !bootstrap.contains("\"listeners\""),
        "listeners come over ADS: {bootstrap}"
    );

    let envoy = KillOnDrop(
        Command::new(meshkit_cli::locate::envoy().unwrap())
            .args(["--disable-hot-restart", "--concurrency", "1", "-c"])
            .arg(out.join("users.json"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("users.envoy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let admin = port_of(&spec_text, "users", "admin_port");
    eventually_ready(admin);
    let listeners = http_get(admin, "/listeners", "l");
    assert!(
        listeners.contains("inbound::") && listeners.contains("outbound::"),
        "{listeners}"
    );
    let page = status_page(status);
    let line = page
        .lines()
        .find(|l| l.starts_with("users-sidecar"))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(line.contains(" connected "), "{page}");
    for t in ["CDS=", "LDS=", "RDS=", "ECDS="] {
        let v = line.split(t).nth(1).unwrap().split(' ').next().unwrap();
        assert!(
            v != "-" && !v.ends_with('*'),
            "{t} not acknowledged: {page}"
        );
    }
    drop(envoy);

    // A stream that claims a node id the mesh does not have gets nothing.
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use envoy_types::pb::envoy::config::core::v3::Node;
        use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{ads}"))
            .await
            .unwrap();
        let request = DiscoveryRequest {
            node: Some(Node {
                id: "intruder-sidecar".into(),
                ..Default::default()
            }),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..Default::default()
        };
        client
            .stream_aggregated_resources(tokio_stream::iter([request]))
            .await
            .expect_err("refused")
    });
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("intruder-sidecar"),
        "{refused:?}"
    );

    signal(&serve, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut serve, Duration::from_secs(30)).code(),
        Some(0)
    );
}

/// Polls Envoy's admin `/ready` until it answers 200.
fn eventually_ready(admin: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
            && http_get(admin, "/ready", "ready").starts_with("HTTP/1.1 200")
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "Envoy never ready");
        // Polling Envoy's admin endpoint: it has no readiness notification.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--dashboards` and `--compose` write their files like `-o` does (into directories meshkit
/// owns, nothing for an invalid spec); without any output directory, generate is a usage error.
#[test]
fn generate_writes_dashboards_and_a_compose_project_and_needs_an_output() {
    let spec = write_spec(&meshkit_tests::example_spec_text());
    let dir = spec.parent().unwrap();
    let (dashboards, compose) = (dir.join("dashboards"), dir.join("compose"));
    let o = meshkit()
        .arg("generate")
        .arg(&spec)
        .arg("--dashboards")
        .arg(&dashboards)
        .arg("--compose")
        .arg(&compose)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        listing(&dashboards),
        [
            ".meshkit-generated",
            "grafana-dashboard-provider.yaml",
            "grafana-dashboard.json",
            "grafana-datasource.yaml",
            "istio-proxy-config.yaml",
            "meshkit-alerts.yml",
            "prometheus.yml"
        ]
    );
    assert_eq!(
        listing(&compose),
        [
            ".meshkit-generated",
            "docker-compose.yaml",
            "frontend.json",
            "recipes.json",
            "users-1.json",
            "users.json"
        ]
    );

    let none = meshkit().arg("generate").arg(&spec).output().unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));

    let invalid = write_spec("version: 1\nmesh: m\nservices: []\n");
    let empty = invalid.parent().unwrap().join("out");
    let o = meshkit()
        .arg("generate")
        .arg(&invalid)
        .arg("--compose")
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("services: must list at least one service"));
    assert!(!empty.exists(), "nothing written for an invalid spec");

    // Each output owns its directory: two in one would remove each other's files, however
    // the directory is spelled.
    let shared = dir.join("shared");
    let linked = dir.join("linked");
    std::fs::create_dir(dir.join("existing")).unwrap();
    std::os::unix::fs::symlink(dir.join("existing"), &linked).unwrap();
    for (first, second) in [
        (shared.clone(), dir.join("not-yet/../shared")),
        (shared.clone(), dir.join("./shared/")),
        (dir.join("existing"), linked.clone()),
    ] {
        let o = meshkit()
            .arg("generate")
            .arg(&spec)
            .arg("-o")
            .arg(&first)
            .arg("--compose")
            .arg(&second)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{second:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--compose: ") && stderr(&o).contains("also -o's directory"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!shared.exists(), "nothing written");
    assert_eq!(std::fs::read_dir(dir.join("existing")).unwrap().count(), 0);

    // Compose mounts the module from this host: a relative --wasm is made absolute (Compose
    // would read a bare relative path as a volume's name).
    let elsewhere = dir.join("elsewhere");
    let o = meshkit()
        .current_dir(dir)
        .arg("generate")
        .arg(&spec)
        .args(["--wasm", "filters/m.wasm", "--compose"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("m.wasm does not exist yet"),
        "{}",
        stderr(&o)
    );
    let compose_file = std::fs::read_to_string(elsewhere.join("docker-compose.yaml")).unwrap();
    let expected = format!(
        "${{MESHKIT_WASM:-{}}}",
        dir.join("filters/m.wasm").display()
    );
    assert!(
        compose_file.contains(&expected),
        "{expected} not in\n{compose_file}"
    );
}

/// Nobody reads `meshkit up`'s stdout (a full pipe): the access log waits for stdout on its
/// own thread, so the mesh keeps serving, and `up` still stops promptly.
#[test]
fn up_keeps_serving_when_nobody_reads_its_stdout() {
    use std::io::{Read, Write};
    let spec_text = meshkit_tests::example_spec_text();
    let spec = write_spec(&spec_text);
    let run_dir = spec.parent().unwrap().join("run");
    // stdout is piped and never read.
    let (mut child, lines) = spawn_with_stderr(&mut up(&spec, &run_dir));
    wait_for_line(&mut child, &lines, "streaming access logs");
    let port = port_of(&spec_text, "frontend", "inbound_port");
    // ~5 lines of ~1 KB per request: far more than a pipe holds (64 KiB).
    for k in 0..300 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: m\r\nx-request-id: unread-{k}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("request {k} got no answer: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "request {k}: {response}"
        );
    }
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
}
