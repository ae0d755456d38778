//! Every per-stream path, driven the way Envoy drives it, against a fake host that also checks
//! the rule for writable header maps (a write Envoy would refuse panics the VM in production).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::*;
use crate::core::config::PluginConfig;
use crate::core::error_code::flags;
use crate::core::metrics::CardinalityCap;
use crate::core::shared_data::testing::MemStore;
use crate::core::shared_data::{CasStore, SetError};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// One sidecar's shared data, seen by all its streams (both listeners, every worker).
type Shared = Rc<MemStore>;

struct FakeHost {
    maps: HashMap<Map, Vec<(String, Vec<u8>)>>,
    /// Maps Envoy lends (for reads and writes) in the current callback.
    writable: Vec<Map>,
    properties: HashMap<Property, Vec<u8>>,
    /// Property and header reads so far (each one a hostcall in Envoy).
    property_reads: std::cell::Cell<usize>,
    header_reads: std::cell::Cell<usize>,
    body: Vec<u8>,
    log: BTreeMap<&'static str, String>,
    now: u64,
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, u64>,
    cap: Rc<RefCell<CardinalityCap>>,
    store: Shared,
    /// Every hostcall, in order (each one paid per request in Envoy).
    calls: RefCell<Vec<String>>,
}

impl FakeHost {
    fn new(store: &Shared) -> FakeHost {
        FakeHost {
            maps: HashMap::new(),
            writable: Vec::new(),
            properties: HashMap::new(),
            property_reads: std::cell::Cell::new(0),
            header_reads: std::cell::Cell::new(0),
            body: Vec::new(),
            log: BTreeMap::new(),
            now: 1_000_000,
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            cap: Rc::new(RefCell::new(CardinalityCap::new(32))),
            store: store.clone(),
            calls: RefCell::new(Vec::new()),
        }
    }

    fn call(&self, what: String) {
        self.calls.borrow_mut().push(what);
    }

    fn put(&mut self, map: Map, name: &str, value: &str) {
        let m = self.maps.entry(map).or_default();
        m.retain(|(n, _)| n != name);
        m.push((name.to_string(), value.as_bytes().to_vec()));
    }

    /// What a map holds now (the test's view; the stream reads through `Host::header`).
    fn get(&self, map: Map, name: &str) -> Option<String> {
        self.maps
            .get(&map)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn log(&self, field: FilterField) -> Option<&str> {
        self.log.get(field.property()).map(String::as_str)
    }

    fn counter_value(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn set_u64(&mut self, property: Property, value: u64) {
        self.properties
            .insert(property, value.to_le_bytes().to_vec());
    }
}

impl CasStore for FakeHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.call(format!("get_shared_data {key}"));
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        self.call(format!("set_shared_data {key}"));
        self.store.set(key, value, cas)
    }
}

impl Host for FakeHost {
    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        // Envoy only lends a map during its callback (or while it is held); proxy-wasm panics
        // on a read Envoy refuses, just as on a write.
        assert!(
            self.writable.contains(&map),
            "read of {map:?} ({name}) now would panic the VM"
        );
        self.header_reads.set(self.header_reads.get() + 1);
        self.call(format!("get_header {map:?} {name}"));
        self.maps
            .get(&map)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn set_header(&mut self, map: Map, name: &str, value: &str) {
        assert!(
            self.writable.contains(&map),
            "write to {map:?} ({name}) now would panic the VM"
        );
        self.call(format!("set_header {map:?} {name}"));
        self.put(map, name, value);
    }
    fn remove_header(&mut self, map: Map, name: &str) {
        assert!(
            self.writable.contains(&map),
            "remove from {map:?} ({name}) now would panic the VM"
        );
        self.call(format!("remove_header {map:?} {name}"));
        if let Some(m) = self.maps.get_mut(&map) {
            m.retain(|(n, _)| n != name);
        }
    }
    fn property(&self, property: Property) -> Option<Vec<u8>> {
        self.property_reads.set(self.property_reads.get() + 1);
        self.call(format!("get_property {property:?}"));
        self.properties.get(&property).cloned()
    }
    fn response_body(&self, len: usize) -> Vec<u8> {
        self.body[..len.min(self.body.len())].to_vec()
    }
    fn replace_response_body(&mut self, len: usize, body: &[u8]) {
        let len = len.min(self.body.len());
        self.body.splice(..len, body.iter().copied());
    }
    fn set_log_field(&mut self, field: FilterField, value: &str) {
        self.call(format!("set_property {}", field.property()));
        self.log.insert(field.property(), value.to_string());
    }
    fn now_ms(&self) -> u64 {
        self.call("get_current_time".into());
        self.now
    }
    fn counter(&mut self, name: &str, n: u64) {
        self.call(format!("increment_metric {name}"));
        *self.counters.entry(name.to_string()).or_default() += n;
    }
    fn gauge(&mut self, name: &str, value: u64) {
        self.call(format!("record_metric {name}"));
        self.gauges.insert(name.to_string(), value);
    }
    fn with_cap<R>(&mut self, f: impl FnOnce(&mut CardinalityCap) -> R) -> R {
        f(&mut self.cap.borrow_mut())
    }
    fn debug(&self, _message: &str) {}
}

const CATALOG: &str = r#"[
    {"code":"CM503001","http_status":503,"grpc_status":"UNAVAILABLE","retryable":true,"message":"down"},
    {"code":"CM404001","http_status":404,"grpc_status":"NOT_FOUND","retryable":false,"message":"gone"}
]"#;

fn plugin(direction: &str, extra: &str) -> Plugin {
    let json = format!(
        r#"{{"service":"recipes","direction":"{direction}",
            "errors":{{"problem_json_max_body_bytes":4096,"catalog":{CATALOG}}},
            "cause_table":{{"buckets":16,"max_age_ms":15000}}{extra}}}"#
    );
    let plugin = Plugin::new(PluginConfig::parse(json.as_bytes()).unwrap());
    plugin
}

/// recipes → users: GET and HEAD retried twice on connect failures and marked errors, with a
/// budget of 20 % + 1 retry/s over 10 s.
fn outbound() -> Plugin {
    plugin(
        "outbound",
        r#","retries":{
            "routes":{"users/0":{"upstream":"users","num_retries":2,"methods":["GET","HEAD"],
                                 "retry_on":["connect-failure","reset"],"timeout_ms":5000}},
            "budgets":{"users":{"retry_ratio":0.2,"min_retries_per_second":1,"ttl_ms":10000}}}"#,
    )
}

fn outbound_without_budget() -> Plugin {
    plugin(
        "outbound",
        r#","retries":{"routes":{"users/0":{"upstream":"users","num_retries":2,"methods":["GET"],
            "retry_on":["connect-failure"],"timeout_ms":5000}}}"#,
    )
}

fn inbound() -> Plugin {
    plugin("inbound", "")
}

/// Drives one stream through `plugin`, Envoy-style.
struct Run<'p> {
    plugin: &'p Plugin,
    stream: Stream,
    host: FakeHost,
    held_headers: bool,
}

impl<'p> Run<'p> {
    fn new(plugin: &'p Plugin, store: &Shared, request: &[(&str, &str)]) -> Run<'p> {
        let mut host = FakeHost::new(store);
        host.put(Map::RequestHeaders, "x-request-id", "req-1");
        host.put(Map::RequestHeaders, ":method", "GET");
        for (k, v) in request {
            host.put(Map::RequestHeaders, k, v);
        }
        host.properties
            .insert(Property::RouteName, b"users/0".to_vec());
        host.properties
            .insert(Property::ClusterName, b"users".to_vec());
        Run {
            plugin,
            stream: Stream::new(),
            host,
            held_headers: false,
        }
    }

    fn request(&mut self) -> &mut Self {
        self.host.writable = vec![Map::RequestHeaders];
        assert_eq!(
            self.stream.on_request_headers(self.plugin, &mut self.host),
            Action::Continue
        );
        self
    }

    /// A response from the upstream (`via_upstream`), after `attempts` attempts.
    fn upstream_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        attempts: Option<u32>,
        end: bool,
    ) -> Action {
        self.host
            .properties
            .insert(Property::ResponseCodeDetails, b"via_upstream".to_vec());
        self.response(status, headers, attempts, end)
    }

    /// A reply Envoy made itself, with these response flags.
    fn local_reply(
        &mut self,
        status: u16,
        flags: u64,
        attempts: Option<u32>,
        body: &str,
    ) -> Action {
        self.host.properties.insert(
            Property::ResponseCodeDetails,
            b"upstream_reset_before_response_started{connection_failure}".to_vec(),
        );
        self.host.set_u64(Property::ResponseFlags, flags);
        self.host.body = body.as_bytes().to_vec();
        let headers = [("content-type", "text/plain")];
        let action = self.response(status, &headers, attempts, body.is_empty());
        if !body.is_empty() {
            self.body(true);
        }
        action
    }

    fn response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        attempts: Option<u32>,
        end: bool,
    ) -> Action {
        self.host
            .put(Map::ResponseHeaders, ":status", &status.to_string());
        if let Some(n) = attempts {
            self.host.put(
                Map::ResponseHeaders,
                "x-envoy-attempt-count",
                &n.to_string(),
            );
        }
        for (k, v) in headers {
            self.host.put(Map::ResponseHeaders, k, v);
        }
        self.host.writable = vec![Map::ResponseHeaders];
        let action = self
            .stream
            .on_response_headers(self.plugin, &mut self.host, end);
        self.held_headers = action == Action::Pause;
        action
    }

    fn body(&mut self, end: bool) -> Action {
        self.host.writable = if self.held_headers {
            vec![Map::ResponseHeaders]
        } else {
            vec![]
        };
        let size = self.host.body.len();
        let action = self
            .stream
            .on_response_body(self.plugin, &mut self.host, size, end);
        if action == Action::Continue {
            self.held_headers = false;
        }
        action
    }

    fn trailers(&mut self, trailers: &[(&str, &str)]) {
        for (k, v) in trailers {
            self.host.put(Map::ResponseTrailers, k, v);
        }
        self.host.writable = vec![Map::ResponseTrailers];
        self.stream
            .on_response_trailers(self.plugin, &mut self.host);
    }

    fn log(&mut self) -> &FakeHost {
        self.host.writable = vec![];
        self.stream.on_log(self.plugin, &mut self.host);
        &self.host
    }
}

fn budget_available(store: &Shared, plugin: &Plugin, now: u64) -> u32 {
    let shared = &plugin.budgets["users"];
    shared.view(&**store, now).available(&shared.budget, now)
}

const RETRYABLE_ERROR: [(&str, &str); 3] = [
    ("x-meshkit-error-code", "CM503001"),
    ("x-meshkit-error-origin", "users"),
    ("x-meshkit-error-retryable", "true"),
];

#[test]
fn grpc_web_is_not_grpc() {
    assert!(is_grpc(b"application/grpc"));
    assert!(is_grpc(b"application/grpc+proto"));
    assert!(!is_grpc(b"application/grpc-web"));
    assert!(!is_grpc(b"application/grpc-web+proto"));
    assert!(!is_grpc(b"application/grpc;charset=utf-8"));
    assert!(!is_grpc(b"Application/grpc"));
}

#[test]
fn a_get_is_granted_its_retries_and_settles_at_response_headers() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    assert_eq!(
        run.host
            .get(Map::RequestHeaders, "x-envoy-max-retries")
            .as_deref(),
        Some("2")
    );
    let before = budget_available(&store, &p, run.host.now);
    // A long gRPC stream: headers now, trailers much later. The hold is released at headers.
    run.upstream_response(200, &[("content-type", "application/grpc")], Some(2), false);
    assert_eq!(
        budget_available(&store, &p, run.host.now),
        before + 2 - 1,
        "hold back, one retry spent"
    );
    run.host.now += 60_000;
    run.trailers(&[("grpc-status", "0")]);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("full"));
    assert_eq!(host.log(FilterField::RetryAllowed), Some("2"));
    assert_eq!(host.counter_value("meshkit.retry.retries.recipes.users"), 1);
}

#[test]
fn successes_write_the_budget_once_per_lease_and_a_retry_made_at_once() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let version = || store.data.borrow()["meshkit.budget.recipes.users"].1;
    let created = version();
    for _ in 0..3 {
        let mut run = Run::new(&p, &store, &[]);
        run.request();
        run.upstream_response(200, &[("content-type", "text/plain")], Some(1), true);
        run.log();
        // The first grant writes and takes a lease; the others grant from it, and each hold
        // goes back to it.
        assert_eq!(version(), created + 1);
    }
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    assert_eq!(version(), created + 1);
    run.upstream_response(200, &[("content-type", "text/plain")], Some(2), true);
    assert_eq!(version(), created + 2, "a retry made is charged at once");
}

#[test]
fn a_success_granted_from_the_lease_makes_these_hostcalls() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    Run::new(&p, &store, &[]).request(); // takes the lease
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.upstream_response(200, &[("content-type", "text/plain")], Some(1), true);
    let host = run.log();
    assert_eq!(
        hostcalls(host),
        [
            "get_header RequestHeaders x-request-id",
            "get_header RequestHeaders traceparent",
            "get_property RouteName",
            "get_header RequestHeaders :method",
            "get_current_time",
            // No shared data, no gauge: the grant came from this worker's lease.
            "set_header RequestHeaders x-envoy-max-retries",
            "increment_metric meshkit.retry.requests.recipes.users",
            "get_header ResponseHeaders :status",
            "get_header ResponseHeaders content-type",
            "get_header ResponseHeaders x-envoy-attempt-count",
            // (The fake host records a counter of 0; the real one skips it.)
            "increment_metric meshkit.retry.retries.recipes.users",
            "set_property meshkit.retry.allowed",
            "set_property meshkit.retry.budget",
        ]
    );
}

#[test]
fn a_post_the_route_never_retries_holds_nothing_and_is_never_denied() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let before = budget_available(&store, &p, 1_000_000);
    let mut run = Run::new(&p, &store, &[(":method", "POST")]);
    run.request();
    assert_eq!(
        run.host.get(Map::RequestHeaders, "x-envoy-max-retries"),
        None
    );
    assert_eq!(
        budget_available(&store, &p, run.host.now),
        before,
        "deposit only, no hold"
    );
    run.upstream_response(503, &RETRYABLE_ERROR, Some(1), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("not_retriable"));
    // The route's num_retries never reaches the log for a method it does not retry.
    assert_eq!(host.log(FilterField::RetryAllowed), Some("0"));
    assert_eq!(host.log(FilterField::ErrorCode), Some("CM503001"));
    assert_eq!(
        host.log(FilterField::ErrorRetryable),
        Some("true"),
        "this hop did not retry: the app may"
    );
    assert_eq!(
        host.get(Map::ResponseHeaders, "x-meshkit-error-retryable")
            .as_deref(),
        Some("true")
    );
    assert_eq!(host.counter_value("meshkit.retry.denied.recipes.users"), 0);
}

#[test]
fn a_denied_retry_is_logged_consistently_and_the_app_is_told_not_to_retry() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    // Use up the reserve (10 retries) with requests still in flight.
    let mut holders: Vec<Run> = (0..5)
        .map(|_| {
            let mut r = Run::new(&p, &store, &[]);
            r.request();
            r
        })
        .collect();
    assert_eq!(
        budget_available(&store, &p, 1_000_000),
        1,
        "11 + 5 × 0.2 − 10 held"
    );
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    assert_eq!(
        run.host
            .get(Map::RequestHeaders, "x-envoy-max-retries")
            .as_deref(),
        Some("1")
    );
    run.upstream_response(503, &RETRYABLE_ERROR, Some(2), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("denied"));
    // The error is the upstream's, as the app received it; the budget field says why it was
    // not retried further. No field contradicts another.
    assert_eq!(host.log(FilterField::ErrorCode), Some("CM503001"));
    assert_eq!(host.log(FilterField::ErrorOrigin), Some("users"));
    assert_eq!(host.log(FilterField::ErrorClassification), Some("catalog"));
    assert_eq!(host.log(FilterField::ErrorRetryable), Some("false"));
    assert_eq!(
        host.get(Map::ResponseHeaders, "x-meshkit-error-retryable")
            .as_deref(),
        Some("false")
    );
    assert_eq!(host.counter_value("meshkit.retry.denied.recipes.users"), 1);
    for h in holders.iter_mut() {
        h.upstream_response(200, &[], Some(1), true);
        assert_eq!(h.log().log(FilterField::RetryBudget), Some("full"));
    }
}

#[test]
fn errors_in_trailers_are_not_denials() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    for _ in 0..5 {
        Run::new(&p, &store, &[]).request(); // never settle: they hold the reserve
    }
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.upstream_response(200, &[("content-type", "application/grpc")], Some(2), false);
    run.trailers(&[
        ("grpc-status", "14"),
        ("x-meshkit-error-code", "CM503001"),
        ("x-meshkit-error-origin", "users"),
        ("x-meshkit-error-retryable", "true"),
    ]);
    let host = run.log();
    assert_eq!(host.log(FilterField::ErrorCode), Some("CM503001"));
    assert_eq!(
        host.log(FilterField::RetryBudget),
        Some("capped"),
        "the router never saw it"
    );
}

#[test]
fn a_failed_grant_holds_nothing_and_is_not_a_denial() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    store
        .conflicts
        .set(crate::core::shared_data::MAX_CAS_ATTEMPTS);
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    assert_eq!(
        run.host
            .get(Map::RequestHeaders, "x-envoy-max-retries")
            .as_deref(),
        Some("0")
    );
    run.upstream_response(503, &RETRYABLE_ERROR, Some(1), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("unavailable"));
    assert_eq!(host.counter_value("meshkit.retry.denied.recipes.users"), 0);
}

#[test]
fn a_retry_refused_by_the_circuit_breaker_is_overflow_not_full() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host
        .set_u64(Property::ResponseFlags, flags::UPSTREAM_OVERFLOW);
    run.upstream_response(503, &RETRYABLE_ERROR, Some(1), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("overflow"));
    assert_eq!(
        host.counter_value("meshkit.retry.overflow.recipes.users"),
        1
    );
    assert_eq!(
        host.log(FilterField::ErrorCode),
        Some("CM503001"),
        "the app's error stays"
    );
}

#[test]
fn without_a_budget_retries_are_still_counted_and_the_app_not_told_to_retry() {
    let store = Shared::default();
    let p = outbound_without_budget();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    assert_eq!(
        run.host
            .get(Map::RequestHeaders, "x-envoy-max-retries")
            .as_deref(),
        Some("2")
    );
    run.upstream_response(503, &RETRYABLE_ERROR, Some(3), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("off"));
    assert_eq!(host.log(FilterField::ErrorRetryable), Some("false"));
    assert_eq!(host.counter_value("meshkit.retry.retries.recipes.users"), 2);
}

#[test]
fn a_missing_attempt_count_header_falls_back_to_the_stream_info() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host.set_u64(Property::RequestAttemptCount, 3);
    run.upstream_response(200, &[], None, true);
    assert_eq!(
        run.log()
            .counter_value("meshkit.retry.retries.recipes.users"),
        2
    );
    // And a stream reset before any response settles in on_log.
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host.set_u64(Property::RequestAttemptCount, 2);
    let host = run.log();
    assert_eq!(host.counter_value("meshkit.retry.retries.recipes.users"), 1);
    assert_eq!(host.log(FilterField::RetryBudget), Some("full"));
}

#[test]
fn connect_failures_after_retries_are_mesh_codes_blamed_on_the_upstream() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.local_reply(
        503,
        flags::UPSTREAM_CONNECTION_FAILURE | flags::UPSTREAM_RETRY_LIMIT_EXCEEDED,
        Some(3),
        "upstream connect error",
    );
    let host = run.log();
    assert_eq!(
        host.log(FilterField::ErrorCode),
        Some("MESH_UPSTREAM_CONNECT_FAILURE")
    );
    assert_eq!(host.log(FilterField::ErrorOrigin), Some("users"));
    assert_eq!(
        host.log(FilterField::ErrorRetryable),
        Some("false"),
        "this hop retried"
    );
    assert_eq!(host.log(FilterField::RetryBudget), Some("full"));
    assert!(
        String::from_utf8_lossy(&host.body).contains("\"code\":\"MESH_UPSTREAM_CONNECT_FAILURE\"")
    );
}

#[test]
fn the_cause_chain_goes_through_the_shared_table_and_only_to_its_own_request() {
    let store = Shared::default();
    let (out, inb) = (outbound(), inbound());
    out.create_shared_keys(store.as_ref(), 0).unwrap();
    inb.create_shared_keys(store.as_ref(), 0).unwrap();
    // recipes inbound receives req-1 …
    let mut incoming = Run::new(&inb, &store, &[]);
    incoming.request();
    // … its app calls users, which fails (and is not retried: POST) …
    let mut call = Run::new(&out, &store, &[(":method", "POST")]);
    call.host.now += 5;
    call.request();
    call.upstream_response(503, &RETRYABLE_ERROR, Some(1), true);
    call.log();
    // … and the app answers a plain 500: the inbound sidecar reports the upstream failure.
    incoming.host.now += 10;
    incoming.upstream_response(500, &[], None, true);
    let host = incoming.log();
    assert_eq!(host.log(FilterField::ErrorCode), Some("CM503001"));
    assert_eq!(host.log(FilterField::ErrorOrigin), Some("users"));
    assert_eq!(host.log(FilterField::ErrorSource), Some("cause"));
    assert_eq!(
        host.get(Map::ResponseHeaders, "x-meshkit-error-cause")
            .as_deref(),
        Some("users:CM503001")
    );
    // A later request reusing the id does not inherit it (taken out, and too old anyway).
    let mut again = Run::new(&inb, &store, &[]);
    again.host.now += 20;
    again.request();
    again.upstream_response(500, &[], None, true);
    assert_eq!(again.log().log(FilterField::ErrorCode), None);
}

#[test]
fn an_unnamed_envoy_reply_on_inbound_is_the_meshs_not_a_remembered_cause() {
    let store = Shared::default();
    let (out, inb) = (outbound(), inbound());
    inb.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut incoming = Run::new(&inb, &store, &[]);
    incoming.request();
    let mut call = Run::new(&out, &store, &[(":method", "POST")]);
    call.request();
    call.upstream_response(503, &RETRYABLE_ERROR, Some(1), true);
    // Envoy answers 408 itself with no flag meshkit names.
    incoming.local_reply(408, 0, None, "");
    let host = incoming.log();
    assert_eq!(host.log(FilterField::ErrorCode), Some("MESH_LOCAL_REPLY"));
    assert_eq!(host.log(FilterField::ErrorOrigin), Some("recipes"));
    assert_eq!(
        host.log(FilterField::ErrorCause),
        Some("users:CM503001"),
        "kept as the cause"
    );
}

#[test]
fn an_unnamed_envoy_grpc_reply_is_the_meshs() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[("content-type", "application/grpc")]);
    run.request();
    run.host.properties.insert(
        Property::ResponseCodeDetails,
        b"request_payload_too_large".to_vec(),
    );
    run.host.set_u64(Property::ResponseFlags, 0);
    run.response(
        200,
        &[("content-type", "application/grpc"), ("grpc-status", "8")],
        None,
        true,
    );
    let host = run.log();
    assert_eq!(host.log(FilterField::ErrorCode), Some("MESH_LOCAL_REPLY"));
    assert_eq!(host.log(FilterField::ErrorSource), Some("local_reply"));
}

#[test]
fn the_app_cannot_stamp_meshkit_trailers() {
    // (Request and response headers are stripped by the generated route config, natively.)
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[("content-type", "application/grpc")]);
    run.request();
    run.upstream_response(200, &[("content-type", "application/grpc")], None, false);
    run.trailers(&[("grpc-status", "0"), ("x-meshkit-error-origin", "forged")]);
    assert_eq!(
        run.host
            .get(Map::ResponseTrailers, "x-meshkit-error-origin"),
        None
    );
}

#[test]
fn a_success_reads_no_property_and_touches_no_shared_data() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.upstream_response(200, &[("content-type", "text/plain")], None, true);
    let host = run.log();
    assert_eq!(host.property_reads.get(), 0);
    assert_eq!(
        host.header_reads.get(),
        4,
        "x-request-id, traceparent; :status, content-type: nothing else"
    );
    assert!(store.data.borrow().is_empty());
    assert!(host.log.is_empty(), "{:?}", host.log);
    assert!(host.counters.is_empty());
}

#[test]
fn a_problem_json_body_is_read_and_stamped_while_the_headers_are_held() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host.body = br#"{"type":"x","code":"CM404001","detail":"no such user"}"#.to_vec();
    let a = run.upstream_response(
        404,
        &[("content-type", "application/problem+json")],
        None,
        false,
    );
    assert_eq!(a, Action::Pause);
    assert_eq!(run.body(true), Action::Continue);
    assert_eq!(
        run.host
            .get(Map::ResponseHeaders, "x-meshkit-error-code")
            .as_deref(),
        Some("CM404001")
    );
    assert_eq!(
        run.log().log(FilterField::ErrorSource),
        Some("problem_json")
    );
}

#[test]
fn a_problem_json_body_followed_by_trailers_is_still_reported() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host.body = br#"{"code":"CM404001"}"#.to_vec();
    run.upstream_response(
        404,
        &[("content-type", "application/problem+json")],
        None,
        false,
    );
    assert_eq!(run.body(false), Action::Pause);
    run.trailers(&[("x-checksum", "1")]);
    assert_eq!(
        run.host
            .get(Map::ResponseTrailers, "x-meshkit-error-code")
            .as_deref(),
        Some("CM404001")
    );
    assert_eq!(run.log().log(FilterField::ErrorCode), Some("CM404001"));
}

#[test]
fn a_problem_json_body_that_never_completes_is_logged_as_malformed() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host.body = br#"{"code":"CM4"#.to_vec();
    run.upstream_response(
        503,
        &[("content-type", "application/problem+json")],
        None,
        false,
    );
    assert_eq!(run.body(false), Action::Pause);
    let host = run.log();
    assert_eq!(
        host.log(FilterField::ErrorClassification),
        Some("malformed")
    );
    assert_eq!(
        host.counters
            .keys()
            .filter(|k| k.starts_with("meshkit.errors."))
            .count(),
        1
    );
}

#[test]
fn grpc_status_in_trailers_is_decided_with_the_trailers() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[("content-type", "application/grpc")]);
    run.request();
    run.upstream_response(200, &[("content-type", "application/grpc")], None, false);
    run.trailers(&[("grpc-status", "14"), ("x-app-error-code", "CM503001")]);
    assert_eq!(
        run.host
            .get(Map::ResponseTrailers, "x-meshkit-error-code")
            .as_deref(),
        Some("CM503001")
    );
    assert_eq!(
        run.log().log(FilterField::ErrorRetryable),
        Some("true"),
        "recipes is the origin"
    );
}

#[test]
fn nearest_hop_marks_deeper_failures_not_retryable() {
    let store = Shared::default();
    let p = inbound();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.upstream_response(503, &[("x-app-error-code", "CM503001")], None, true);
    assert_eq!(
        run.host
            .get(Map::ResponseHeaders, "x-meshkit-error-retryable")
            .as_deref(),
        Some("true")
    );
}

#[test]
fn an_app_that_pushes_back_is_not_retried() {
    let store = Shared::default();
    let p = inbound();
    let retryable = |run: &Run| {
        run.host
            .get(Map::ResponseHeaders, "x-meshkit-error-retryable")
            .or_else(|| {
                run.host
                    .get(Map::ResponseTrailers, "x-meshkit-error-retryable")
            })
    };
    for (status, headers, expected) in [
        (503, vec![("retry-after", "5")], "false"),
        (503, vec![("retry-after", "0")], "true"),
        (503, vec![("grpc-retry-pushback-ms", "-1")], "false"),
        (500, vec![("retry-after", "5")], "true"),
    ] {
        let mut run = Run::new(&p, &store, &[]);
        run.request();
        let mut all = vec![("x-app-error-code", "CM503001")];
        all.extend(headers.iter().copied());
        run.upstream_response(status, &all, None, true);
        assert_eq!(
            retryable(&run).as_deref(),
            Some(expected),
            "{status} {headers:?}"
        );
        let host = run.log();
        assert_eq!(host.log(FilterField::ErrorRetryable), Some(expected));
    }
    // gRPC: status, code and pushback arrive in trailers.
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.upstream_response(200, &[("content-type", "application/grpc")], None, false);
    run.trailers(&[
        ("grpc-status", "14"),
        ("x-app-error-code", "CM503001"),
        ("grpc-retry-pushback-ms", "-1"),
    ]);
    assert_eq!(retryable(&run).as_deref(), Some("false"));
}

/// The hostcalls of one error response, in order: each is paid on every failing request, so
/// one more fails here first (and `scripts/bench.sh` measures what they cost).
fn hostcalls(host: &FakeHost) -> Vec<String> {
    host.calls.borrow().clone()
}

#[test]
fn an_inbound_error_with_a_code_that_is_not_retried_makes_these_hostcalls() {
    let store = Shared::default();
    let p = inbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    let headers = [
        ("content-type", "text/plain"),
        ("x-app-error-code", "CM404001"),
    ];
    run.upstream_response(404, &headers, None, true);
    let host = run.log();
    assert_eq!(
        hostcalls(host),
        [
            "get_header RequestHeaders x-request-id",
            "get_header RequestHeaders traceparent",
            "get_current_time",
            "get_header ResponseHeaders :status",
            "get_header ResponseHeaders content-type",
            // Why: the app's answer (its flags are not needed).
            "get_property ResponseCodeDetails",
            // No pushback headers: the catalog never retries this code.
            "get_header ResponseHeaders x-app-error-code",
            "get_current_time",
            "get_shared_data meshkit.cause.1",
            "increment_metric meshkit.errors.recipes.inbound.local_app.recipes.catalog.CM404001",
            "set_property meshkit.error.origin",
            "set_property meshkit.error.retryable",
            "set_property meshkit.error.classification",
            "set_property meshkit.error.source",
            "set_property meshkit.error.code",
            "set_header ResponseHeaders x-meshkit-error-code",
            "set_header ResponseHeaders x-meshkit-error-origin",
            "set_header ResponseHeaders x-meshkit-error-retryable",
        ]
    );
}

#[test]
fn an_outbound_error_on_a_route_without_retries_makes_these_hostcalls() {
    let store = Shared::default();
    let p = plugin("outbound", "");
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    let propagated = [
        ("x-meshkit-error-code", "CM404001"),
        ("x-meshkit-error-origin", "users"),
        ("x-meshkit-error-retryable", "false"),
    ];
    run.upstream_response(404, &propagated, None, true);
    let host = run.log();
    assert_eq!(
        hostcalls(host),
        [
            "get_header RequestHeaders x-request-id",
            "get_header RequestHeaders traceparent",
            // (No retry policies on this listener: the route is never asked for.)
            "get_header ResponseHeaders :status",
            "get_header ResponseHeaders content-type",
            "get_property ResponseCodeDetails",
            "get_header ResponseHeaders x-meshkit-error-code",
            "get_header ResponseHeaders x-meshkit-error-origin",
            "get_header ResponseHeaders x-meshkit-error-cause",
            "get_header ResponseHeaders x-meshkit-error-retryable",
            "get_property ClusterName",
            "get_current_time",
            "get_shared_data meshkit.cause.1",
            "set_shared_data meshkit.cause.1",
            "increment_metric meshkit.errors.recipes.outbound.users.users.catalog.CM404001",
            "set_property meshkit.error.origin",
            "set_property meshkit.error.retryable",
            "set_property meshkit.error.classification",
            "set_property meshkit.error.source",
            "set_property meshkit.error.code",
            "set_header ResponseHeaders x-meshkit-error-retryable",
        ]
    );
}

#[test]
fn an_outbound_error_the_route_does_not_retry_reads_no_flags() {
    let store = Shared::default();
    let p = outbound();
    p.create_shared_keys(store.as_ref(), 0).unwrap();
    Run::new(&p, &store, &[]).request(); // takes the lease
    let mut run = Run::new(&p, &store, &[]);
    run.request();
    run.host
        .set_u64(Property::ResponseFlags, flags::UPSTREAM_OVERFLOW);
    let not_retryable = [
        ("x-meshkit-error-code", "CM404001"),
        ("x-meshkit-error-origin", "users"),
        ("x-meshkit-error-retryable", "false"),
    ];
    run.upstream_response(404, &not_retryable, Some(1), true);
    let host = run.log();
    assert_eq!(host.log(FilterField::RetryBudget), Some("full"));
    let response: Vec<String> = hostcalls(host)
        .into_iter()
        .skip_while(|c| !c.contains(":status"))
        .collect();
    assert_eq!(
        response,
        [
            "get_header ResponseHeaders :status",
            "get_header ResponseHeaders content-type",
            "get_property ResponseCodeDetails",
            "get_header ResponseHeaders x-envoy-attempt-count",
            "increment_metric meshkit.retry.retries.recipes.users",
            "get_header ResponseHeaders x-meshkit-error-code",
            "get_header ResponseHeaders x-meshkit-error-origin",
            "get_header ResponseHeaders x-meshkit-error-cause",
            "get_header ResponseHeaders x-meshkit-error-retryable",
            "get_current_time",
            "get_shared_data meshkit.cause.1",
            "set_shared_data meshkit.cause.1",
            "increment_metric meshkit.errors.recipes.outbound.users.users.catalog.CM404001",
            "set_property meshkit.error.origin",
            "set_property meshkit.error.retryable",
            "set_property meshkit.error.classification",
            "set_property meshkit.error.source",
            "set_property meshkit.error.code",
            // The route does not retry what the upstream marked not retryable: no circuit
            // breaker can have refused a retry of it, so the flags are never read.
            "set_property meshkit.retry.allowed",
            "set_property meshkit.retry.budget",
            "set_header ResponseHeaders x-meshkit-error-retryable",
        ]
    );
}
