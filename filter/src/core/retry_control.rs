//! Retry control on the outbound side: how many retries the router may make for a request
//! (the route's `num_retries`, capped by the upstream's [retry budget](super::retry_budget)),
//! and, on the inbound side, which layer of a call chain may retry a failure at all.
//!
//! Enforcement uses stock Envoy: before the router, the filter sets `x-envoy-max-retries` to
//! the allowance (Envoy strips that header from every peer, so only the filter decides); at
//! response headers, when the router can no longer retry, the filter settles the budget with
//! the retries actually made (`x-envoy-attempt-count`, else the stream's attempt count).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::retry_budget::{BudgetParams, MAX_HOLD_MS};

/// Which layer of a call chain retries an app's retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryLayers {
    /// Only the caller next to the failing service retries: an inbound sidecar marks an error
    /// retryable only if its own service is the origin. A failure that started deeper was
    /// already retried next to where it happened, so outer layers pass it on (retryable:
    /// false). Attempts on the failing service stay at `1 + num_retries` per client request
    /// however deep the chain.
    #[default]
    NearestHop,
    /// Every layer may retry (the naive behaviour; attempts multiply layer by layer, bounded
    /// only by the budgets).
    EveryHop,
}

/// One generated route's retry policy, keyed by route name in [`RetrySettings`]: what the
/// router will retry, so the filter reserves budget only for retries that can happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRetry {
    pub upstream: String,
    pub num_retries: u32,
    /// Methods the router retries (the route's `retriable_request_headers`).
    pub methods: Vec<String>,
    /// The route's transport retry conditions (Envoy's `retry_on`, without
    /// `retriable-headers`, which every generated route has).
    pub retry_on: Vec<String>,
    /// The route timeout: no retry happens after it, so a reservation is never held longer.
    pub timeout_ms: u64,
}

impl RouteRetry {
    /// Whether the router may retry a request with this method.
    pub fn retries_method(&self, method: &[u8]) -> bool {
        self.num_retries > 0 && self.methods.iter().any(|m| m.as_bytes() == method)
    }

    /// Whether the router retries a response it got, as this filter sees it at response
    /// headers. Errors in trailers never count: the router decides on headers.
    pub fn retries_failure(&self, failure: &RouterFailure) -> bool {
        let on = |c: &str| self.retry_on.iter().any(|r| r == c);
        match failure {
            RouterFailure::MarkedRetryable => true,
            RouterFailure::ConnectFailure => on("connect-failure") || on("reset"),
            RouterFailure::Reset => {
                on("reset") || on("refused-stream") || on("reset-before-request")
            }
            RouterFailure::Other => false,
        }
    }
}

/// The kind of failure the router saw, for [`RouteRetry::retries_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterFailure {
    /// Response headers carried `x-meshkit-error-retryable: true` (the route's
    /// `retriable_headers`).
    MarkedRetryable,
    /// Envoy could not connect (flag UF).
    ConnectFailure,
    /// The upstream reset the stream or closed the connection (UR, UC, LR).
    Reset,
    Other,
}

/// What the outbound filter needs to control retries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Route name → policy. Routes not listed are left alone.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteRetry>,
    /// Upstream service → its budget. An upstream not listed has no budget.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetParams>,
}

impl RetrySettings {
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        for (name, route) in &self.routes {
            if route.num_retries > 10 {
                p.push((
                    format!("routes.{name}.num_retries"),
                    format!("at most 10, got {}", route.num_retries),
                ));
            }
            if route.timeout_ms == 0 || route.timeout_ms > MAX_HOLD_MS {
                p.push((
                    format!("routes.{name}.timeout_ms"),
                    format!(
                        "must be between 1 and {MAX_HOLD_MS}, got {}",
                        route.timeout_ms
                    ),
                ));
            }
        }
        for (upstream, params) in &self.budgets {
            for (field, message) in params.problems() {
                p.push((format!("budgets.{upstream}.{field}"), message));
            }
        }
        p
    }
}

/// What the budget did to one request's retries (`meshkit.retry.budget` in the access log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetDecision {
    /// The upstream has no budget.
    Off,
    /// The router cannot retry this request (its method is not retried on the route), so the
    /// budget was not asked.
    NotRetriable,
    /// The route's full `num_retries` was allowed.
    Full,
    /// Fewer retries than the route allows.
    Capped,
    /// No retry allowed.
    Exhausted,
    /// The shared store kept refusing the update: no retry allowed, nothing held.
    Unavailable,
    /// A failure the router would have retried came back, and the budget had refused the
    /// retry it needed.
    Denied,
    /// The router wanted to retry within the allowance, and Envoy's circuit breaker
    /// (`max_retries`) refused (flag UO on the response).
    Overflow,
}

impl BudgetDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetDecision::Off => "off",
            BudgetDecision::NotRetriable => "not_retriable",
            BudgetDecision::Full => "full",
            BudgetDecision::Capped => "capped",
            BudgetDecision::Exhausted => "exhausted",
            BudgetDecision::Unavailable => "unavailable",
            BudgetDecision::Denied => "denied",
            BudgetDecision::Overflow => "overflow",
        }
    }
}

/// The retries to allow now: the route's maximum, capped by what the budget affords
/// (`None` = no budget).
pub fn allowance(route_max: u32, affordable: Option<u32>) -> (u32, BudgetDecision) {
    match affordable {
        None => (route_max, BudgetDecision::Off),
        Some(a) if a >= route_max => (route_max, BudgetDecision::Full),
        Some(0) => (0, BudgetDecision::Exhausted),
        Some(a) => (a, BudgetDecision::Capped),
    }
}

/// The decision once the response headers are known. `router_retries_failure`: the response
/// is a failure the route retries; `breaker_refused`: Envoy's circuit breaker refused a retry.
pub fn settle(
    decision: BudgetDecision,
    allowed: u32,
    retries_made: u32,
    router_retries_failure: bool,
    breaker_refused: bool,
) -> BudgetDecision {
    match decision {
        BudgetDecision::NotRetriable | BudgetDecision::Unavailable => decision,
        _ if breaker_refused && retries_made < allowed => BudgetDecision::Overflow,
        BudgetDecision::Capped | BudgetDecision::Exhausted
            if router_retries_failure && retries_made >= allowed =>
        {
            BudgetDecision::Denied
        }
        d => d,
    }
}

/// Attempts, from `x-envoy-attempt-count` (1 = no retry); `None` if absent or garbage.
pub fn attempts(attempt_count: Option<&[u8]>) -> Option<u32> {
    attempt_count
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn allowance_caps_the_route_maximum() {
        assert_eq!(allowance(3, None), (3, BudgetDecision::Off));
        assert_eq!(allowance(3, Some(100)), (3, BudgetDecision::Full));
        assert_eq!(allowance(3, Some(2)), (2, BudgetDecision::Capped));
        assert_eq!(allowance(3, Some(0)), (0, BudgetDecision::Exhausted));
        assert_eq!(
            allowance(0, Some(0)),
            (0, BudgetDecision::Full),
            "nothing to deny"
        );
    }

    #[test]
    fn settle_marks_denials_and_breaker_refusals() {
        use BudgetDecision::*;
        assert_eq!(settle(Exhausted, 0, 0, true, false), Denied);
        assert_eq!(settle(Capped, 1, 1, true, false), Denied);
        assert_eq!(
            settle(Capped, 2, 1, true, false),
            Capped,
            "succeeded on a retry within the cap"
        );
        assert_eq!(
            settle(Exhausted, 0, 0, false, false),
            Exhausted,
            "the router would not have retried: nothing denied"
        );
        assert_eq!(settle(Full, 3, 3, true, false), Full);
        assert_eq!(settle(Off, 3, 3, true, false), Off);
        assert_eq!(
            settle(Full, 3, 1, true, true),
            Overflow,
            "the breaker, not the budget"
        );
        assert_eq!(settle(Off, 3, 0, true, true), Overflow);
        assert_eq!(
            settle(Capped, 1, 1, true, true),
            Denied,
            "allowance used up first"
        );
        assert_eq!(settle(NotRetriable, 0, 0, true, true), NotRetriable);
        assert_eq!(
            settle(Unavailable, 0, 0, true, false),
            Unavailable,
            "not the budget's doing"
        );
    }

    #[test]
    fn attempt_count_parsing() {
        assert_eq!(attempts(Some(b"1")), Some(1));
        assert_eq!(attempts(Some(b"4")), Some(4));
        assert_eq!(attempts(None), None);
        for bad in [&b"x"[..], b"-1", b"\xff", b"99999999999999999999"] {
            assert_eq!(attempts(Some(bad)), None);
        }
    }

    fn route(methods: &[&str], retry_on: &[&str]) -> RouteRetry {
        RouteRetry {
            upstream: "users".into(),
            num_retries: 2,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            retry_on: retry_on.iter().map(|m| m.to_string()).collect(),
            timeout_ms: 5_000,
        }
    }

    #[test]
    fn only_what_the_router_retries_counts() {
        let r = route(&["GET", "PUT"], &["connect-failure"]);
        assert!(r.retries_method(b"GET"));
        assert!(!r.retries_method(b"POST"));
        assert!(!r.retries_method(b"get"), "methods are case-sensitive");
        assert!(!RouteRetry {
            num_retries: 0,
            ..r.clone()
        }
        .retries_method(b"GET"));
        assert!(r.retries_failure(&RouterFailure::MarkedRetryable));
        assert!(r.retries_failure(&RouterFailure::ConnectFailure));
        assert!(!r.retries_failure(&RouterFailure::Reset));
        assert!(!r.retries_failure(&RouterFailure::Other));
        assert!(route(&[], &["reset"]).retries_failure(&RouterFailure::Reset));
    }

    #[test]
    fn settings_problems_name_the_field() {
        let mut s = RetrySettings::default();
        s.routes.insert(
            "users/0".into(),
            RouteRetry {
                num_retries: 11,
                ..route(&["GET"], &[])
            },
        );
        s.budgets.insert(
            "users".into(),
            BudgetParams {
                retry_ratio: -1.0,
                ..Default::default()
            },
        );
        let paths: Vec<String> = s.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["routes.users/0.num_retries", "budgets.users.retry_ratio"]
        );
    }
}
