//! Envoy circuit-breaker thresholds, on the app cluster and on each upstream's cluster.

use crate::model::CircuitBreaker;
use crate::problems::Collector;
use crate::spec::CircuitBreakerSpec;

/// Largest circuit-breaker threshold accepted.
pub const MAX_BREAKER: u32 = 1_000_000;

/// Thresholds between 1 and [`MAX_BREAKER`]; `max_retries` defaults to `max_requests`.
pub(super) fn circuit_breaker(
    b: &CircuitBreakerSpec,
    at: &str,
    c: &mut Collector,
) -> CircuitBreaker {
    let defaults = CircuitBreaker::default();
    let mut field = |value: Option<i64>, name: &str, default: u32| match value {
        None => default,
        Some(v) => match u32::try_from(v) {
            Ok(n) if (1..=MAX_BREAKER).contains(&n) => n,
            _ => {
                c.push(
                    format!("{at}.{name}"),
                    format!("must be between 1 and {MAX_BREAKER}, got {v}"),
                );
                default
            }
        },
    };
    let max_connections = field(
        b.max_connections,
        "max_connections",
        defaults.max_connections,
    );
    let max_pending_requests = field(
        b.max_pending_requests,
        "max_pending_requests",
        defaults.max_pending_requests,
    );
    let max_requests = field(b.max_requests, "max_requests", defaults.max_requests);
    let max_retries = field(b.max_retries, "max_retries", max_requests);
    CircuitBreaker {
        max_connections,
        max_pending_requests,
        max_requests,
        max_retries,
    }
}
