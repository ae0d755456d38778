//! Spec loading and validation: text → [`MeshSpec`] → [`Mesh`], reporting every problem found
//! as `path.to.field: message`.
//!
//! Two stages. Parsing stops at the first syntax or type error (serde cannot go on after one),
//! but collects *all* unknown fields on the way. Validation then checks every value and
//! cross-reference and reports all problems at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use meshkit_filter::core::config::{is_service_name, MAX_SERVICE_NAME_LEN};

use crate::duration::parse_duration;
use crate::model::{
    App, BudgetParams, CircuitBreaker, Mesh, PathMatch, RetryPolicy, Route, Service, Sidecar,
    Upstream,
};
use crate::problems::{Collector, Problem, Problems};
use crate::spec::{
    CircuitBreakerSpec, MeshSpec, RetryBudgetSpec, RetrySpec, RouteSpec, ServiceSpec, SPEC_VERSION,
};

/// Default inbound (app) and route timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound on `num_retries`: more is a retry storm waiting to happen.
pub const MAX_RETRIES: i64 = 10;
/// Largest circuit-breaker threshold accepted.
pub const MAX_BREAKER: u32 = 1_000_000;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` files are JSON; everything else is read as YAML.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Why a spec file could not be turned into a [`Mesh`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] Problems),
}

/// Reads, parses and validates a spec file.
pub fn load_file(path: &Path) -> Result<Mesh, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(load_str(&text, Format::of_path(path))?)
}

/// Parses and validates spec text.
pub fn load_str(text: &str, format: Format) -> Result<Mesh, Problems> {
    validate(&parse(text, format)?)
}

/// Parses spec text into its document shape, reporting all unknown fields.
pub fn parse(text: &str, format: Format) -> Result<MeshSpec, Problems> {
    let mut unknown = Vec::new();
    let parsed = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            deserialize(&mut de, &mut unknown).and_then(|spec| {
                de.end().map(|_| spec).map_err(|e| Problem {
                    path: "(root)".into(),
                    message: e.to_string(),
                })
            })
        }
        Format::Yaml => deserialize(serde_yaml_ng::Deserializer::from_str(text), &mut unknown),
    };
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|path| Problem {
            path,
            message: "unknown field".into(),
        })
        .collect();
    match parsed {
        Ok(spec) if problems.is_empty() => Ok(spec),
        Ok(_) => Err(Problems(problems)),
        Err(p) => {
            problems.push(p);
            Err(Problems(problems))
        }
    }
}

fn deserialize<'de, D>(de: D, unknown: &mut Vec<String>) -> Result<MeshSpec, Problem>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let ignored = serde_ignored::Deserializer::new(de, &mut on_unknown);
    serde_path_to_error::deserialize(ignored).map_err(|e| {
        let path = e.path().to_string();
        Problem {
            path: if path == "." { "(root)".into() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// `services.0.app.foo` in serde_ignored's notation → `services[0].app.foo`, as everywhere else.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => "(root)".into(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => match parent {
            P::Root => key.clone(),
            _ => format!("{}.{key}", ignored_path(parent)),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// Checks every value and reference in a parsed spec.
pub fn validate(spec: &MeshSpec) -> Result<Mesh, Problems> {
    let mut c = Collector::default();
    if spec.version != SPEC_VERSION {
        c.push(
            "version",
            format!(
                "unsupported version {}, expected {SPEC_VERSION}",
                spec.version
            ),
        );
    }
    if spec.mesh.trim().is_empty() {
        c.push("mesh", "must not be empty");
    }
    if spec.services.is_empty() {
        c.push("services", "must list at least one service");
    }

    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in spec.services.iter().enumerate() {
        let path = format!("services[{i}].name");
        if !is_service_name(&s.name) {
            c.push(
                path,
                format!(
                    "{:?} is not a valid service name (1-{MAX_SERVICE_NAME_LEN} of a-z, 0-9, '-', \
                     starting with a letter, not ending with '-')",
                    s.name
                ),
            );
        } else if let Some(first) = first_index.get(s.name.as_str()) {
            c.push(
                path,
                format!(
                    "duplicate service name {:?} (first at services[{first}])",
                    s.name
                ),
            );
        } else {
            first_index.insert(&s.name, i);
        }
    }

    for (path, message) in spec.errors.problems() {
        c.push(format!("errors.{path}"), message);
    }
    check_ports(&spec.services, &mut c);

    let services = spec
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| service(i, s, spec, &mut c))
        .collect();

    c.finish(Mesh {
        name: spec.mesh.clone(),
        errors: spec.errors.clone(),
        retry_layers: spec.retry_layers,
        services,
    })
}

fn service(i: usize, s: &ServiceSpec, spec: &MeshSpec, c: &mut Collector) -> Service {
    let at = format!("services[{i}]");
    let app = App {
        address: s.app.address.parse::<IpAddr>().unwrap_or_else(|_| {
            c.push(
                format!("{at}.app.address"),
                format!("{:?} is not an IP address", s.app.address),
            );
            IpAddr::from([127, 0, 0, 1])
        }),
        port: port(s.app.port, &format!("{at}.app.port"), c),
        protocol: s.app.protocol,
        timeout: duration(s.app.timeout.as_deref(), &format!("{at}.app.timeout"), c),
        circuit_breaker: circuit_breaker(
            &s.app.circuit_breaker,
            &format!("{at}.app.circuit_breaker"),
            c,
        ),
    };
    if s.sidecar.address.trim().is_empty() {
        c.push(format!("{at}.sidecar.address"), "must not be empty");
    }
    let sidecar = Sidecar {
        address: s.sidecar.address.clone(),
        inbound_port: port(
            s.sidecar.inbound_port,
            &format!("{at}.sidecar.inbound_port"),
            c,
        ),
        outbound_port: port(
            s.sidecar.outbound_port,
            &format!("{at}.sidecar.outbound_port"),
            c,
        ),
        admin_port: port(s.sidecar.admin_port, &format!("{at}.sidecar.admin_port"), c),
    };

    let mut upstreams = Vec::new();
    let mut seen_upstreams: HashMap<&str, usize> = HashMap::new();
    // Route matches across all upstreams: the outbound listener has one route table.
    let mut seen_matches: HashMap<PathMatch, String> = HashMap::new();
    for (u, up) in s.upstreams.iter().enumerate() {
        let at = format!("{at}.upstreams[{u}]");
        let target = spec.services.iter().find(|t| t.name == up.service);
        if up.service == s.name {
            c.push(
                format!("{at}.service"),
                "a service cannot be its own upstream",
            );
        } else if target.is_none() {
            c.push(
                format!("{at}.service"),
                format!("unknown service {:?}", up.service),
            );
        } else if let Some(first) = seen_upstreams.insert(&up.service, u) {
            c.push(
                format!("{at}.service"),
                format!(
                    "duplicate upstream {:?} (first at upstreams[{first}])",
                    up.service
                ),
            );
        }
        if up.routes.is_empty() {
            c.push(format!("{at}.routes"), "must list at least one route");
        }
        let routes = up
            .routes
            .iter()
            .enumerate()
            .map(|(r, route_spec)| {
                let at = format!("{at}.routes[{r}]");
                let route = route(route_spec, &at, c);
                if let Some(first) = seen_matches.insert(route.path.clone(), at.clone()) {
                    c.push(
                        format!("{at}.match"),
                        format!("same match as {first}: this route would never be used"),
                    );
                }
                route
            })
            .collect();
        let retry_budget = retry_budget(&up.retry_budget, &format!("{at}.retry_budget"), c);
        let circuit_breaker =
            circuit_breaker(&up.circuit_breaker, &format!("{at}.circuit_breaker"), c);
        if let Some(t) = target {
            upstreams.push(Upstream {
                service: t.name.clone(),
                address: t.sidecar.address.clone(),
                port: u16::try_from(t.sidecar.inbound_port).unwrap_or(0),
                protocol: t.app.protocol,
                retry_budget,
                circuit_breaker,
                routes,
            });
        }
    }

    Service {
        name: s.name.clone(),
        app,
        sidecar,
        local_replies: s.local_replies,
        upstreams,
    }
}

fn route(r: &RouteSpec, at: &str, c: &mut Collector) -> Route {
    let path = match (&r.match_.prefix, &r.match_.exact) {
        (Some(p), None) => PathMatch::Prefix(http_path(p, &format!("{at}.match.prefix"), c)),
        (None, Some(e)) => PathMatch::Exact(http_path(e, &format!("{at}.match.exact"), c)),
        (Some(_), Some(_)) => {
            c.push(
                format!("{at}.match"),
                "set exactly one of prefix, exact (got both)",
            );
            PathMatch::Prefix("/".into())
        }
        (None, None) => {
            c.push(
                format!("{at}.match"),
                "set exactly one of prefix, exact (got neither)",
            );
            PathMatch::Prefix("/".into())
        }
    };
    let timeout = duration(r.timeout.as_deref(), &format!("{at}.timeout"), c);
    let retry = r
        .retry
        .as_ref()
        .map(|retry| retry_policy(retry, timeout, &format!("{at}.retry"), c));
    Route {
        path,
        timeout,
        retry,
    }
}

fn retry_policy(r: &RetrySpec, timeout: Duration, at: &str, c: &mut Collector) -> RetryPolicy {
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
            Ok(d) if d > timeout => {
                c.push(
                    path,
                    format!(
                        "{t} is longer than the route timeout ({}ms)",
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
/// (0.2 = 20 %) and must be at most 1; a percentage goes in `retry_percent`.
fn retry_budget(b: &RetryBudgetSpec, at: &str, c: &mut Collector) -> Option<BudgetParams> {
    let defaults = BudgetParams::default();
    let ratio = match (b.retry_ratio, b.retry_percent) {
        (Some(_), Some(_)) => {
            c.push(
                format!("{at}.retry_percent"),
                "set retry_ratio or retry_percent, not both",
            );
            defaults.retry_ratio
        }
        (Some(r), None) if r > 1.0 => {
            c.push(
                format!("{at}.retry_ratio"),
                format!(
                    "{r} is more than one retry per request; retry_ratio is a fraction (20 % is \
                     0.2) — write `retry_percent: {r}` if you meant a percentage"
                ),
            );
            defaults.retry_ratio
        }
        (Some(r), None) => r,
        (None, Some(p)) => p / 100.0,
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
    for (field, message) in params.problems() {
        let field = if field == "retry_ratio" && b.retry_percent.is_some() {
            "retry_percent".to_string()
        } else {
            field
        };
        c.push(format!("{at}.{field}"), message);
    }
    b.enabled.then_some(params)
}

/// Thresholds between 1 and [`MAX_BREAKER`]; `max_retries` defaults to `max_requests`.
fn circuit_breaker(b: &CircuitBreakerSpec, at: &str, c: &mut Collector) -> CircuitBreaker {
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

fn required_duration(text: &str, path: &str, c: &mut Collector) -> Option<Duration> {
    parse_duration(text).map_err(|e| c.push(path, e)).ok()
}

fn port(value: i64, path: &str, c: &mut Collector) -> u16 {
    match u16::try_from(value) {
        Ok(p) if p > 0 => p,
        _ => {
            c.push(
                path,
                format!("must be a port between 1 and 65535, got {value}"),
            );
            0
        }
    }
}

fn duration(value: Option<&str>, path: &str, c: &mut Collector) -> Duration {
    match value.map(parse_duration) {
        None => DEFAULT_TIMEOUT,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            c.push(path, e);
            DEFAULT_TIMEOUT
        }
    }
}

fn http_path(p: &str, path: &str, c: &mut Collector) -> String {
    if !p.starts_with('/') {
        c.push(path, format!("must start with '/', got {p:?}"));
    } else if p
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '?' || ch == '#')
    {
        c.push(
            path,
            format!("must be a plain path (no spaces, '?', '#'), got {p:?}"),
        );
    }
    p.to_string()
}

/// Every listening socket in the mesh must be distinct: the apps, inbound, outbound and admin
/// listeners all share one host in a local mesh, and in any deployment a sidecar's own three
/// listeners and its app share one network namespace.
fn check_ports(services: &[ServiceSpec], c: &mut Collector) {
    let mut owners: BTreeMap<(String, i64), String> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        let sockets = [
            (s.app.address.as_str(), s.app.port, format!("{at}.app.port")),
            (
                s.sidecar.address.as_str(),
                s.sidecar.inbound_port,
                format!("{at}.sidecar.inbound_port"),
            ),
            (
                "127.0.0.1",
                s.sidecar.outbound_port,
                format!("{at}.sidecar.outbound_port"),
            ),
            (
                "127.0.0.1",
                s.sidecar.admin_port,
                format!("{at}.sidecar.admin_port"),
            ),
        ];
        for (address, port, path) in sockets {
            if port <= 0 {
                continue; // reported by `port()`
            }
            // Loopback and wildcard spellings all mean "this host".
            let host = normalise_host(address);
            if let Some(first) = owners.get(&(host.clone(), port)) {
                c.push(path, format!("port {port} is already used by {first}"));
            } else {
                owners.insert((host, port), path);
            }
        }
    }
}

fn normalise_host(address: &str) -> String {
    match address {
        "" | "127.0.0.1" | "localhost" | "0.0.0.0" | "::1" | "::" => "local".into(),
        other => other.to_string(),
    }
}
