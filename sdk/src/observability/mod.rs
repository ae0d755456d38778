//! What a team watches its mesh with, generated from the spec: a Grafana dashboard and its
//! provisioning, a Prometheus scrape configuration for every sidecar, and alert rules.
//!
//! Everything is built as typed values ([`grafana`], [`prometheus`]) and serialized; every
//! query comes from [`promql`]'s parts, so [`queries`] can hand the tests each query a panel
//! or rule runs.

pub mod alerts;
pub mod dashboard;
pub mod grafana;
pub mod istio;
pub mod prometheus;
pub mod promql;

use std::collections::BTreeMap;

pub use alerts::AlertOptions;

use crate::generate::GeneratedFile;
use crate::model::Mesh;
use grafana::{
    DashboardProvider, DashboardProvisioning, Datasource, DatasourceProvisioning, ProviderOptions,
};

/// The metric names the dashboard and rules read, as Envoy's `/stats/prometheus` writes them.
pub mod metrics {
    pub const ERRORS: &str = "meshkit_errors";
    pub const RETRY_REQUESTS: &str = "meshkit_retry_requests";
    pub const RETRY_RETRIES: &str = "meshkit_retry_retries";
    pub const RETRY_DENIED: &str = "meshkit_retry_denied";
    pub const RETRY_BUDGET_REMAINING: &str = "meshkit_retry_budget_remaining";
    pub const DOWNSTREAM_RQ: &str = "envoy_http_downstream_rq_total";
    pub const DOWNSTREAM_RQ_XX: &str = "envoy_http_downstream_rq_xx";
    pub const DOWNSTREAM_RQ_TIME: &str = "envoy_http_downstream_rq_time_bucket";
    pub const CLUSTER_RQ: &str = "envoy_cluster_upstream_rq_total";
    pub const CLUSTER_RQ_XX: &str = "envoy_cluster_upstream_rq_xx";
    pub const CLUSTER_RQ_TIME: &str = "envoy_cluster_upstream_rq_time_bucket";
    pub const CLUSTER_RETRY_OVERFLOW: &str = "envoy_cluster_upstream_rq_retry_overflow";
    pub const CLUSTER_RETRY_LIMIT_EXCEEDED: &str = "envoy_cluster_upstream_rq_retry_limit_exceeded";
    pub const CLUSTER_PENDING_OVERFLOW: &str = "envoy_cluster_upstream_rq_pending_overflow";
    pub const CLUSTER_CX_OVERFLOW: &str = "envoy_cluster_upstream_cx_overflow";
    pub const CLUSTER_EJECTIONS: &str = "envoy_cluster_outlier_detection_ejections_enforced_total";
    pub const CLUSTER_HEALTHY: &str = "envoy_cluster_membership_healthy";
    pub const CLUSTER_MEMBERS: &str = "envoy_cluster_membership_total";
}

/// The provisioned datasource's uid (the dashboard's datasource variable defaults to it).
pub const DATASOURCE_UID: &str = "meshkit-prometheus";

pub const DASHBOARD_FILE: &str = "grafana-dashboard.json";
pub const DATASOURCE_FILE: &str = "grafana-datasource.yaml";
pub const PROVIDER_FILE: &str = "grafana-dashboard-provider.yaml";
pub const PROMETHEUS_FILE: &str = "prometheus.yml";
pub const RULES_FILE: &str = "meshkit-alerts.yml";
pub const ISTIO_FILE: &str = "istio-proxy-config.yaml";

#[derive(Debug, Clone, PartialEq)]
pub struct ObservabilityOptions {
    /// Where Grafana reaches Prometheus.
    pub prometheus_url: String,
    /// Where Grafana's file provider finds the dashboard JSON.
    pub dashboards_path: String,
    pub scrape_interval: String,
    pub evaluation_interval: String,
    pub alerts: AlertOptions,
}

impl Default for ObservabilityOptions {
    fn default() -> Self {
        ObservabilityOptions {
            prometheus_url: "http://localhost:9090".into(),
            dashboards_path: "/var/lib/grafana/dashboards/meshkit".into(),
            scrape_interval: "15s".into(),
            evaluation_interval: "15s".into(),
            alerts: AlertOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: cannot encode: {reason}")]
pub struct EncodeError {
    pub file: String,
    pub reason: String,
}

/// Every file `meshkit generate --dashboards` writes.
pub fn generate_observability(
    mesh: &Mesh,
    options: &ObservabilityOptions,
) -> Result<Vec<GeneratedFile>, EncodeError> {
    let config = prometheus::Config {
        global: prometheus::Global {
            scrape_interval: options.scrape_interval.clone(),
            evaluation_interval: options.evaluation_interval.clone(),
        },
        rule_files: vec![RULES_FILE.into()],
        scrape_configs: vec![prometheus::scrape_config(
            mesh,
            &format!("meshkit-{}", mesh.name),
        )],
    };
    let datasources = DatasourceProvisioning {
        api_version: 1,
        datasources: vec![Datasource {
            name: "Prometheus (meshkit)".into(),
            uid: DATASOURCE_UID.into(),
            kind: "prometheus".into(),
            access: "proxy".into(),
            url: options.prometheus_url.clone(),
            is_default: false,
            json_data: BTreeMap::from([(
                "timeInterval".to_string(),
                options.scrape_interval.clone(),
            )]),
        }],
    };
    let providers = DashboardProvisioning {
        api_version: 1,
        providers: vec![DashboardProvider {
            name: "meshkit".into(),
            org_id: 1,
            folder: "meshkit".into(),
            kind: "file".into(),
            disable_deletion: false,
            update_interval_seconds: 30,
            allow_ui_updates: false,
            options: ProviderOptions {
                path: options.dashboards_path.clone(),
                folders_from_files_structure: false,
            },
        }],
    };
    Ok(vec![
        file(
            DASHBOARD_FILE,
            json(DASHBOARD_FILE, &dashboard::dashboard(mesh))?,
        ),
        file(DATASOURCE_FILE, yaml(DATASOURCE_FILE, &datasources)?),
        file(PROVIDER_FILE, yaml(PROVIDER_FILE, &providers)?),
        file(PROMETHEUS_FILE, yaml(PROMETHEUS_FILE, &config)?),
        file(
            RULES_FILE,
            yaml(RULES_FILE, &alerts::rules(mesh, &options.alerts))?,
        ),
        file(ISTIO_FILE, yaml(ISTIO_FILE, &istio::proxy_config())?),
    ])
}

/// Where a query runs: a dashboard panel (and its legend) or an alert rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub source: String,
    pub expr: String,
}

/// Every query of the dashboard's panels and of the alert rules.
pub fn queries(mesh: &Mesh, alerts: &AlertOptions) -> Vec<Query> {
    let mut all: Vec<Query> = dashboard::dashboard(mesh)
        .panels
        .iter()
        .flat_map(|p| {
            p.targets.iter().map(|t| Query {
                source: format!("panel {:?} ({})", p.title, t.legend_format),
                expr: t.expr.clone(),
            })
        })
        .collect();
    for group in alerts::rules(mesh, alerts).groups {
        all.extend(group.rules.into_iter().map(|r| Query {
            source: format!("alert {}", r.alert),
            expr: r.expr,
        }));
    }
    all
}

/// A regex matching the mesh's own upstream clusters (not the apps' local clusters, nor
/// meshkit's own): the `upstream` values of the mesh's edges.
fn mesh_upstreams(mesh: &Mesh) -> String {
    promql::any_of(
        mesh.services
            .iter()
            .flat_map(|s| s.upstreams.iter().map(|u| u.service.as_str())),
    )
}

fn file(name: &str, contents: String) -> GeneratedFile {
    GeneratedFile {
        service: String::new(),
        instance: 0,
        file_name: name.into(),
        contents,
    }
}

fn json(name: &str, value: &impl serde::Serialize) -> Result<String, EncodeError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| EncodeError {
            file: name.into(),
            reason: e.to_string(),
        })
}

fn yaml(name: &str, value: &impl serde::Serialize) -> Result<String, EncodeError> {
    serde_yaml_ng::to_string(value).map_err(|e| EncodeError {
        file: name.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Mesh {
        crate::load_str(crate::EXAMPLE_SPEC, crate::Format::Yaml).expect("valid")
    }

    #[test]
    fn the_dashboard_uid_is_stable_and_short() {
        let mut mesh = example();
        assert_eq!(dashboard::uid(&mesh), "meshkit-recipes-demo");
        mesh.name = "x".repeat(80);
        assert_eq!(dashboard::uid(&mesh).len(), 40);
    }

    #[test]
    fn every_query_names_only_the_mesh_services_as_edges() {
        let mesh = example();
        let all = queries(&mesh, &AlertOptions::default());
        assert!(all.len() > 20, "{all:?}");
        assert!(all
            .iter()
            .any(|q| q.expr.contains(r#"upstream=~"recipes|users""#)));
    }

    #[test]
    fn generation_is_deterministic() {
        let mesh = example();
        let a = generate_observability(&mesh, &ObservabilityOptions::default()).unwrap();
        let b = generate_observability(&mesh, &ObservabilityOptions::default()).unwrap();
        assert_eq!(a, b);
        let names: Vec<&str> = a.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                DASHBOARD_FILE,
                DATASOURCE_FILE,
                PROVIDER_FILE,
                PROMETHEUS_FILE,
                RULES_FILE,
                ISTIO_FILE
            ]
        );
    }
}
