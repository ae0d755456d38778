//! One outbound request's retries, from grant to settlement.
//!
//! - **Grant** (request headers): deposit the request into its upstream's budget and hold as
//!   many of the route's retries as the budget affords, only if the router can retry this
//!   request at all (its method); tell the router with `x-envoy-max-retries`.
//! - **Settle** (response headers, when the router can no longer retry; or at the end of the
//!   stream if no response came): release the hold and charge the retries actually made.
//! - **Decide** (once the outcome is known): what the budget did, for the log and metrics.

use std::rc::Rc;

use super::host::{u64_property, Host, Map, Property};
use super::plugin::{Plugin, RetryRoute};
use super::retry_budget::Reservation;
use super::retry_control::{self, BudgetDecision, RouterFailure};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryGrant {
    /// The route's policy applies to this request: this hop retries (or was refused retries),
    /// so its app is never told to retry on top.
    pub retries_here: bool,
    /// Retries the router may make (`x-envoy-max-retries`).
    pub allowed: u32,
    pub decision: BudgetDecision,
    /// The route's policy and metric names, shared with the plugin.
    route: Rc<RetryRoute>,
    /// Held in the shared budget until settled.
    reservation: Option<Reservation>,
    /// Retries made, once settled.
    pub made: Option<u32>,
}

impl RetryGrant {
    /// Grants retries for the request whose headers are in `host`; `None` when the route's
    /// retries are not meshkit's to control.
    pub fn open(plugin: &Plugin, host: &mut impl Host) -> Option<RetryGrant> {
        // A listener without retry policies never asks which route the request took.
        if plugin.retry_routes.is_empty() {
            return None;
        }
        let route_name = super::host::string_property(host, Property::RouteName)?;
        let route = plugin.retry_routes.get(&route_name)?.clone();
        let policy = &route.policy;
        let method = host
            .header(Map::RequestHeaders, ":method")
            .unwrap_or_default();
        let retries_here = policy.retries_method(&method);
        let wanted = if retries_here { policy.num_retries } else { 0 };
        let (allowed, decision, reservation) = match plugin.budgets.get(&policy.upstream) {
            None => (wanted, BudgetDecision::Off, None),
            Some(shared) => {
                // Every request deposits, retriable or not: the bound counts all requests.
                let now = host.now_ms();
                match shared.grant(host, now, wanted) {
                    Some(granted) => {
                        // Only a write sees the shared window.
                        if let Some(left) = granted.available {
                            host.gauge(&route.budget_remaining, u64::from(left));
                        }
                        let r = granted.reservation;
                        let (allowed, decision) = retry_control::allowance(wanted, Some(r.retries));
                        (allowed, decision, (r.retries > 0).then_some(r))
                    }
                    None => (0, BudgetDecision::Unavailable, None),
                }
            }
        };
        let decision = if retries_here {
            // Envoy strips x-envoy-* from every peer, so this is the only retry count.
            host.set_header(
                Map::RequestHeaders,
                "x-envoy-max-retries",
                &allowed.to_string(),
            );
            decision
        } else {
            BudgetDecision::NotRetriable
        };
        host.counter(&route.requests, 1);
        Some(RetryGrant {
            retries_here,
            allowed: if retries_here { allowed } else { 0 },
            decision,
            route,
            reservation,
            made: None,
        })
    }

    /// The upstream service the route leads to.
    pub fn upstream(&self) -> &str {
        &self.route.policy.upstream
    }

    /// The counter for a request the budget denied, or whose retry the breaker refused.
    pub fn decision_metric(&self, decision: BudgetDecision) -> Option<&str> {
        match decision {
            BudgetDecision::Denied => Some(&self.route.denied),
            BudgetDecision::Overflow => Some(&self.route.overflow),
            _ => None,
        }
    }

    /// The router is done: releases the hold and charges the retries made. Attempts come from
    /// `x-envoy-attempt-count` when response headers are given, else from the stream info.
    /// Only the first call counts.
    pub fn settle(&mut self, plugin: &Plugin, host: &mut impl Host, with_headers: bool) {
        if self.made.is_some() {
            return;
        }
        let header = with_headers
            .then(|| host.header(Map::ResponseHeaders, "x-envoy-attempt-count"))
            .flatten();
        let attempts = retry_control::attempts(header.as_deref()).or_else(|| {
            u64_property(host, Property::RequestAttemptCount)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        });
        // The router never exceeds x-envoy-max-retries; capping keeps the accounting exact.
        let made = attempts.unwrap_or(1).saturating_sub(1).min(self.allowed);
        self.made = Some(made);
        host.counter(&self.route.retries, u64::from(made));
        let Some(shared) = plugin.budgets.get(self.upstream()) else {
            return;
        };
        // With no retry made (the common case) the hold goes back to this worker's lease, or
        // with its next write: no shared-data write here.
        let reservation = self.reservation.unwrap_or(Reservation {
            epoch: u64::MAX,
            retries: 0,
            bucket: 0,
        });
        let settled = {
            let host = &*host;
            shared.settle(host, || host.now_ms(), reservation, made)
        };
        if !settled {
            // The hold stays until it expires, and the retries made are not charged: count it.
            host.counter(&self.route.settle_failed, 1);
        }
    }

    /// Whether Envoy's circuit breaker could have refused a retry of this failure: the route
    /// retries it, and the router had retries left that the budget granted.
    pub fn may_overflow(&self, failure: Option<RouterFailure>) -> bool {
        !matches!(
            self.decision,
            BudgetDecision::NotRetriable | BudgetDecision::Unavailable
        ) && self.made.unwrap_or(0) < self.allowed
            && failure.is_some_and(|f| self.route.policy.retries_failure(&f))
    }

    /// The budget's decision for the log, once the outcome is known. `failure`: what the router
    /// saw at response headers (`None`: no failure there); `flags`: Envoy's response flags.
    pub fn decide(
        &self,
        failure: Option<RouterFailure>,
        flags: u64,
        via_upstream: bool,
    ) -> BudgetDecision {
        use super::error_code::flags::*;
        let made = self.made.unwrap_or(0);
        let retried_failure = failure.is_some_and(|f| self.route.policy.retries_failure(&f));
        // UO on a response that still came from the upstream, or next to a transport failure:
        // the router wanted another attempt and the circuit breaker refused it.
        let breaker = flags & UPSTREAM_OVERFLOW != 0
            && (via_upstream
                || flags
                    & (UPSTREAM_CONNECTION_FAILURE
                        | UPSTREAM_REMOTE_RESET
                        | UPSTREAM_CONNECTION_TERMINATION
                        | LOCAL_RESET)
                    != 0);
        retry_control::settle(self.decision, self.allowed, made, retried_failure, breaker)
    }
}
