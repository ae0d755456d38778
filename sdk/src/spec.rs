//! The mesh spec file format, exactly as written by users (YAML or JSON).
//!
//! These types only describe the document's shape. Field values are checked in
//! [`crate::validate`], which turns a `MeshSpec` into the validated [`crate::model::Mesh`].
//! Unknown fields are not rejected by serde here: the loader collects all of them so the user
//! sees every typo at once, not one per run.

use meshkit_filter::core::config::ErrorSettings;
use meshkit_filter::core::local_reply::LocalReplies;
use meshkit_filter::core::retry_control::RetryLayers;
use serde::Deserialize;

pub const SPEC_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
pub struct MeshSpec {
    /// Format version of this document; only `1` exists.
    pub version: u32,
    /// Name of the mesh, used in node metadata.
    pub mesh: String,
    /// How apps report error codes, and the catalog of codes (see the README).
    #[serde(default)]
    pub errors: ErrorSettings,
    /// Which layer of a call chain retries an app's retryable failure: `nearest_hop`
    /// (default: only the caller next to the failing service) or `every_hop`.
    #[serde(default)]
    pub retry_layers: RetryLayers,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub app: AppSpec,
    pub sidecar: SidecarSpec,
    /// How this sidecar rewrites failures Envoy generates: `off`, `headers`,
    /// `headers_and_body` (default).
    #[serde(default)]
    pub local_replies: LocalReplies,
    /// More instances of this service, each its own app and sidecar, configured like the
    /// first (`app` and `sidecar` above). Callers balance over all of them.
    #[serde(default)]
    pub replicas: Vec<ReplicaSpec>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamSpec>,
}

/// Where one more instance of a service runs: its app's port and its sidecar's address and
/// ports. Everything else is the service's.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaSpec {
    /// How callers reach this replica's sidecar. Default: the service's `sidecar.address`.
    pub address: Option<String>,
    /// The IP its inbound listener binds (see `sidecar.listen_address`).
    pub listen_address: Option<String>,
    pub app_port: i64,
    pub inbound_port: i64,
    pub outbound_port: i64,
    pub admin_port: i64,
}

/// The local application the sidecar fronts.
#[derive(Debug, Clone, Deserialize)]
pub struct AppSpec {
    /// IP address the app listens on (the sidecar reaches it there).
    #[serde(default = "loopback")]
    pub address: String,
    pub port: i64,
    #[serde(default)]
    pub protocol: Protocol,
    /// Route timeout of the inbound listener (callers → app). Default 15s.
    pub timeout: Option<String>,
    /// Envoy's circuit breaker on the sidecar → app cluster.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerSpec,
    /// The app's container image, for `meshkit generate --compose` (e.g.
    /// `registry.example.com/users:1.4`). Default: meshkit's demo app.
    pub image: Option<String>,
}

/// Envoy's circuit-breaker thresholds for one cluster (default priority). Unset values take
/// meshkit's defaults: 1024 for the first three (Envoy's), and `max_retries` = `max_requests`,
/// so the breaker never caps retries below what the retry budget grants (Envoy's own default
/// of 3 retries in flight would).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CircuitBreakerSpec {
    pub max_connections: Option<i64>,
    pub max_pending_requests: Option<i64>,
    pub max_requests: Option<i64>,
    pub max_retries: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 to the app.
    #[default]
    Http1,
    /// HTTP/2 (cleartext, prior knowledge) to the app: gRPC services.
    Http2,
}

/// The sidecar's address and ports.
#[derive(Debug, Clone, Deserialize)]
pub struct SidecarSpec {
    /// How callers reach this sidecar's inbound listener: an IP address or a DNS name.
    #[serde(default = "loopback")]
    pub address: String,
    /// The IP the inbound listener binds. Default: `address` when it is an IP, else `0.0.0.0`
    /// (a DNS name resolves to the host's own address).
    pub listen_address: Option<String>,
    /// Listener in front of the app: callers connect here.
    pub inbound_port: i64,
    /// Listener the app calls to reach its upstreams (always on 127.0.0.1).
    pub outbound_port: i64,
    /// Envoy admin interface (always on 127.0.0.1).
    pub admin_port: i64,
}

/// A service this service calls, and which of its requests go there.
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSpec {
    pub service: String,
    /// Rate-based retry budget for calls to this upstream, shared by all Envoy workers. On by
    /// default with retry_ratio 0.2, min_retries_per_second 10, ttl 10s.
    #[serde(default)]
    pub retry_budget: RetryBudgetSpec,
    /// Envoy's circuit breaker on the cluster for this upstream.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerSpec,
    /// How requests are spread over the upstream's replicas: `least_request` (default),
    /// `round_robin` or `random`.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// TCP connect timeout to the upstream's sidecar. Default 1s.
    pub connect_timeout: Option<String>,
    /// Passive health: replicas that keep failing are ejected for a while. On by default.
    #[serde(default)]
    pub outlier_detection: OutlierDetectionSpec,
    /// Active health: the caller's sidecar polls each replica through its sidecar. Off unless
    /// given.
    pub health_check: Option<HealthCheckSpec>,
    /// Below this share of healthy replicas Envoy sends traffic to every replica anyway
    /// (Envoy's `healthy_panic_threshold`). Default 50, Envoy's: an ejected single replica
    /// still gets traffic.
    pub panic_threshold_percent: Option<f64>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    #[default]
    LeastRequest,
    RoundRobin,
    Random,
}

/// Envoy's outlier detection, with the gateway-failure rule enforced (Envoy leaves it off).
#[derive(Debug, Clone, Deserialize)]
pub struct OutlierDetectionSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive 5xx responses (the app's, including retryable catalog codes on 503) that
    /// eject a replica. Default 5.
    pub consecutive_5xx: Option<i64>,
    /// Consecutive 502/503/504 and connection failures that eject a replica. Default 5.
    pub consecutive_gateway_failure: Option<i64>,
    /// How often ejections are evaluated. Default 10s.
    pub interval: Option<String>,
    /// A first ejection's length; the n-th lasts n times as long. Default 30s.
    pub base_ejection_time: Option<String>,
    /// The longest ejection. Default 300s.
    pub max_ejection_time: Option<String>,
    /// At most this share of replicas is ejected at once (at least one always can be).
    /// Default 50.
    pub max_ejection_percent: Option<f64>,
}

impl Default for OutlierDetectionSpec {
    fn default() -> Self {
        OutlierDetectionSpec {
            enabled: true,
            consecutive_5xx: None,
            consecutive_gateway_failure: None,
            interval: None,
            base_ejection_time: None,
            max_ejection_time: None,
            max_ejection_percent: None,
        }
    }
}

/// An HTTP health check of each replica, sent by the caller's sidecar to the replica's inbound
/// listener (so it goes through the replica's sidecar to its app).
#[derive(Debug, Clone, Deserialize)]
pub struct HealthCheckSpec {
    /// Answered 200 by a healthy app.
    pub path: String,
    /// Default 5s.
    pub interval: Option<String>,
    /// Shorter than `interval`. Default 1s.
    pub timeout: Option<String>,
    /// Failed checks in a row that mark a replica unhealthy. Default 2.
    pub unhealthy_threshold: Option<i64>,
    /// Passed checks in a row that mark it healthy again. Default 1.
    pub healthy_threshold: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetryBudgetSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Retries per original request as a fraction (0.2 = 20 %). Use `retry_percent` instead
    /// to write a percentage; never both.
    pub retry_ratio: Option<f64>,
    pub retry_percent: Option<f64>,
    pub min_retries_per_second: Option<i64>,
    /// The window the budget remembers: 1s–60s.
    pub ttl: Option<String>,
}

impl Default for RetryBudgetSpec {
    fn default() -> Self {
        RetryBudgetSpec {
            enabled: true,
            retry_ratio: None,
            retry_percent: None,
            min_retries_per_second: None,
            ttl: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct RouteSpec {
    #[serde(rename = "match")]
    pub match_: MatchSpec,
    /// Whole-request timeout including retries. Default 15s.
    pub timeout: Option<String>,
    pub retry: Option<RetrySpec>,
}

/// Exactly one of `prefix` or `exact`.
#[derive(Debug, Clone, Deserialize)]
pub struct MatchSpec {
    pub prefix: Option<String>,
    pub exact: Option<String>,
}

/// Envoy's route retry policy, in Envoy's words.
#[derive(Debug, Clone, Deserialize)]
pub struct RetrySpec {
    /// Retries after the first attempt (Envoy's `num_retries`): 2 means up to 3 attempts.
    pub num_retries: i64,
    /// Envoy retry conditions for transport failures; default `connect-failure`,
    /// `refused-stream`, `reset`. App errors are retried by their catalog `retryable` flag
    /// (meshkit adds that condition itself), never by status code.
    pub retry_on: Option<Vec<String>>,
    pub per_try_timeout: Option<String>,
    /// Exponential backoff between attempts (Envoy's defaults: 25ms base, 10× max).
    pub backoff: Option<BackoffSpec>,
    /// Methods that may be retried; default the idempotent ones (GET, HEAD, OPTIONS, TRACE,
    /// PUT, DELETE). List POST or PATCH only for routes whose handlers are idempotent.
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackoffSpec {
    pub base_interval: String,
    pub max_interval: Option<String>,
}

fn loopback() -> String {
    "127.0.0.1".into()
}
