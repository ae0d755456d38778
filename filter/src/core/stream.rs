//! One HTTP stream through a meshkit listener: the filter's per-request decisions, driven by
//! Envoy's callbacks and applied through [`Host`].
//!
//! The proxy-wasm glue forwards each callback here and returns the [`Action`]; everything else
//! (what to read, what to stamp, when the retry budget is settled, what the log says) is decided
//! here, so every path is unit-tested without Envoy (`stream/tests.rs`).
//!
//! Header maps are only written while Envoy accepts writes: request headers in the
//! request-headers callback, response headers in the response-headers callback or while they
//! are held (`Action::Pause`), trailers in the trailers callback. proxy-wasm 0.2.5 panics on
//! any other answer, and a panic kills the VM.

use super::access_log::{self, FilterField};
use super::catalog::Catalog;
use super::cause_table::{Cause, Remembered};
use super::config::Direction;
use super::extract::{self, Extracted, Source};
use super::host::{string_property, u64_property, Host, Map, Property};
use super::local_reply::{self, LocalReplies};
use super::plugin::Plugin;
use super::propagation;
use super::pushback;
use super::report::{decide, ErrorReport, ResponseFacts};
use super::retry_control::{RetryLayers, RouterFailure};
use super::retry_grant::RetryGrant;

mod response;
#[cfg(test)]
mod tests;

pub use response::is_grpc;
use response::{
    origin, router_failure_of, Origin, RequestHeaders, ResponseHead, ResponseHeaders, Trailers,
};

/// What Envoy should do after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold what came so far (headers, or the body buffered) until a later callback.
    Pause,
}

/// Work a response callback left for a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Replace Envoy's local-reply body with this report's problem+json once it is complete.
    ReplaceBody(ErrorReport, u16),
    /// Read the app's error problem+json body (response headers are held until then).
    ProblemBody,
    /// gRPC: the status and its details come in trailers; what the headers already showed
    /// (inbound: the app's code, if any) is decided on together with them.
    Trailers(Extracted),
}

#[derive(Debug, Default)]
pub struct Stream {
    /// `x-request-id`. Read with the request headers: Envoy's `request.*` properties are not
    /// available in response callbacks (only in the request callback and `on_log`).
    request_id: Option<Vec<u8>>,
    /// When the request arrived (inbound only): older causes are another request's.
    arrived_ms: u64,
    pending: Option<Pending>,
    /// Outbound: this request's retries.
    retry: Option<RetryGrant>,
    /// What the router saw at response headers (for the budget's decision).
    router_failure: Option<RouterFailure>,
    origin: Origin,
    /// Inbound: the app asked callers to wait before retrying (see [`pushback`]).
    pushback: bool,
    /// The report is decided and recorded (or there is none).
    finished: bool,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Every hostcall here is paid by every request: the request id (for the cause chain) and
    /// the trace context (for the log) are read, and, outbound, what the retry grant needs.
    /// meshkit's own request headers are stripped by the generated route config, natively.
    pub fn on_request_headers(&mut self, plugin: &Plugin, host: &mut impl Host) -> Action {
        let config = &plugin.config;
        self.request_id = host.header(Map::RequestHeaders, "x-request-id");
        for (field, value) in access_log::trace_fields(&RequestHeaders(host)) {
            host.set_log_field(field, &value);
        }
        match config.direction {
            Direction::Inbound => self.arrived_ms = host.now_ms(),
            Direction::Outbound => self.retry = RetryGrant::open(plugin, host),
        }
        Action::Continue
    }

    pub fn on_response_headers(
        &mut self,
        plugin: &Plugin,
        host: &mut impl Host,
        end_of_stream: bool,
    ) -> Action {
        let config = &plugin.config;
        // (Inbound, the app's own x-meshkit-* were stripped by the route config already.)
        let head = ResponseHead::read(host, end_of_stream);
        if head.is_error {
            self.origin = origin(host);
        }
        // The router is done with this request: settle its retries now, not at the end of a
        // long stream.
        if let Some(grant) = self.retry.as_mut() {
            grant.settle(plugin, host, true);
        }

        if let Some(mesh) = self.origin.local_reply {
            self.router_failure = Some(router_failure_of(mesh));
            let facts = ResponseFacts {
                local_reply: Some(mesh),
                ..self.facts(plugin, host, true)
            };
            let report = self.finish(plugin, host, facts);
            if let Some(report) = report {
                self.rewrite_local_reply(plugin, host, report, &head, end_of_stream);
            }
            return Action::Continue;
        }

        // A success reads nothing more: codes matter only on errors (or on a gRPC response
        // whose status is still to come in trailers).
        let may_fail = head.is_error || head.status_in_trailers;
        match config.direction {
            Direction::Outbound => {
                let propagated = may_fail
                    .then(|| propagation::read(&ResponseHeaders(host)))
                    .flatten();
                if head.is_error {
                    self.router_failure = Some(match &propagated {
                        Some(p) if p.retryable => RouterFailure::MarkedRetryable,
                        _ => RouterFailure::Other,
                    });
                }
                if propagated.is_none() && head.status_in_trailers {
                    self.pending = Some(Pending::Trailers(Extracted::Absent));
                    return Action::Continue;
                }
                let facts = ResponseFacts {
                    propagated,
                    ..self.facts(plugin, host, head.is_error)
                };
                let report = self.finish(plugin, host, facts);
                if let Some(report) = report {
                    // Stamped as this hop decided it (the app must not retry what its sidecar
                    // already retried).
                    host.set_header(
                        Map::ResponseHeaders,
                        propagation::RETRYABLE,
                        &report.retryable.to_string(),
                    );
                }
            }
            Direction::Inbound => {
                let extracted = if may_fail {
                    let extracted = extract::from_app(&ResponseHeaders(host), &config.errors);
                    self.pushback = may_be_retried(&plugin.catalog, &extracted)
                        && pushback::asks_to_wait(&ResponseHeaders(host), head.status);
                    extracted
                } else {
                    Extracted::Absent
                };
                if head.status_in_trailers {
                    self.pending = Some(Pending::Trailers(extracted));
                    return Action::Continue;
                }
                if extracted == Extracted::Absent
                    && head.is_error
                    && !end_of_stream
                    && config.errors.problem_json_max_body_bytes.is_some()
                    && host
                        .header(Map::ResponseHeaders, "content-type")
                        .is_some_and(|ct| extract::is_problem_json(&ct))
                {
                    self.pending = Some(Pending::ProblemBody);
                    return Action::Pause;
                }
                let facts = ResponseFacts {
                    extracted,
                    ..self.facts(plugin, host, head.is_error)
                };
                if let Some(report) = self.finish(plugin, host, facts) {
                    stamp(host, Map::ResponseHeaders, &report);
                }
            }
        }
        Action::Continue
    }

    pub fn on_response_body(
        &mut self,
        plugin: &Plugin,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        match self.pending.take() {
            Some(Pending::ReplaceBody(report, status)) => {
                if !end_of_stream {
                    self.pending = Some(Pending::ReplaceBody(report, status));
                    return Action::Pause;
                }
                let detail = host.response_body(body_size.min(local_reply::MAX_DETAIL_LEN));
                let detail = String::from_utf8_lossy(&detail);
                let request_id = self
                    .request_id
                    .as_deref()
                    .and_then(|id| std::str::from_utf8(id).ok());
                let body = local_reply::problem_json(&report, status, detail.trim(), request_id);
                host.replace_response_body(body_size, body.as_bytes());
                Action::Continue
            }
            Some(Pending::ProblemBody) => {
                let max = plugin
                    .config
                    .errors
                    .problem_json_max_body_bytes
                    .unwrap_or(0) as usize;
                let extracted = if body_size > max {
                    Extracted::Malformed {
                        source: Source::ProblemJson,
                        reason: format!("body exceeds {max} bytes"),
                    }
                } else if !end_of_stream {
                    self.pending = Some(Pending::ProblemBody);
                    return Action::Pause;
                } else {
                    extract::from_problem_json(&host.response_body(body_size), max)
                };
                // Only error responses are held for their body.
                let facts = ResponseFacts {
                    extracted,
                    ..self.facts(plugin, host, true)
                };
                if let Some(report) = self.finish(plugin, host, facts) {
                    // The headers are still held, so they can still change.
                    stamp(host, Map::ResponseHeaders, &report);
                }
                Action::Continue
            }
            other => {
                self.pending = other;
                Action::Continue
            }
        }
    }

    pub fn on_response_trailers(&mut self, plugin: &Plugin, host: &mut impl Host) -> Action {
        let inbound = plugin.config.direction == Direction::Inbound;
        if inbound {
            // Trailers can carry meshkit's headers too; the app may not set them there either.
            for name in propagation::ALL {
                host.remove_header(Map::ResponseTrailers, name);
            }
        }
        let trailers_error = || {
            host.header(Map::ResponseTrailers, "grpc-status")
                .is_some_and(|s| s != b"0")
        };
        let facts = match self.pending.take() {
            Some(Pending::Trailers(from_headers)) if inbound => {
                let is_error = trailers_error();
                let errors = &plugin.config.errors;
                let extracted = from_headers.or_else(|| extract::from_app(&Trailers(host), errors));
                // gRPC sends its pushback with the status.
                self.pushback |= is_error
                    && may_be_retried(&plugin.catalog, &extracted)
                    && pushback::asks_to_wait(&Trailers(host), 200);
                ResponseFacts {
                    extracted,
                    ..self.facts(plugin, host, is_error)
                }
            }
            Some(Pending::Trailers(_)) => {
                let is_error = trailers_error();
                ResponseFacts {
                    propagated: propagation::read(&Trailers(host)),
                    ..self.facts(plugin, host, is_error)
                }
            }
            // A held problem+json body ended with trailers: the body is complete now.
            Some(Pending::ProblemBody) => {
                let max = plugin
                    .config
                    .errors
                    .problem_json_max_body_bytes
                    .unwrap_or(0) as usize;
                let body = host.response_body(max.saturating_add(1));
                ResponseFacts {
                    extracted: extract::from_problem_json(&body, max),
                    ..self.facts(plugin, host, true)
                }
            }
            other => {
                self.pending = other;
                return Action::Continue;
            }
        };
        if let Some(report) = self.finish(plugin, host, facts) {
            // Trailers are the map this callback may write. (Response headers held for a
            // problem+json body are not written from here: if Envoy refused, proxy-wasm would
            // panic the VM. An HTTP/1 caller does not see trailers; the log and metrics do.)
            stamp(host, Map::ResponseTrailers, &report);
        }
        Action::Continue
    }

    /// Runs before Envoy writes the access log line: whatever did not complete (a reset, a
    /// body or trailers that never came) is settled and reported here, never dropped.
    pub fn on_log(&mut self, plugin: &Plugin, host: &mut impl Host) {
        if let Some(grant) = self.retry.as_mut() {
            grant.settle(plugin, host, false);
        }
        match self.pending.take() {
            Some(Pending::ProblemBody) => {
                let facts = ResponseFacts {
                    extracted: Extracted::Malformed {
                        source: Source::ProblemJson,
                        reason: "the body never completed".into(),
                    },
                    ..self.facts(plugin, host, true)
                };
                self.finish(plugin, host, facts);
            }
            Some(Pending::Trailers(extracted)) => {
                // The stream ended without trailers: a gRPC call cut off mid-stream.
                let facts = ResponseFacts {
                    extracted,
                    ..self.facts(plugin, host, false)
                };
                self.finish(plugin, host, facts);
            }
            _ => {}
        }
        if !self.finished {
            self.finished = true;
            self.record_retry(host, None);
        }
    }

    /// The facts common to every response of this stream. An inbound error takes its
    /// request's remembered upstream failure out of the cause table.
    fn facts(&mut self, plugin: &Plugin, host: &mut impl Host, is_error: bool) -> ResponseFacts {
        let config = &plugin.config;
        // Only an error is reported, so only an error needs the upstream's name: from the
        // route's retry settings when it has them, else from the cluster the router used.
        let upstream = match (config.direction, is_error) {
            (Direction::Outbound, true) => self
                .retry
                .as_ref()
                .map(|g| g.upstream().to_string())
                .or_else(|| string_property(host, Property::ClusterName)),
            _ => None,
        };
        let remembered = match (config.direction, is_error) {
            (Direction::Inbound, true) => {
                let arrived = self.arrived_ms;
                let now = host.now_ms();
                let id = self.request_id.as_deref();
                id.and_then(|id| plugin.causes.take(host, now, id, arrived))
            }
            _ => None,
        };
        ResponseFacts {
            direction: config.direction,
            service: config.service.clone(),
            upstream,
            local_reply: None,
            extracted: Extracted::Absent,
            propagated: None,
            remembered,
            is_error,
        }
    }

    /// Decides, then records: cause table (outbound), metrics, the access log fields. At most
    /// once per stream.
    fn finish(
        &mut self,
        plugin: &Plugin,
        host: &mut impl Host,
        facts: ResponseFacts,
    ) -> Option<ErrorReport> {
        if self.finished {
            return None;
        }
        self.finished = true;
        let config = &plugin.config;
        let upstream = match config.direction {
            Direction::Inbound => "local_app".to_string(),
            Direction::Outbound => facts.upstream.clone().unwrap_or_else(|| "none".into()),
        };
        let Some(mut report) = decide(&plugin.catalog, facts) else {
            self.record_retry(host, None);
            return None;
        };
        report.retryable = report.retryable && self.caller_may_retry(plugin, &report);
        self.record(plugin, host, &report, &upstream);
        self.record_retry(host, Some(&report));
        Some(report)
    }

    /// Whether this hop tells its caller it may retry a retryable failure. Outbound: not if
    /// this sidecar's route retries the request (it retried already, or its budget refused:
    /// an app retrying on top would multiply attempts or defeat the budget). Inbound: not if
    /// the app pushed back, and in `nearest_hop` mode only if the failure started here.
    fn caller_may_retry(&self, plugin: &Plugin, report: &ErrorReport) -> bool {
        let config = &plugin.config;
        match config.direction {
            Direction::Outbound => !self.retry.as_ref().is_some_and(|g| g.retries_here),
            Direction::Inbound => {
                !self.pushback
                    && (config.retry_layers != RetryLayers::NearestHop
                        || report.origin == config.service)
            }
        }
    }

    fn record(
        &mut self,
        plugin: &Plugin,
        host: &mut impl Host,
        report: &ErrorReport,
        upstream: &str,
    ) {
        let config = &plugin.config;
        if config.direction == Direction::Outbound && report.code.is_some() {
            if let (Some(code), Some(id)) = (&report.code, &self.request_id) {
                let cause = Cause {
                    origin: report.origin.clone(),
                    code: code.clone(),
                };
                let now = host.now_ms();
                match plugin.causes.remember(host, now, id, &cause) {
                    Remembered::Evicted => host.counter("meshkit.cause_table.evicted", 1),
                    Remembered::Failed => host.counter("meshkit.cause_table.failed", 1),
                    Remembered::Stored | Remembered::Skipped => {}
                }
            }
        }
        let name = host.with_cap(|cap| {
            cap.error_metric(&config.service, config.direction.as_str(), upstream, report)
        });
        host.counter(&name, 1);
        for (field, value) in access_log::error_fields(report) {
            host.set_log_field(field, &value);
        }
        if let Some(reason) = &report.malformed {
            host.debug(&format!("meshkit: malformed error carrier: {reason}"));
        }
    }

    /// The budget's decision for this request: log fields and metrics.
    fn record_retry(&self, host: &mut impl Host, report: Option<&ErrorReport>) {
        let Some(grant) = &self.retry else {
            return;
        };
        // A failure reported only in trailers was never the router's to retry.
        let failure = report.and(self.router_failure);
        // An upstream's response needs its flags only if a circuit breaker could have refused
        // one of its retries.
        let flags = if self.origin.via_upstream && grant.may_overflow(failure) {
            u64_property(host, Property::ResponseFlags).unwrap_or(0)
        } else {
            self.origin.flags
        };
        let decision = grant.decide(failure, flags, self.origin.via_upstream);
        if let Some(name) = grant.decision_metric(decision) {
            host.counter(name, 1);
        }
        host.set_log_field(FilterField::RetryAllowed, &grant.allowed.to_string());
        host.set_log_field(FilterField::RetryBudget, decision.as_str());
    }

    /// Makes an Envoy-generated failure uniform, per the listener's `local_replies` setting.
    fn rewrite_local_reply(
        &mut self,
        plugin: &Plugin,
        host: &mut impl Host,
        report: ErrorReport,
        head: &ResponseHead,
        end_of_stream: bool,
    ) {
        let mode = plugin.config.local_replies;
        if mode == LocalReplies::Off {
            return;
        }
        stamp(host, Map::ResponseHeaders, &report);
        if mode != LocalReplies::HeadersAndBody {
            return;
        }
        if head.grpc {
            for (name, value) in local_reply::grpc_headers(&report, &plugin.catalog) {
                host.set_header(Map::ResponseHeaders, name, &value);
            }
        } else if !end_of_stream {
            host.set_header(
                Map::ResponseHeaders,
                "content-type",
                "application/problem+json",
            );
            host.remove_header(Map::ResponseHeaders, "content-length");
            self.pending = Some(Pending::ReplaceBody(report, head.status));
        }
    }
}

/// Whether an inbound failure with what the app said could still be marked retryable, so that
/// the app's pushback matters. A code the catalog does not retry settles it: its pushback
/// headers are not read.
fn may_be_retried(catalog: &Catalog, extracted: &Extracted) -> bool {
    match extracted {
        Extracted::Code { code, .. } => catalog.retryable(code),
        // No code of its own: a remembered upstream cause may still be retryable.
        _ => true,
    }
}

fn stamp(host: &mut impl Host, map: Map, report: &ErrorReport) {
    for (name, value) in propagation::stamp(report) {
        host.set_header(map, name, &value);
    }
}
