//! What `meshkit top` shows, computed from two scrapes of every sidecar: per service (what it
//! answered), per upstream edge (what its callers saw), and the errors by code and origin.

use std::collections::BTreeMap;

use meshkit_sdk::model::Mesh;
use meshkit_sdk::observability::metrics as m;

use super::stats::{label, quantile, InstanceStats};

/// The mesh as `top` lays it out: services with their instances, and the edges.
#[derive(Debug, Clone)]
pub struct Topology {
    pub mesh: String,
    pub services: Vec<(String, Vec<String>)>,
    pub edges: Vec<(String, String)>,
}

impl Topology {
    pub fn of(mesh: &Mesh) -> Topology {
        Topology {
            mesh: mesh.name.clone(),
            services: mesh
                .services
                .iter()
                .map(|s| (s.name.clone(), s.instances().map(|(n, _)| n).collect()))
                .collect(),
            edges: mesh
                .services
                .iter()
                .flat_map(|s| {
                    s.upstreams
                        .iter()
                        .map(|u| (s.name.clone(), u.service.clone()))
                })
                .collect(),
        }
    }

    pub fn instance_count(&self) -> usize {
        self.services.iter().map(|(_, i)| i.len()).sum()
    }

    fn instances_of(&self, service: &str) -> &[String] {
        self.services
            .iter()
            .find(|(s, _)| s == service)
            .map_or(&[], |(_, i)| i.as_slice())
    }
}

/// Every sidecar's stats at one moment (a sidecar that did not answer is absent).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Seconds, on any monotonic clock.
    pub at: f64,
    pub instances: BTreeMap<String, InstanceStats>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub service: String,
    pub rps: f64,
    /// Share of responses that were not 5xx; `None` without responses.
    pub success: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRow {
    pub service: String,
    pub upstream: String,
    pub rps: f64,
    pub success: Option<f64>,
    pub p99_ms: Option<f64>,
    pub retries_per_s: f64,
    /// The retry budget's remaining retries as the callers last saw it (the lowest).
    pub budget: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    pub service: String,
    pub code: String,
    pub origin: String,
    pub count: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub mesh: String,
    pub up: usize,
    pub sidecars: usize,
    pub window_s: f64,
    pub services: Vec<ServiceRow>,
    pub edges: Vec<EdgeRow>,
    /// Most errors first.
    pub errors: Vec<ErrorRow>,
}

/// How much a counter grew between two scrapes of one instance (a restart resets it: then
/// all of the new value).
fn growth(old: f64, new: f64) -> f64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

/// `old → new` for each instance scraped both times.
fn pairs<'a>(
    old: &'a Scrape,
    new: &'a Scrape,
    instances: &'a [String],
) -> impl Iterator<Item = (&'a InstanceStats, &'a InstanceStats)> + 'a {
    instances
        .iter()
        .filter_map(|i| Some((old.instances.get(i)?, new.instances.get(i)?)))
}

fn counter_growth(
    old: &Scrape,
    new: &Scrape,
    instances: &[String],
    metric: &str,
    matching: &[(&str, &str)],
) -> f64 {
    pairs(old, new, instances)
        .map(|(o, n)| growth(o.sum(metric, matching), n.sum(metric, matching)))
        // (`Sum` of no floats is -0.0, which prints as "-0.0".)
        .fold(0.0, |a, b| a + b)
}

fn p99(
    old: &Scrape,
    new: &Scrape,
    instances: &[String],
    metric: &str,
    matching: &[(&str, &str)],
) -> Option<f64> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for (o, n) in pairs(old, new, instances) {
        let before = o.buckets(metric, matching);
        for (le, count) in n.buckets(metric, matching) {
            let was = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            let d = growth(was, count);
            match total.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += d,
                None => total.push((le, d)),
            }
        }
    }
    total.sort_by(|x, y| x.0.total_cmp(&y.0));
    quantile(0.99, &total)
}

fn success(ok_or_4xx: f64, total: f64) -> Option<f64> {
    (total > 0.0).then(|| (ok_or_4xx / total).clamp(0.0, 1.0))
}

pub fn view(topology: &Topology, old: &Scrape, new: &Scrape) -> View {
    let window_s = (new.at - old.at).max(f64::MIN_POSITIVE);
    let inbound = [("envoy_http_conn_manager_prefix", "inbound")];
    let services = topology
        .services
        .iter()
        .map(|(service, instances)| {
            let total = counter_growth(old, new, instances, m::DOWNSTREAM_RQ, &inbound);
            let failed = counter_growth(
                old,
                new,
                instances,
                m::DOWNSTREAM_RQ_XX,
                &[inbound[0], ("envoy_response_code_class", "5")],
            );
            ServiceRow {
                service: service.clone(),
                rps: total / window_s,
                success: success(total - failed, total),
                p99_ms: p99(
                    old,
                    new,
                    instances,
                    histogram(m::DOWNSTREAM_RQ_TIME),
                    &inbound,
                ),
            }
        })
        .collect();
    let edges = topology
        .edges
        .iter()
        .map(|(service, upstream)| {
            let instances = topology.instances_of(service);
            let cluster = [("envoy_cluster_name", upstream.as_str())];
            let total = counter_growth(old, new, instances, m::CLUSTER_RQ, &cluster);
            let failed = counter_growth(
                old,
                new,
                instances,
                m::CLUSTER_RQ_XX,
                &[cluster[0], ("envoy_response_code_class", "5")],
            );
            let retries = counter_growth(old, new, instances, CLUSTER_RETRIES, &cluster);
            let budget_labels = [
                ("service", service.as_str()),
                ("upstream", upstream.as_str()),
            ];
            EdgeRow {
                service: service.clone(),
                upstream: upstream.clone(),
                rps: total / window_s,
                success: success(total - failed, total),
                p99_ms: p99(old, new, instances, histogram(m::CLUSTER_RQ_TIME), &cluster),
                retries_per_s: retries / window_s,
                budget: instances
                    .iter()
                    .filter_map(|i| {
                        new.instances
                            .get(i)?
                            .min(m::RETRY_BUDGET_REMAINING, &budget_labels)
                    })
                    .reduce(f64::min),
            }
        })
        .collect();
    View {
        mesh: topology.mesh.clone(),
        up: new.instances.len(),
        sidecars: topology.instance_count(),
        window_s,
        services,
        edges,
        errors: errors(topology, old, new),
    }
}

/// Envoy's retries of a cluster (every route's, with or without a budget).
const CLUSTER_RETRIES: &str = "envoy_cluster_upstream_rq_retry";

/// Every metric a view reads (histograms without `_bucket`): what a scrape keeps.
pub fn metrics_read() -> [&'static str; 9] {
    [
        m::DOWNSTREAM_RQ,
        m::DOWNSTREAM_RQ_XX,
        histogram(m::DOWNSTREAM_RQ_TIME),
        m::CLUSTER_RQ,
        m::CLUSTER_RQ_XX,
        histogram(m::CLUSTER_RQ_TIME),
        CLUSTER_RETRIES,
        m::RETRY_BUDGET_REMAINING,
        m::ERRORS,
    ]
}

/// The histogram's name as parsed (without `_bucket`).
fn histogram(bucket_metric: &str) -> &str {
    bucket_metric
        .strip_suffix("_bucket")
        .unwrap_or(bucket_metric)
}

/// Errors each service answered in the window, by code and origin. A code's series appears at
/// its first error, so one absent from the older scrape started at 0.
fn errors(topology: &Topology, old: &Scrape, new: &Scrape) -> Vec<ErrorRow> {
    let mut counts: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for (_, instances) in &topology.services {
        for (o, n) in pairs(old, new, instances) {
            for (labels, value) in n.series(m::ERRORS, &[("direction", "inbound")]) {
                let before = o
                    .values
                    .get(&(m::ERRORS.to_string(), labels.to_vec()))
                    .copied()
                    .unwrap_or(0.0);
                let d = growth(before, value);
                if d <= 0.0 {
                    continue;
                }
                let l = |k| label(labels, k).unwrap_or("?").to_string();
                *counts
                    .entry((l("service"), l("code"), l("origin")))
                    .or_default() += d;
            }
        }
    }
    let mut rows: Vec<ErrorRow> = counts
        .into_iter()
        .map(|((service, code, origin), count)| ErrorRow {
            service,
            code,
            origin,
            count,
        })
        .collect();
    rows.sort_by(|a, b| b.count.total_cmp(&a.count));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(at: f64, instances: &[(&str, &str)]) -> Scrape {
        Scrape {
            at,
            instances: instances
                .iter()
                .map(|(name, text)| {
                    (
                        name.to_string(),
                        InstanceStats::parse(text)
                            .unwrap()
                            .keep_only(&metrics_read()),
                    )
                })
                .collect(),
        }
    }

    fn topology() -> Topology {
        Topology {
            mesh: "m".into(),
            services: vec![
                ("a".into(), vec!["a".into()]),
                ("b".into(), vec!["b".into(), "b-1".into()]),
            ],
            edges: vec![("a".into(), "b".into())],
        }
    }

    #[test]
    fn rates_success_and_errors_come_from_growth_in_the_window() {
        let old = scrape(
            0.0,
            &[
                ("a", "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"b\"} 10\n"),
                ("b", "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"inbound\"} 5\n"),
                ("b-1", "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"inbound\"} 5\n"),
            ],
        );
        let new = scrape(
            10.0,
            &[
                (
                    "a",
                    "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"b\"} 30\n\
                     envoy_cluster_upstream_rq_retry{envoy_cluster_name=\"b\"} 4\n\
                     envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"b\",envoy_response_code_class=\"5\"} 5\n\
                     meshkit_retry_budget_remaining{service=\"a\",upstream=\"b\"} 3\n",
                ),
                (
                    "b",
                    "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"inbound\"} 15\n\
                     meshkit_errors{service=\"b\",direction=\"inbound\",upstream=\"local_app\",origin=\"b\",classification=\"catalog\",code=\"X1\"} 4\n",
                ),
                // b-1 restarted: its counters start again.
                ("b-1", "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"inbound\"} 2\n"),
            ],
        );
        let v = view(&topology(), &old, &new);
        assert_eq!(v.up, 3);
        assert_eq!(v.services[1].rps, 1.2, "(10 + 2) / 10 s");
        assert_eq!(v.edges[0].rps, 2.0);
        assert_eq!(v.edges[0].success, Some(0.75));
        assert_eq!(v.edges[0].retries_per_s, 0.4);
        assert_eq!(v.edges[0].budget, Some(3.0));
        assert_eq!(v.services[0].success, None, "no responses: no success rate");
        assert_eq!(
            v.errors,
            vec![ErrorRow {
                service: "b".into(),
                code: "X1".into(),
                origin: "b".into(),
                count: 4.0
            }]
        );
    }

    #[test]
    fn a_sidecar_missing_from_either_scrape_adds_nothing() {
        let old = scrape(0.0, &[]);
        let new = scrape(
            1.0,
            &[(
                "a",
                "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"b\"} 30\n",
            )],
        );
        let v = view(&topology(), &old, &new);
        assert_eq!(v.edges[0].rps.to_string(), "0", "not -0");
        assert_eq!(v.up, 1);
    }
}
