//! One scrape of a sidecar's `/stats/prometheus`, parsed (by `prometheus-parse`) into the
//! values `meshkit top` reads: counters and gauges by name and labels, histograms' buckets.

use std::collections::{BTreeMap, HashMap};

use prometheus_parse::{Scrape, Value};

/// A series: metric name and its labels, sorted.
pub type SeriesKey = (String, Vec<(String, String)>);

#[derive(Debug, Clone, Default)]
pub struct InstanceStats {
    pub values: HashMap<SeriesKey, f64>,
    /// Cumulative bucket counts, `(upper bound, count)`, ascending.
    pub histograms: HashMap<SeriesKey, Vec<(f64, f64)>>,
}

impl InstanceStats {
    pub fn parse(text: &str) -> std::io::Result<InstanceStats> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
        let mut stats = InstanceStats::default();
        for sample in scrape.samples {
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let key = (sample.metric, labels.into_iter().collect());
            match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    stats.values.insert(key, v);
                }
                Value::Histogram(buckets) => {
                    let mut b: Vec<(f64, f64)> =
                        buckets.iter().map(|h| (h.less_than, h.count)).collect();
                    b.sort_by(|x, y| x.0.total_cmp(&y.0));
                    stats.histograms.insert(key, b);
                }
                Value::Summary(_) => {}
            }
        }
        Ok(stats)
    }

    /// Only `metrics`' series (histograms by their name without `_bucket`): a history of
    /// scrapes then holds what `top` reads, not every series Envoy exports.
    pub fn keep_only(mut self, metrics: &[&str]) -> InstanceStats {
        self.values
            .retain(|(m, _), _| metrics.contains(&m.as_str()));
        self.histograms
            .retain(|(m, _), _| metrics.contains(&m.as_str()));
        self
    }

    /// The sum of `metric`'s series whose labels include every `(name, value)` of `matching`.
    pub fn sum(&self, metric: &str, matching: &[(&str, &str)]) -> f64 {
        self.values
            .iter()
            .filter(|((m, labels), _)| m == metric && matches(labels, matching))
            .map(|(_, v)| v)
            .fold(0.0, |a, b| a + b)
    }

    /// The smallest value of `metric`'s matching series, if any.
    pub fn min(&self, metric: &str, matching: &[(&str, &str)]) -> Option<f64> {
        self.values
            .iter()
            .filter(|((m, labels), _)| m == metric && matches(labels, matching))
            .map(|(_, v)| *v)
            .reduce(f64::min)
    }

    /// The matching series of `metric`, with their labels.
    pub fn series<'a>(
        &'a self,
        metric: &'a str,
        matching: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a [(String, String)], f64)> + 'a {
        self.values
            .iter()
            .filter(move |((m, labels), _)| m == metric && matches(labels, matching))
            .map(|((_, labels), v)| (labels.as_slice(), *v))
    }

    /// The buckets of `metric`'s matching series, added up per bound.
    pub fn buckets(&self, metric: &str, matching: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let mut total: Vec<(f64, f64)> = Vec::new();
        for ((m, labels), buckets) in &self.histograms {
            if m != metric || !matches(labels, matching) {
                continue;
            }
            for (le, count) in buckets {
                match total.iter_mut().find(|(b, _)| b == le) {
                    Some((_, c)) => *c += count,
                    None => total.push((*le, *count)),
                }
            }
        }
        total.sort_by(|x, y| x.0.total_cmp(&y.0));
        total
    }
}

pub fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn matches(labels: &[(String, String)], matching: &[(&str, &str)]) -> bool {
    matching
        .iter()
        .all(|(name, value)| label(labels, name) == Some(value))
}

/// The `q`-quantile of the observations a histogram's cumulative buckets hold, interpolated
/// within its bucket as Prometheus's `histogram_quantile` does; `None` without observations.
/// One in the open-ended last bucket is reported at the largest finite bound.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = r#"# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="users"} 80
envoy_cluster_upstream_rq_total{envoy_cluster_name="local_app"} 70
# TYPE meshkit_retry_budget_remaining gauge
meshkit_retry_budget_remaining{service="recipes",upstream="users"} 7
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="users",le="1"} 10
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="users",le="5"} 90
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="users",le="+Inf"} 100
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="users"} 250
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="users"} 100
"#;

    #[test]
    fn reads_counters_gauges_and_buckets() {
        let s = InstanceStats::parse(ENVOY).unwrap();
        assert_eq!(
            s.sum(
                "envoy_cluster_upstream_rq_total",
                &[("envoy_cluster_name", "users")]
            ),
            80.0
        );
        assert_eq!(s.sum("envoy_cluster_upstream_rq_total", &[]), 150.0);
        assert_eq!(s.min("meshkit_retry_budget_remaining", &[]), Some(7.0));
        let b = s.buckets(
            "envoy_cluster_upstream_rq_time",
            &[("envoy_cluster_name", "users")],
        );
        assert_eq!(b, vec![(1.0, 10.0), (5.0, 90.0), (f64::INFINITY, 100.0)]);
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let b = [(1.0, 10.0), (5.0, 90.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &b), Some(3.0));
        assert_eq!(
            quantile(0.99, &b),
            Some(5.0),
            "the open bucket reports its lower bound"
        );
        assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
