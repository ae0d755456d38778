//! proxy-wasm glue: reads what Envoy shows, calls [`crate::core`], writes the result back.
//!
//! Only `hostcalls::*` are used, never the `Context` trait helpers, which `unwrap()` more
//! host errors. Even so, proxy-wasm 0.2.5's hostcalls `panic!` on any status they do not
//! expect (e.g. `set_map_value` on anything but Ok), and a panic kills the VM and fails every
//! request on the worker. So headers are only ever written where Envoy answers Ok: request
//! headers in the request-headers callback, response headers in the response-headers
//! callback or while they are held (`Action::Pause`), trailers in the trailers callback.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::core::access_log;
use crate::core::catalog::Catalog;
use crate::core::cause_table::{self, Cause, SharedStore};
use crate::core::config::{Direction, PluginConfig};
use crate::core::error_code::MeshCode;
use crate::core::extract::{self, Extracted, Source};
use crate::core::headers::HeaderSource;
use crate::core::local_reply::{self, LocalReplies};
use crate::core::metrics;
use crate::core::metrics::CardinalityCap;
use crate::core::propagation;
use crate::core::report::{decide, ErrorReport, ResponseFacts};
use crate::core::retry_budget::{self, Budget, CasStore};
use crate::core::retry_control::{self, BudgetDecision, RetryLayers, RouteRetry};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MeshkitRoot::default()) });
}}

/// Everything a plugin instance needs on the request path, built once in `on_configure`.
struct Plugin {
    config: PluginConfig,
    catalog: Catalog,
    /// Upstream → its budget's constants (from `config.retries.budgets`).
    budgets: HashMap<String, Budget>,
    metrics: RefCell<Metrics>,
}

/// Metric ids by name, defined lazily once per VM; the name set is bounded by the cap.
struct Metrics {
    cap: CardinalityCap,
    ids: HashMap<String, u32>,
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&name) {
            return Some(*id);
        }
        match hostcalls::define_metric(kind, &name) {
            Ok(id) => Some(*self.ids.entry(name).or_insert(id)),
            Err(status) => {
                log::warn!("meshkit: cannot define metric {name}: {status:?}");
                None
            }
        }
    }

    fn add(&mut self, name: String, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn increment(&mut self, name: String) {
        self.add(name, 1);
    }

    fn gauge(&mut self, name: String, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// One per plugin per worker VM: owns the parsed configuration.
#[derive(Default)]
struct MeshkitRoot {
    plugin: Option<Rc<Plugin>>,
}

impl Context for MeshkitRoot {}

impl RootContext for MeshkitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                log::error!(
                    "meshkit: invalid plugin configuration: (root): configuration is missing"
                );
                return false;
            }
            Err(status) => {
                log::error!("meshkit: cannot read plugin configuration: {status:?}");
                return false;
            }
        };
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "meshkit: configured service={} direction={} catalog={} codes",
                    config.service,
                    config.direction.as_str(),
                    config.errors.catalog.len()
                );
                // Shared data only compare-and-swaps keys that exist: create each budget's key
                // now, before traffic, so no two workers ever race to create it mid-request.
                for upstream in config.retries.budgets.keys() {
                    let key = budget_key(&config.service, upstream);
                    if matches!(hostcalls::get_shared_data(&key), Ok((None, _))) {
                        let empty = retry_budget::Window::default().encode();
                        if let Err(s) = hostcalls::set_shared_data(&key, Some(&empty), None) {
                            log::warn!("meshkit: cannot create {key}: {s:?}");
                        }
                    }
                }
                let cap = CardinalityCap::new(config.errors.max_metric_codes as usize);
                let budgets = config
                    .retries
                    .budgets
                    .iter()
                    .map(|(upstream, params)| (upstream.clone(), Budget::new(params)))
                    .collect();
                self.plugin = Some(Rc::new(Plugin {
                    catalog: Catalog::new(&config.errors.catalog),
                    budgets,
                    config,
                    metrics: RefCell::new(Metrics {
                        cap,
                        ids: HashMap::new(),
                    }),
                }));
                true
            }
            Err(e) => {
                // The message names the field: "invalid plugin configuration: <path>: <problem>".
                log::error!("meshkit: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy does not start a plugin whose configuration failed; should it ask anyway,
        // answering None would make the SDK panic, so hand it a context that does nothing.
        let Some(plugin) = self.plugin.clone() else {
            return Some(Box::new(Passthrough));
        };
        Some(Box::new(MeshkitHttp {
            plugin,
            request_id: None,
            grpc_caller: false,
            pending: Pending::None,
            retry: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The HTTP context of a plugin that has no configuration: lets traffic through untouched.
struct Passthrough;

impl Context for Passthrough {}
impl HttpContext for Passthrough {}

/// Work a response callback left for a later one.
enum Pending {
    None,
    /// Replace Envoy's local-reply body with this report's problem+json once it is complete.
    ReplaceBody(ErrorReport, u16),
    /// Read the app's error problem+json body (headers are held until then).
    ProblemBody,
    /// gRPC: the status and its details come in trailers; what the headers already showed
    /// (inbound: the app's code, if any) is decided on together with them.
    Trailers(Extracted),
}

/// One per HTTP stream.
struct MeshkitHttp {
    plugin: Rc<Plugin>,
    request_id: Option<Vec<u8>>,
    /// The caller speaks gRPC: errors are reported as gRPC statuses, not problem+json.
    grpc_caller: bool,
    pending: Pending,
    /// Outbound: the retry allowance granted to this request, settled once it completes.
    retry: Option<RetryGrant>,
}

struct RetryGrant {
    upstream: String,
    allowed: u32,
    decision: BudgetDecision,
    /// Retries made, from `x-envoy-attempt-count`.
    made: u32,
}

impl Context for MeshkitHttp {}

impl HttpContext for MeshkitHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request = Headers(MapType::HttpRequestHeaders);
        // meshkit's headers only ever come from meshkit: nobody can send us an origin.
        request.strip_meshkit();
        self.request_id = request.header("x-request-id");
        if self.plugin.config.direction == Direction::Inbound {
            if let Some(id) = &self.request_id {
                // Request ids are the caller's; a reused one must not inherit an old cause.
                cause_table::forget(&SharedData, id);
            }
        }
        self.grpc_caller = request
            .header("content-type")
            .is_some_and(|ct| ct.starts_with(b"application/grpc"));
        for (field, value) in access_log::request_fields(&self.plugin.config, &request) {
            set_filter_state(field.property(), value.as_bytes());
        }
        if self.plugin.config.direction == Direction::Outbound {
            self.grant_retries(&request);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let plugin = self.plugin.clone();
        let config = &plugin.config;
        let response = Headers(MapType::HttpResponseHeaders);
        if config.direction == Direction::Inbound {
            // The app cannot speak for the mesh either: only this sidecar stamps.
            response.strip_meshkit();
        }
        let status = response
            .header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok())
            .unwrap_or(0);
        let grpc_status = response.header("grpc-status");
        let is_error = status >= 400 || grpc_status.as_deref().is_some_and(|s| s != b"0");
        let grpc_response = response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with(b"application/grpc"));
        // A gRPC response whose status is not in the headers carries it in trailers.
        let status_in_trailers = grpc_response && grpc_status.is_none() && !end_of_stream;

        // Before anything settles the grant: Envoy's own replies (e.g. after retrying connect
        // failures) carry the attempt count too, and those retries must be charged.
        if let Some(grant) = self.retry.as_mut() {
            grant.made =
                retry_control::retries_made(response.header("x-envoy-attempt-count").as_deref());
        }

        if let Some(mesh) = local_reply() {
            let report = self.finish(ResponseFacts {
                local_reply: Some(mesh),
                ..self.facts(true)
            });
            if let Some(report) = report {
                self.rewrite_local_reply(&response, report, status, end_of_stream);
            }
            return Action::Continue;
        }

        match config.direction {
            Direction::Outbound => {
                let propagated = propagation::read(&response);
                if propagated.is_none() && status_in_trailers {
                    self.pending = Pending::Trailers(Extracted::Absent);
                    return Action::Continue;
                }
                self.finish(ResponseFacts {
                    propagated,
                    ..self.facts(is_error)
                });
            }
            Direction::Inbound => {
                let errors = &config.errors;
                let extracted = extract::from_app(&response, errors);
                if status_in_trailers {
                    self.pending = Pending::Trailers(extracted);
                    return Action::Continue;
                }
                if extracted == Extracted::Absent {
                    let problem = response
                        .header("content-type")
                        .is_some_and(|ct| extract::is_problem_json(&ct));
                    if is_error
                        && problem
                        && errors.problem_json_max_body_bytes.is_some()
                        && !end_of_stream
                    {
                        self.pending = Pending::ProblemBody;
                        return Action::Pause;
                    }
                }
                if let Some(report) = self.finish(ResponseFacts {
                    extracted,
                    ..self.facts(is_error)
                }) {
                    stamp(&response, &report);
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::ReplaceBody(report, status) => {
                if !end_of_stream {
                    self.pending = Pending::ReplaceBody(report, status);
                    return Action::Pause;
                }
                let detail = read_body(body_size.min(local_reply::MAX_DETAIL_LEN));
                let detail = String::from_utf8_lossy(&detail);
                let request_id = self
                    .request_id
                    .as_deref()
                    .and_then(|id| std::str::from_utf8(id).ok());
                let body = local_reply::problem_json(&report, status, detail.trim(), request_id);
                if let Err(s) = hostcalls::set_buffer(
                    BufferType::HttpResponseBody,
                    0,
                    body_size,
                    body.as_bytes(),
                ) {
                    log::warn!("meshkit: cannot replace local reply body: {s:?}");
                }
                Action::Continue
            }
            Pending::ProblemBody => {
                let max = self
                    .plugin
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
                    self.pending = Pending::ProblemBody;
                    return Action::Pause;
                } else {
                    extract::from_problem_json(&read_body(body_size), max)
                };
                // Only error responses are held for their body.
                if let Some(report) = self.finish(ResponseFacts {
                    extracted,
                    ..self.facts(true)
                }) {
                    // Headers were held in on_http_response_headers, so they can still change.
                    stamp(&Headers(MapType::HttpResponseHeaders), &report);
                }
                Action::Continue
            }
            other => {
                self.pending = other;
                Action::Continue
            }
        }
    }

    /// Runs before Envoy writes the access log line. A request that never got a response
    /// through this filter (reset, or trailers that never came) still settles its retry grant.
    fn on_log(&mut self) {
        if let Some(grant) = self.retry.as_mut() {
            // No response headers came through (e.g. the caller went away mid-retry): the
            // stream info still knows how many attempts the router made.
            if let Some(bytes) = hostcalls::get_property(vec!["upstream", "request_attempt_count"])
                .ok()
                .flatten()
            {
                if let Some(word) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    let attempts = u64::from_le_bytes(word);
                    grant.made = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
                }
            }
            self.settle_retries(None);
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let trailers = Headers(MapType::HttpResponseTrailers);
        let inbound = self.plugin.config.direction == Direction::Inbound;
        if inbound {
            // Trailers can carry meshkit's headers too; the app may not set them there either.
            trailers.strip_meshkit();
        }
        let Pending::Trailers(from_headers) = std::mem::replace(&mut self.pending, Pending::None)
        else {
            return Action::Continue;
        };
        let is_error = trailers.header("grpc-status").is_some_and(|s| s != b"0");
        if inbound {
            let errors = &self.plugin.config.errors;
            let extracted = from_headers.or_else(|| extract::from_app(&trailers, errors));
            if let Some(report) = self.finish(ResponseFacts {
                extracted,
                ..self.facts(is_error)
            }) {
                stamp(&trailers, &report);
            }
        } else {
            self.finish(ResponseFacts {
                propagated: propagation::read(&trailers),
                ..self.facts(is_error)
            });
        }
        Action::Continue
    }
}

impl MeshkitHttp {
    /// The facts common to every response of this stream.
    fn facts(&self, is_error: bool) -> ResponseFacts {
        let config = &self.plugin.config;
        let upstream = match config.direction {
            Direction::Outbound => property_string(&["xds", "cluster_name"]),
            Direction::Inbound => None,
        };
        // Only an inbound error can use a remembered cause; skip the shared-data read otherwise.
        let remembered = match (config.direction, is_error, &self.request_id) {
            (Direction::Inbound, true, Some(id)) => cause_table::recall(&SharedData, id),
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

    /// Decides, then records: cause table (outbound), metrics, access log fields, and (outbound)
    /// settles the request's retry grant.
    fn finish(&mut self, facts: ResponseFacts) -> Option<ErrorReport> {
        let plugin = self.plugin.clone();
        let config = &plugin.config;
        let upstream = match config.direction {
            Direction::Inbound => "local_app".to_string(),
            Direction::Outbound => facts.upstream.clone().unwrap_or_else(|| "none".into()),
        };
        let report = decide(&plugin.catalog, facts).map(|mut r| {
            if config.direction == Direction::Inbound
                && config.retry_layers == RetryLayers::NearestHop
                && r.origin != config.service
            {
                // The failure started deeper and was retried next to where it happened.
                r.retryable = false;
            }
            r
        });
        if let Some(report) = &report {
            self.record(report, &upstream);
        }
        if config.direction == Direction::Outbound {
            self.settle_retries(report.as_ref());
        }
        report
    }

    fn record(&self, report: &ErrorReport, upstream: &str) {
        let config = &self.plugin.config;
        if config.direction == Direction::Outbound {
            if let (Some(code), Some(id)) = (&report.code, &self.request_id) {
                let cause = Cause {
                    origin: report.origin.clone(),
                    code: code.clone(),
                };
                cause_table::remember(&SharedData, id, &cause);
            }
        }
        if let Ok(mut metrics) = self.plugin.metrics.try_borrow_mut() {
            let name = metrics.cap.error_metric(
                &config.service,
                config.direction.as_str(),
                upstream,
                report,
            );
            metrics.increment(name);
        }
        for (field, value) in access_log::error_fields(report) {
            set_filter_state(field.property(), value.as_bytes());
        }
        if let Some(reason) = &report.malformed {
            log::debug!("meshkit: malformed error carrier: {reason}");
        }
    }

    /// Outbound, before the router: deposits this request into its upstream's budget and tells
    /// the router how many retries it may make (`x-envoy-max-retries`).
    fn grant_retries(&mut self, request: &Headers) {
        let plugin = self.plugin.clone();
        let route = property_string(&["xds", "route_name"])
            .and_then(|name| plugin.config.retries.routes.get(&name).cloned());
        let Some(RouteRetry {
            upstream,
            num_retries,
        }) = route
        else {
            return;
        };
        // (retries reserved for this request, retries the budget affords after that)
        let reservation = plugin.budgets.get(&upstream).map(|budget| {
            let now = now_ms();
            let key = budget_key(&plugin.config.service, &upstream);
            match retry_budget::update(&SharedData, &key, |w| w.grant(budget, now, num_retries)) {
                Some((mut window, granted)) => (granted, window.available(budget, now)),
                // The shared store kept refusing: err on the side of not retrying.
                None => (0, 0),
            }
        });
        let affordable = reservation.map(|(granted, _)| granted);
        let (allowed, decision) = retry_control::allowance(num_retries, affordable);
        request.set("x-envoy-max-retries", &allowed.to_string());
        if let Ok(mut m) = plugin.metrics.try_borrow_mut() {
            let service = &plugin.config.service;
            m.increment(metrics::retry_metric("requests", service, &upstream));
            if let Some((_, left)) = reservation {
                m.gauge(
                    metrics::retry_metric("budget_remaining", service, &upstream),
                    u64::from(left),
                );
            }
        }
        self.retry = Some(RetryGrant {
            upstream,
            allowed,
            decision,
            made: 0,
        });
    }

    /// Outbound, once the outcome is known: charges the budget for the retries made, and
    /// records whether the budget denied a retry this request needed.
    fn settle_retries(&mut self, report: Option<&ErrorReport>) {
        let Some(grant) = self.retry.take() else {
            return;
        };
        let plugin = self.plugin.clone();
        let service = &plugin.config.service;
        // The router never exceeds x-envoy-max-retries; capping keeps the accounting exact.
        let made = grant.made.min(grant.allowed);
        let unused = grant.allowed - made;
        if let (Some(budget), true) = (plugin.budgets.get(&grant.upstream), unused > 0) {
            let now = now_ms();
            let key = budget_key(service, &grant.upstream);
            if retry_budget::update(&SharedData, &key, |w| w.refund(budget, now, unused)).is_none()
            {
                log::warn!("meshkit: could not refund retry budget {key}");
            }
        }
        let retryable_failure = report.is_some_and(|r| r.retryable);
        let decision =
            retry_control::settle(grant.decision, grant.allowed, made, retryable_failure);
        if let Ok(mut m) = plugin.metrics.try_borrow_mut() {
            m.add(
                metrics::retry_metric("retries", service, &grant.upstream),
                u64::from(made),
            );
            if decision == BudgetDecision::Denied {
                m.increment(metrics::retry_metric("denied", service, &grant.upstream));
            }
        }
        set_filter_state(
            access_log::FilterField::RetryAllowed.property(),
            grant.allowed.to_string().as_bytes(),
        );
        set_filter_state(
            access_log::FilterField::RetryBudget.property(),
            decision.as_str().as_bytes(),
        );
        if decision == BudgetDecision::Denied {
            // The failure goes back as-is; the log says why it was not retried.
            if let Some(r) = report {
                let cause = r.code.as_ref().map(|code| format!("{}:{code}", r.origin));
                set_filter_state(
                    access_log::FilterField::ErrorCode.property(),
                    MeshCode::RetryBudgetExhausted.name().as_bytes(),
                );
                set_filter_state(
                    access_log::FilterField::ErrorOrigin.property(),
                    service.as_bytes(),
                );
                if let Some(cause) = cause {
                    set_filter_state(
                        access_log::FilterField::ErrorCause.property(),
                        cause.as_bytes(),
                    );
                }
            }
        }
    }

    /// Makes an Envoy-generated failure uniform, per the listener's `local_replies` setting.
    fn rewrite_local_reply(
        &mut self,
        response: &Headers,
        report: ErrorReport,
        status: u16,
        end_of_stream: bool,
    ) {
        let mode = self.plugin.config.local_replies;
        if mode == LocalReplies::Off {
            return;
        }
        stamp(response, &report);
        if mode != LocalReplies::HeadersAndBody {
            return;
        }
        if self.grpc_caller {
            for (name, value) in local_reply::grpc_headers(&report, &self.plugin.catalog) {
                response.set(name, &value);
            }
        } else if !end_of_stream {
            response.set("content-type", "application/problem+json");
            response.remove("content-length");
            self.pending = Pending::ReplaceBody(report, status);
        }
    }
}

/// One shared-data key per (service, upstream) budget: a fixed set, so memory is bounded.
fn budget_key(service: &str, upstream: &str) -> String {
    format!("meshkit.budget.{service}.{upstream}")
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The mesh code when Envoy generated this response itself (not `via_upstream`).
fn local_reply() -> Option<MeshCode> {
    let details = property_string(&["response", "code_details"])?;
    if details == "via_upstream" {
        return None;
    }
    let flags = hostcalls::get_property(vec!["response", "flags"])
        .ok()
        .flatten()?;
    let bytes: [u8; 8] = flags.get(..8)?.try_into().ok()?;
    MeshCode::from_response_flags(u64::from_le_bytes(bytes))
}

fn property_string(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Up to `len` bytes of the buffered response body.
fn read_body(len: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, len)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn stamp(headers: &Headers, report: &ErrorReport) {
    for (name, value) in propagation::stamp(report) {
        headers.set(name, &value);
    }
}

/// A header map of the current stream, read and written through the host.
struct Headers(MapType);

impl Headers {
    fn set(&self, name: &str, value: &str) {
        if let Err(s) = hostcalls::set_map_value(self.0, name, Some(value)) {
            log::warn!("meshkit: cannot set {name}: {s:?}");
        }
    }

    fn remove(&self, name: &str) {
        let _ = hostcalls::set_map_value(self.0, name, None);
    }

    /// Removes every meshkit header: only a meshkit sidecar may set them.
    fn strip_meshkit(&self) {
        for name in propagation::ALL {
            self.remove(name);
        }
    }
}

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(self.0, name).ok().flatten()
    }
}

/// proxy-wasm shared data: one store per VM id, shared by every worker and both listeners.
struct SharedData;

impl CasStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), bool> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(proxy_wasm::types::Status::CasMismatch) => Err(true),
            Err(_) => Err(false),
        }
    }
}

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key)
            .ok()
            .and_then(|(value, _cas)| value)
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(s) = hostcalls::set_shared_data(key, Some(value), None) {
            log::warn!("meshkit: cannot write shared data {key}: {s:?}");
        }
    }
}

/// Writes one filter-state property; a host refusal is logged, never fatal to the request.
fn set_filter_state(property: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![property], Some(value)) {
        log::warn!("meshkit: cannot set filter state {property}: {status:?}");
    }
}
