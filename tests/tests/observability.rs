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

    // Every panel's and rule's query returns series (the rules: they hold now).
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
