//! Retries: a route's retry policy (Envoy's, restricted to what is safe with meshkit) and an
//! upstream's retry budget.

use std::time::Duration;

use super::values::required_duration;
use crate::duration::parse_duration;
use crate::model::{BudgetParams, RetryPolicy};
use crate::problems::Collector;
use crate::spec::{RetryBudgetSpec, RetrySpec};

/// Upper bound on `num_retries`: more is a retry storm waiting to happen.
pub const MAX_RETRIES: i64 = 10;
/// Transport-level retry conditions a route may use. App errors are retried by the catalog's
/// `retryable` flag (meshkit adds `retriable-headers` for it), so status-based conditions
/// (`5xx`, `gateway-error`, `retriable-4xx`, `retriable-status-codes`) and gRPC-status ones
/// are refused: they would retry codes the catalog marks non-retryable.
pub const RETRY_ON: &[&str] = &[
    "connect-failure",
    "refused-stream",
    "reset",
    "reset-before-request",
    "http3-post-connect-failure",
    "envoy-ratelimited",
];
/// Conditions refused with an explanation (see [`RETRY_ON`]); `retriable-headers` is refused
/// too, as meshkit manages it.
const STATUS_RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "retriable-4xx",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];
pub const DEFAULT_RETRY_ON: &[&str] = &["connect-failure", "refused-stream", "reset"];
/// RFC 9110 §9.2.2 idempotent methods: retried by default.
pub const IDEMPOTENT_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH",
];

pub(super) fn retry_policy(
    r: &RetrySpec,
    timeout: Duration,
    at: &str,
    c: &mut Collector,
) -> RetryPolicy {
    if !(0..=MAX_RETRIES).contains(&r.num_retries) {
        c.push(
            format!("{at}.num_retries"),
            format!("must be between 0 and {MAX_RETRIES}, got {}", r.num_retries),
        );
    }
    let retry_on: Vec<String> = match &r.retry_on {
        Some(list) => list.clone(),
        None => DEFAULT_RETRY_ON.iter().map(|s| s.to_string()).collect(),
    };
    for (k, cond) in retry_on.iter().enumerate() {
        if cond == "retriable-headers" {
            c.push(
                format!("{at}.retry_on[{k}]"),
                "meshkit adds retriable-headers itself, for app errors marked retryable",
            );
        } else if STATUS_RETRY_ON.contains(&cond.as_str()) {
            c.push(
                format!("{at}.retry_on[{k}]"),
                format!(
                    "{cond:?} would retry app errors by status, including codes the catalog marks \
                     non-retryable; meshkit retries app errors by their catalog `retryable` flag"
                ),
            );
        } else if !RETRY_ON.contains(&cond.as_str()) {
            c.push(
                format!("{at}.retry_on[{k}]"),
                format!(
                    "unknown retry condition {cond:?}; known: {}",
                    RETRY_ON.join(", ")
                ),
            );
        }
    }
    let methods: Vec<String> = match &r.methods {
        Some(list) => list.clone(),
        None => IDEMPOTENT_METHODS.iter().map(|s| s.to_string()).collect(),
    };
    for (k, m) in methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            c.push(
                format!("{at}.methods[{k}]"),
                format!("unknown method {m:?}; known: {}", METHODS.join(", ")),
            );
        }
    }
    let backoff = r.backoff.as_ref().and_then(|b| {
        let base = required_duration(&b.base_interval, &format!("{at}.backoff.base_interval"), c)?;
        let max = match &b.max_interval {
            None => base * 10,
            Some(m) => required_duration(m, &format!("{at}.backoff.max_interval"), c)?,
        };
        if max < base {
            c.push(
                format!("{at}.backoff.max_interval"),
                "must not be shorter than base_interval",
            );
            return None;
        }
        Some((base, max))
    });
    let per_try_timeout = r.per_try_timeout.as_deref().and_then(|t| {
        let path = format!("{at}.per_try_timeout");
        match parse_duration(t) {
            Ok(d) if d >= timeout => {
                c.push(
                    path,
                    format!(
                        "{t} is not shorter than the route timeout ({}ms): the route times out \
                         before a retry can start; use a per-try timeout below it",
                        timeout.as_millis()
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                c.push(path, e);
                None
            }
        }
    });
    RetryPolicy {
        num_retries: u32::try_from(r.num_retries.clamp(0, MAX_RETRIES)).unwrap_or(0),
        retry_on,
        per_try_timeout,
        backoff,
        methods,
    }
}

/// The budget's parameters, guarding the percent-scale trap: `retry_ratio` is a fraction
/// (0.2 = 20 %) and at most 1; a percentage goes in `retry_percent`, at most 100. Either way
/// no more than one retry per request: the problems name the field as written, with the value
/// as written.
pub(super) fn retry_budget(
    b: &RetryBudgetSpec,
    at: &str,
    c: &mut Collector,
) -> Option<BudgetParams> {
    let defaults = BudgetParams::default();
    let ratio = match (b.retry_ratio, b.retry_percent) {
        (Some(_), Some(_)) => {
            c.push(
                format!("{at}.retry_percent"),
                "set retry_ratio or retry_percent, not both",
            );
            defaults.retry_ratio
        }
        (Some(r), None) if r.is_finite() && (0.0..=1.0).contains(&r) => r,
        (Some(r), None) => {
            let hint = if r.is_finite() && r > 1.0 && r <= 100.0 {
                format!(
                    "; retry_ratio is a fraction (20 % is 0.2) — write `retry_percent: {r}` if \
                     you meant a percentage"
                )
            } else {
                " (a fraction: 20 % is 0.2)".to_string()
            };
            let what = if r > 1.0 {
                format!("{r} is more than one retry per request")
            } else {
                format!("must be between 0 and 1, got {r}")
            };
            c.push(format!("{at}.retry_ratio"), format!("{what}{hint}"));
            defaults.retry_ratio
        }
        (None, Some(p)) if p.is_finite() && (0.0..=100.0).contains(&p) => p / 100.0,
        (None, Some(p)) => {
            c.push(
                format!("{at}.retry_percent"),
                format!(
                    "must be between 0 and 100 (a percentage of requests; at most one retry \
                     per request), got {p}"
                ),
            );
            defaults.retry_ratio
        }
        (None, None) => defaults.retry_ratio,
    };
    let min = b
        .min_retries_per_second
        .unwrap_or(i64::from(defaults.min_retries_per_second));
    let min = u32::try_from(min).unwrap_or_else(|_| {
        c.push(
            format!("{at}.min_retries_per_second"),
            format!("must be ≥ 0, got {min}"),
        );
        0
    });
    let ttl_ms = match &b.ttl {
        None => defaults.ttl_ms,
        Some(t) => match parse_duration(t) {
            Ok(d) => u32::try_from(d.as_millis()).unwrap_or(u32::MAX),
            Err(e) => {
                c.push(format!("{at}.ttl"), e);
                defaults.ttl_ms
            }
        },
    };
    let params = BudgetParams {
        retry_ratio: ratio,
        min_retries_per_second: min,
        ttl_ms,
    };
    // The ratio was checked above, in the user's own terms.
    for (field, message) in params.problems() {
        if field != "retry_ratio" {
            c.push(format!("{at}.{field}"), message);
        }
    }
    b.enabled.then_some(params)
}
