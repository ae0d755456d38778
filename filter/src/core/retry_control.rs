//! Retry control on the outbound side: how many retries the router may make for a request
//! (the route's `num_retries`, capped by the upstream's [retry budget](super::retry_budget)),
//! and, on the inbound side, which layer of a call chain may retry a failure at all.
//!
//! Enforcement uses stock Envoy: before the router, the filter sets `x-envoy-max-retries` to
//! the allowance (Envoy strips that header from every peer, so only the filter decides); after
//! the response, it charges the budget for the retries actually made, read from
//! `x-envoy-attempt-count`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::retry_budget::BudgetParams;

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

/// One generated route's retry policy, keyed by route name in [`RetrySettings`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRetry {
    pub upstream: String,
    pub num_retries: u32,
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
        }
        for (upstream, params) in &self.budgets {
            for (field, message) in params.problems() {
                p.push((format!("budgets.{upstream}.{field}"), message));
            }
        }
        p
    }
}

/// What the budget did to one request's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetDecision {
    /// The upstream has no budget.
    Off,
    /// The route's full `num_retries` was allowed.
    Full,
    /// Fewer retries than the route allows.
    Capped,
    /// No retry allowed.
    Exhausted,
    /// A retryable failure came back and the budget had refused the retry it needed.
    Denied,
}

impl BudgetDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetDecision::Off => "off",
            BudgetDecision::Full => "full",
            BudgetDecision::Capped => "capped",
            BudgetDecision::Exhausted => "exhausted",
            BudgetDecision::Denied => "denied",
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

/// The decision once the response is known: a retryable failure that used up a capped
/// allowance was denied a retry by the budget.
pub fn settle(
    decision: BudgetDecision,
    allowed: u32,
    retries_made: u32,
    retryable_failure: bool,
) -> BudgetDecision {
    match decision {
        BudgetDecision::Capped | BudgetDecision::Exhausted
            if retryable_failure && retries_made >= allowed =>
        {
            BudgetDecision::Denied
        }
        d => d,
    }
}

/// Retries made, from `x-envoy-attempt-count` (1 = no retry). Garbage counts as none.
pub fn retries_made(attempt_count: Option<&[u8]>) -> u32 {
    attempt_count
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(0, |n| n.saturating_sub(1))
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
    fn settle_marks_denials() {
        use BudgetDecision::*;
        assert_eq!(settle(Exhausted, 0, 0, true), Denied);
        assert_eq!(settle(Capped, 1, 1, true), Denied);
        assert_eq!(
            settle(Capped, 2, 1, true),
            Capped,
            "succeeded on a retry within the cap"
        );
        assert_eq!(
            settle(Exhausted, 0, 0, false),
            Exhausted,
            "non-retryable: nothing denied"
        );
        assert_eq!(settle(Full, 3, 3, true), Full);
        assert_eq!(settle(Off, 3, 3, true), Off);
    }

    #[test]
    fn attempt_count_parsing() {
        assert_eq!(retries_made(Some(b"1")), 0);
        assert_eq!(retries_made(Some(b"4")), 3);
        assert_eq!(retries_made(Some(b"0")), 0);
        assert_eq!(retries_made(None), 0);
        for bad in [&b"x"[..], b"-1", b"\xff", b"99999999999999999999"] {
            assert_eq!(retries_made(Some(bad)), 0);
        }
    }

    #[test]
    fn settings_problems_name_the_field() {
        let mut s = RetrySettings::default();
        s.routes.insert(
            "users/0".into(),
            RouteRetry {
                upstream: "users".into(),
                num_retries: 11,
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
