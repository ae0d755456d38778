//! How a caller treats an upstream's replicas: load balancing, connect timeout, outlier
//! detection, active health checks and the panic threshold. Each value gets a range, and the
//! known Envoy traps (a percentage written as a ratio, a health check timeout not shorter than
//! its interval) are refused with a hint.

use std::time::Duration;

use crate::duration::parse_duration;
use crate::model::{HealthCheck, OutlierDetection, UpstreamPolicy};
use crate::problems::Collector;
use crate::spec::{HealthCheckSpec, OutlierDetectionSpec, UpstreamSpec};

const MAX_COUNT: i64 = 1_000;
const MAX_POLICY_DURATION: Duration = Duration::from_secs(3_600);

pub(super) fn upstream_policy(up: &UpstreamSpec, at: &str, c: &mut Collector) -> UpstreamPolicy {
    UpstreamPolicy {
        load_balancing: up.load_balancing,
        connect_timeout: duration_or(
            up.connect_timeout.as_deref(),
            Duration::from_secs(1),
            &format!("{at}.connect_timeout"),
            c,
        ),
        outlier_detection: outlier_detection(
            &up.outlier_detection,
            &format!("{at}.outlier_detection"),
            c,
        ),
        health_check: up
            .health_check
            .as_ref()
            .map(|h| health_check(h, &format!("{at}.health_check"), c)),
        panic_threshold_percent: percent(
            up.panic_threshold_percent,
            50.0,
            &format!("{at}.panic_threshold_percent"),
            c,
        ),
    }
}

fn outlier_detection(
    o: &OutlierDetectionSpec,
    at: &str,
    c: &mut Collector,
) -> Option<OutlierDetection> {
    let path = |field: &str| format!("{at}.{field}");
    let d = OutlierDetection {
        consecutive_5xx: count(o.consecutive_5xx, 5, &path("consecutive_5xx"), c),
        consecutive_gateway_failure: count(
            o.consecutive_gateway_failure,
            5,
            &path("consecutive_gateway_failure"),
            c,
        ),
        interval: duration_or(
            o.interval.as_deref(),
            Duration::from_secs(10),
            &path("interval"),
            c,
        ),
        base_ejection_time: duration_or(
            o.base_ejection_time.as_deref(),
            Duration::from_secs(30),
            &path("base_ejection_time"),
            c,
        ),
        max_ejection_time: duration_or(
            o.max_ejection_time.as_deref(),
            Duration::from_secs(300),
            &path("max_ejection_time"),
            c,
        ),
        max_ejection_percent: percent(
            o.max_ejection_percent,
            50.0,
            &path("max_ejection_percent"),
            c,
        ),
    };
    if d.max_ejection_time < d.base_ejection_time {
        c.push(
            path("max_ejection_time"),
            format!(
                "must not be shorter than base_ejection_time ({}ms)",
                d.base_ejection_time.as_millis()
            ),
        );
    }
    o.enabled.then_some(d)
}

fn health_check(h: &HealthCheckSpec, at: &str, c: &mut Collector) -> HealthCheck {
    let path = |field: &str| format!("{at}.{field}");
    if !h.path.starts_with('/')
        || h.path
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        c.push(
            path("path"),
            format!("must be an absolute path without spaces, got {:?}", h.path),
        );
    }
    let check = HealthCheck {
        path: h.path.clone(),
        interval: duration_or(
            h.interval.as_deref(),
            Duration::from_secs(5),
            &path("interval"),
            c,
        ),
        timeout: duration_or(
            h.timeout.as_deref(),
            Duration::from_secs(1),
            &path("timeout"),
            c,
        ),
        unhealthy_threshold: count(h.unhealthy_threshold, 2, &path("unhealthy_threshold"), c),
        healthy_threshold: count(h.healthy_threshold, 1, &path("healthy_threshold"), c),
    };
    if check.timeout >= check.interval {
        c.push(
            path("timeout"),
            format!(
                "{}ms is not shorter than the interval ({}ms): checks would overlap and a slow \
                 replica would never be seen to recover; use a timeout below the interval",
                check.timeout.as_millis(),
                check.interval.as_millis()
            ),
        );
    }
    check
}

/// A count from 1 to [`MAX_COUNT`].
fn count(value: Option<i64>, default: u32, path: &str, c: &mut Collector) -> u32 {
    match value {
        None => default,
        Some(v) if (1..=MAX_COUNT).contains(&v) => u32::try_from(v).unwrap_or(default),
        Some(v) => {
            c.push(path, format!("must be between 1 and {MAX_COUNT}, got {v}"));
            default
        }
    }
}

/// A percentage, 0–100. A value strictly between 0 and 1 is refused: it is almost always a
/// ratio written where a percentage belongs (0.5 meaning half), which Envoy would read as half
/// a percent.
fn percent(value: Option<f64>, default: f64, path: &str, c: &mut Collector) -> f64 {
    match value {
        None => default,
        Some(p) if p > 0.0 && p < 1.0 => {
            c.push(
                path,
                format!(
                    "{p} looks like a ratio; this field is a percentage (0–100): write {} for \
                     {}%",
                    p * 100.0,
                    p * 100.0
                ),
            );
            default
        }
        Some(p) if (0.0..=100.0).contains(&p) => p,
        Some(p) => {
            c.push(
                path,
                format!("must be a percentage between 0 and 100, got {p}"),
            );
            default
        }
    }
}

/// A duration above zero and at most an hour, `default` when absent.
fn duration_or(value: Option<&str>, default: Duration, path: &str, c: &mut Collector) -> Duration {
    match value.map(parse_duration) {
        None => default,
        Some(Ok(d)) if d <= MAX_POLICY_DURATION => d,
        Some(Ok(d)) => {
            c.push(path, format!("at most 1h, got {}s", d.as_secs()));
            default
        }
        Some(Err(e)) => {
            c.push(path, e);
            default
        }
    }
}
