//! Prometheus's configuration and rule-file formats, as typed structs (only the fields meshkit
//! sets), and the scrape configuration for a mesh's sidecars.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Mesh;

/// `prometheus.yml`.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub global: Global,
    pub rule_files: Vec<String>,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Global {
    pub scrape_interval: String,
    pub evaluation_interval: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub metrics_path: String,
    /// meshkit's series carry `service` themselves (the same value as the target's).
    pub honor_labels: bool,
    pub static_configs: Vec<StaticConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub regex: String,
    pub target_label: String,
    pub replacement: String,
    pub action: String,
}

/// A rule file.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The labels every sidecar's series get from its target: which service and which instance.
pub const SERVICE_LABEL: &str = "service";
pub const INSTANCE_LABEL: &str = "sidecar";

/// One target per sidecar, at its admin listener. The admin listener binds 127.0.0.1, so this
/// Prometheus runs on the sidecars' host.
pub fn scrape_config(mesh: &Mesh, job_name: &str) -> ScrapeConfig {
    let static_configs = mesh
        .instances()
        .map(|(name, service)| StaticConfig {
            targets: vec![format!("127.0.0.1:{}", service.sidecar.admin_port)],
            labels: BTreeMap::from([
                (SERVICE_LABEL.to_string(), service.name.clone()),
                (INSTANCE_LABEL.to_string(), name),
            ]),
        })
        .collect();
    ScrapeConfig {
        job_name: job_name.to_string(),
        metrics_path: "/stats/prometheus".into(),
        honor_labels: true,
        static_configs,
        // Envoy's cluster series name the upstream `envoy_cluster_name`; meshkit's say
        // `upstream`. One name lets a query join them.
        metric_relabel_configs: vec![RelabelConfig {
            source_labels: vec!["envoy_cluster_name".into()],
            regex: "(.+)".into(),
            target_label: "upstream".into(),
            replacement: "$1".into(),
            action: "replace".into(),
        }],
    }
}
