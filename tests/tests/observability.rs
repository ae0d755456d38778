//! The generated dashboard, scrape configuration and alert rules against a real Prometheus
//! scraping the example mesh on real Envoy: every panel's and rule's query returns series,
//! the counts agree with the access log, and each alert fires in its scenario (and none on
//! healthy traffic).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::prometheus::{self, Prometheus};
use meshkit_sdk::observability::alerts::{
    AlertOptions, BUDGET_EXHAUSTED, ERROR_RATIO, NO_HEALTHY_UPSTREAM, UNKNOWN_CODES,
};
use meshkit_sdk::observability::promql::{RANGE, RATE_WINDOW, SERVICE_VAR};
use meshkit_sdk::observability::{
    generate_observability, queries, ObservabilityOptions, PROMETHEUS_FILE, RULES_FILE,
};
use meshkit_sdk::{load_str, write_files, Format};

const WAIT: Duration = Duration::from_secs(90);

/// The rules as the test runs them: the production thresholds, with durations short enough
/// to see each fire in seconds.
fn test_alerts() -> AlertOptions {
    AlertOptions {
        window: "1m".into(),
        error_ratio_for: "2s".into(),
        budget_exhausted_for: "2s".into(),
        no_healthy_for: "2s".into(),
        ..AlertOptions::default()
    }
}

/// A query as Grafana sends it for "All services" over the last minutes.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace(SERVICE_VAR, ".*")
        .replace(RATE_WINDOW, "1m")
        .replace(RANGE, "10m")
}

fn promtool(args: &[&str]) {
    let out = Command::new(prometheus::binary("promtool"))
        .args(args)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_runs_every_panel_and_alert_on_the_example_mesh() {
    // A small budget on recipes → users, so retryable failures there run it out.
    let text = common::with_users_policy(
        &common::example_spec_text(),
        "retry_budget",
        "{ retry_ratio: 0.1, min_retries_per_second: 1, ttl: 2s }",
    );
    let mesh = load_str(&text, Format::Yaml).expect("valid spec");
    let dir = common::scratch_dir("observability");
    let options = ObservabilityOptions {
        scrape_interval: "1s".into(),
        evaluation_interval: "1s".into(),
        alerts: test_alerts(),
        ..ObservabilityOptions::default()
    };
    let files = generate_observability(&mesh, &options).expect("generate");
    write_files(&dir, &files).expect("write");
    let config = dir.join(PROMETHEUS_FILE);
    promtool(&["check", "config", &config.display().to_string()]);
    promtool(&[
        "check",
        "rules",
        &dir.join(RULES_FILE).display().to_string(),
    ]);

    let mut local = common::start(mesh.clone(), "observability").await;
    let prom = Prometheus::start(&config, &dir).await;
    let entry = local.inbound("frontend").expect("frontend");

    // Healthy traffic: no alert, pending or firing.
    for i in 0..30 {
        assert_eq!(
            common::send_demo(entry, &format!("ok-{i}"), None).await,
            200
        );
    }
    let seen = prom
        .query_until(
            r#"sum(envoy_http_downstream_rq_total{service="frontend",envoy_http_conn_manager_prefix="inbound"})"#,
            WAIT,
            |s| s.first().is_some_and(|s| s.value >= 30.0),
        )
        .await;
    assert!(seen.first().is_some_and(|s| s.value >= 30.0), "{seen:?}");
    prom.wait_evaluated_after(SystemTime::now(), WAIT).await;
    let alerts = prom.alerts().await;
    assert!(alerts.is_empty(), "healthy traffic raised {alerts:#?}");

    // Failures that start at users: not retryable, unknown to the catalog, and retryable ones
    // that run recipes' budget for users out.
    let mut sent = 0;
    for (directives, n) in [
        ("users.status=404;users.code=CM404001", 20),
        ("users.status=500;users.code=WEIRD1", 15),
        ("users.status=503;users.code=CM503001", 60),
    ] {
        for i in 0..n {
            sent += 1;
            let status = common::send_demo(entry, &format!("fail-{sent}"), Some(directives)).await;
            assert!(status >= 400, "{directives} #{i}: {status}");
        }
    }

    // The access log's count of each error, per service, code and origin (inbound lines).
    for name in local.running_sidecars() {
        common::flush_barrier(&local, &name).await;
    }
    let mut logged: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for line in local.access_log.snapshot() {
        if line.str("meshkit.direction") != Some("inbound") {
            continue;
        }
        if let (Some(service), Some(code), Some(origin)) = (
            line.str("service.name"),
            line.str("meshkit.error.code"),
            line.str("meshkit.error.origin"),
        ) {
            *logged
                .entry((service.into(), code.into(), origin.into()))
                .or_default() += 1.0;
        }
    }
    assert!(logged.len() >= 9, "3 codes at 3 services: {logged:?}");
    let by_labels = |samples: &[prometheus::Sample]| -> BTreeMap<(String, String, String), f64> {
        samples
            .iter()
            .map(|s| {
                let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                ((l("service"), l("code"), l("origin")), s.value)
            })
            .collect()
    };
    let counted = prom
        .query_until(
            r#"sum by (service, code, origin) (meshkit_errors{direction="inbound"})"#,
            WAIT,
            |s| by_labels(s) == logged,
        )
        .await;
    assert_eq!(
        by_labels(&counted),
        logged,
        "Prometheus agrees with the access log"
    );

    // From here on the failures go on, so the rules' conditions hold however long the checks
    // take (they look at the last minute): an unknown code and retryable failures, 20/s each.
    let unknown_load = common::load::SteadyLoad::start(
        entry,
        "unknown",
        Duration::from_millis(50),
        &[("x-demo", "users.status=500;users.code=WEIRD1")],
    );
    let retryable_load = common::load::SteadyLoad::start(
        entry,
        "retryable",
        Duration::from_millis(50),
        &[("x-demo", "users.status=503;users.code=CM503001")],
    );

    // Every panel's and rule's query returns series.
    let mut empty = Vec::new();
    for q in queries(&mesh, &test_alerts()) {
        if q.source.contains(NO_HEALTHY_UPSTREAM) {
            continue; // holds only once users is down, below
        }
        let expr = as_grafana_sends(&q.expr);
        let samples = prom.query_until(&expr, WAIT, |s| !s.is_empty()).await;
        if samples.is_empty() {
            empty.push(format!("{}: {expr}", q.source));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without series:\n{}",
        empty.join("\n")
    );

    // The alerts fire, and name where the trouble started.
    let ratio = prom
        .wait_firing(
            ERROR_RATIO,
            &[("service", "frontend"), ("origin", "users")],
            WAIT,
        )
        .await;
    assert!(
        ratio.annotations["summary"].contains("started at users"),
        "{ratio:?}"
    );
    let unknown = prom
        .wait_firing(
            UNKNOWN_CODES,
            &[("origin", "users"), ("code", "WEIRD1")],
            WAIT,
        )
        .await;
    assert!(unknown.annotations["summary"].starts_with("users returns error code WEIRD1"));
    let budget = prom
        .wait_firing(
            BUDGET_EXHAUSTED,
            &[("service", "recipes"), ("upstream", "users")],
            WAIT,
        )
        .await;
    assert!(
        budget.annotations["summary"].contains("failures at users"),
        "{budget:?}"
    );

    unknown_load.stop().await;
    retryable_load.stop().await;

    // Every users instance fails its health check: recipes has no healthy users.
    assert!(local.stop_app("users"));
    let none = prom
        .wait_firing(
            NO_HEALTHY_UPSTREAM,
            &[("service", "recipes"), ("upstream", "users")],
            WAIT,
        )
        .await;
    assert!(
        none.annotations["summary"].contains("no healthy users"),
        "{none:?}"
    );
    let healthy = prom
        .query(&as_grafana_sends(
            r#"sum by (service, upstream) (envoy_cluster_membership_healthy{upstream="users"})"#,
        ))
        .await;
    assert_eq!(healthy.len(), 1, "{healthy:?}");
    assert_eq!(healthy[0].value, 0.0);
    local.shutdown().await;
}

/// The metric names (as `/stats/prometheus` prints them) a sidecar with `regexps` added to
/// Istio's default stats inclusion list exposes: recipes' sidecar, after one request through
/// its inbound listener to an app and one through its outbound listener to users, which does
/// not run (that one fails, so the filter counts an error).
async fn names_kept_on_istio(regexps: &[String], name: &str) -> std::collections::BTreeSet<String> {
    use meshkit_cli::access_log::AccessLog;
    use meshkit_cli::process::{EnvoyCommand, EnvoyProcess};
    use meshkit_sdk::observability::istio;
    use meshkit_sdk::{render::bootstrap_json, sidecars};

    let mesh = common::example_mesh();
    let options = common::render_options(meshkit_sdk::OutputFormat::Json);
    let mut sidecar = sidecars(&mesh, &options)
        .into_iter()
        .find(|s| s.name == "recipes")
        .expect("recipes");
    let stats = sidecar
        .bootstrap
        .stats_config
        .get_or_insert_with(Default::default);
    stats.stats_matcher = Some(istio::stats_matcher(regexps));
    let dir = common::scratch_dir(name);
    let config = dir.join("recipes.json");
    std::fs::write(&config, bootstrap_json(&sidecar.bootstrap).unwrap()).unwrap();
    let recipes = mesh.service("recipes").unwrap();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], recipes.sidecar.admin_port));
    common::upstream::start_http(recipes.app.port, |_| common::upstream::Behaviour {
        latency: Duration::ZERO,
        fail: false,
    })
    .await;
    let command = EnvoyCommand {
        binary: common::envoy(),
        config,
        base_id: u32::from(meshkit_tests::free_ports(1)[0]),
        concurrency: 1,
        log_path: dir.join("envoy.log"),
        discard_access_log: true,
        drain_time: Duration::from_secs(1),
        wrapper: Vec::new(),
    };
    let mut envoy = EnvoyProcess::spawn(
        "recipes",
        admin,
        &command,
        std::sync::Arc::new(AccessLog::new(false)),
    )
    .expect("start Envoy");
    envoy
        .wait_ready(Duration::from_secs(60))
        .await
        .expect("Envoy ready");
    let port = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    assert_eq!(
        common::send_demo(port(recipes.sidecar.inbound_port), "istio-1", None).await,
        200
    );
    let outbound = meshkit_cli::http_client::send(
        port(recipes.sidecar.outbound_port),
        hyper::Method::GET,
        "/users",
        &[],
        Duration::from_secs(30),
    )
    .await
    .expect("outbound");
    assert_eq!(outbound.status, 503);
    let text = meshkit_cli::http_client::get(admin, "/stats/prometheus")
        .await
        .expect("admin")
        .text();
    envoy.stop(Duration::from_secs(5)).await;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// Istio keeps meshkit's own metrics by default (Envoy files them under `wasmcustom.`, which
/// Istio's `wasm` prefix covers) but drops Envoy's cluster and listener stats; the generated
/// `proxyStatsMatcher` regexes keep every Envoy metric the dashboard reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_keeps_meshkit_metrics_and_the_generated_matcher_keeps_envoys() {
    use meshkit_sdk::observability::{istio, metrics as m};

    let default = names_kept_on_istio(&[], "istio-default").await;
    assert!(default.contains(m::ERRORS), "{default:?}");
    for dropped in [
        m::CLUSTER_RQ,
        m::CLUSTER_RETRY_LIMIT_EXCEEDED,
        m::DOWNSTREAM_RQ,
    ] {
        assert!(
            !default.contains(dropped),
            "{dropped} kept by Istio's defaults"
        );
    }

    let with_ours = names_kept_on_istio(&istio::inclusion_regexps(), "istio-meshkit").await;
    let envoy_metrics = [
        m::DOWNSTREAM_RQ,
        m::DOWNSTREAM_RQ_XX,
        m::DOWNSTREAM_RQ_TIME,
        m::CLUSTER_RQ,
        m::CLUSTER_RQ_XX,
        m::CLUSTER_RQ_TIME,
        m::CLUSTER_RETRY_OVERFLOW,
        m::CLUSTER_RETRY_LIMIT_EXCEEDED,
        m::CLUSTER_PENDING_OVERFLOW,
        m::CLUSTER_CX_OVERFLOW,
        m::CLUSTER_EJECTIONS,
        m::CLUSTER_HEALTHY,
        m::CLUSTER_MEMBERS,
    ];
    let missing: Vec<_> = envoy_metrics
        .iter()
        .filter(|name| !with_ours.contains(**name))
        .collect();
    assert!(missing.is_empty(), "not kept: {missing:?}");
    assert!(with_ours.contains(m::ERRORS));
}

/// The unknown-code rule on series shaped as a fleet makes them, checked by Prometheus's own
/// rule tester (`promtool test rules`, deterministic: synthetic series, no clock): the origin's
/// errors split over its two replicas count together (`X`), a counter that restarted in the
/// window counts from its restart (`Y`), and an old series counts only its increase (`Z`).
#[test]
fn the_unknown_code_rule_sums_replicas_and_survives_a_restarted_counter() {
    use meshkit_sdk::observability::alerts::rules;
    use meshkit_sdk::observability::metrics as m;

    let mesh = load_str(&common::example_spec_text(), Format::Yaml).expect("valid spec");
    let options = AlertOptions::default();
    assert_eq!((options.window.as_str(), options.unknown_codes), ("5m", 10));
    let expr = rules(&mesh, &options)
        .groups
        .into_iter()
        .flat_map(|g| g.rules)
        .find(|r| r.alert == UNKNOWN_CODES)
        .expect("the rule")
        .expr;
    let series = |sidecar: &str, code: &str| {
        format!(
            "{}{{service=\"users\",sidecar=\"{sidecar}\",direction=\"inbound\",\
             upstream=\"local_app\",origin=\"users\",classification=\"unknown\",code=\"{code}\"}}",
            m::ERRORS
        )
    };
    // One sample a minute; `_` is no sample (the series does not exist yet).
    let input = [
        // X: a new code, 6 errors at each replica: 12 > 10, though neither alone is.
        (series("users", "X"), "_x10 6x10"),
        (series("users-1", "X"), "_x10 6x10"),
        // Y: users-1's counter restarts (50 → 0) and counts 6 again; users 6 new.
        (series("users", "Y"), "_x10 6x10"),
        (series("users-1", "Y"), "50x9 6x10"),
        // Z: an old series grows by 5 in the window; a new one has 6: 11, not 111.
        (series("users", "Z"), "100x9 105x10"),
        (series("users-1", "Z"), "_x10 6x10"),
    ];
    let dir = common::scratch_dir("unknown-codes-rule");
    let test = serde_json::json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input
                .iter()
                .map(|(s, values)| serde_json::json!({ "series": s, "values": values }))
                .collect::<Vec<_>>(),
            "promql_expr_test": [{
                "expr": expr,
                "eval_time": "12m",
                "exp_samples": [
                    { "labels": "{code=\"X\",origin=\"users\"}", "value": 12 },
                    { "labels": "{code=\"Y\",origin=\"users\"}", "value": 12 },
                    { "labels": "{code=\"Z\",origin=\"users\"}", "value": 11 },
                ],
            }],
        }],
    });
    // (JSON is YAML.)
    let path = dir.join("unknown-codes-test.yml");
    std::fs::write(&path, test.to_string()).expect("write the rule test");
    promtool(&["test", "rules", &path.display().to_string()]);
}
