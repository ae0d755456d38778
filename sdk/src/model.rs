//! The validated mesh: what the Envoy config builders consume. Every value here has passed
//! [`crate::validate`], so builders never re-check and never fail.

use std::net::IpAddr;
use std::time::Duration;

pub use crate::spec::{LoadBalancing, Protocol};
pub use meshkit_filter::core::config::ErrorSettings;
pub use meshkit_filter::core::local_reply::LocalReplies;
pub use meshkit_filter::core::retry_budget::BudgetParams;
pub use meshkit_filter::core::retry_control::RetryLayers;

#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    pub name: String,
    pub errors: ErrorSettings,
    pub retry_layers: RetryLayers,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub app: App,
    pub sidecar: Sidecar,
    pub local_replies: LocalReplies,
    /// Instances after the first (`app` and `sidecar`), in spec order.
    pub replicas: Vec<Replica>,
    pub upstreams: Vec<Upstream>,
}

/// One more instance of a service: its app's port and its sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub app_port: u16,
    pub sidecar: Sidecar,
}

impl Service {
    /// How many instances run: the first, plus the replicas.
    pub fn instance_count(&self) -> usize {
        1 + self.replicas.len()
    }

    /// The name of instance `index` (0 is the first): the service's own name, then
    /// `<service>-1`, `<service>-2`, … It names the sidecar's files, node id and processes.
    pub fn instance_name(&self, index: usize) -> String {
        match index {
            0 => self.name.clone(),
            k => format!("{}-{k}", self.name),
        }
    }

    /// Every instance, the first then the replicas: its name and itself as a service of its
    /// own (see [`Service::instance`]).
    pub fn instances(&self) -> impl Iterator<Item = (String, Service)> + '_ {
        (0..self.instance_count()).filter_map(|k| Some((self.instance_name(k), self.instance(k)?)))
    }

    /// Instance `index` seen as a service of its own: the same service with that instance's
    /// app port and sidecar. What a sidecar's config is rendered from.
    pub fn instance(&self, index: usize) -> Option<Service> {
        let mut s = self.clone();
        if let Some(r) = index.checked_sub(1) {
            let r = self.replicas.get(r)?;
            s.app.port = r.app_port;
            s.sidecar = r.sidecar.clone();
        }
        s.replicas.clear();
        Some(s)
    }

    /// What meshkit's demo app, run as this service, calls through its sidecar: each
    /// upstream's first route (`meshkit up` and `--compose` run it the same way).
    pub fn demo_calls(&self) -> Vec<DemoCall> {
        self.upstreams
            .iter()
            .filter_map(|u| {
                let path = match &u.routes.first()?.path {
                    PathMatch::Prefix(p) | PathMatch::Exact(p) => p.clone(),
                };
                Some(DemoCall {
                    path,
                    grpc: u.protocol == Protocol::Http2,
                })
            })
            .collect()
    }
}

/// One call the demo app makes per request (see [`Service::demo_calls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCall {
    pub path: String,
    /// A unary gRPC call (the upstream speaks HTTP/2), else an HTTP/1.1 GET.
    pub grpc: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Container image (`--compose`); `None`: meshkit's demo app.
    pub image: Option<String>,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub timeout: Duration,
    pub circuit_breaker: CircuitBreaker,
}

/// Envoy circuit-breaker thresholds (see `spec::CircuitBreakerSpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// How callers reach the inbound listener: an IP address or a DNS name.
    pub address: String,
    /// Where the inbound listener binds.
    pub listen_address: IpAddr,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub admin_port: u16,
}

/// An upstream, resolved against the service it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub service: String,
    /// Every instance's sidecar inbound listener: (address, port).
    pub endpoints: Vec<(String, u16)>,
    /// The upstream app's protocol, spoken sidecar to sidecar too.
    pub protocol: Protocol,
    /// `None` when the budget is disabled.
    pub retry_budget: Option<BudgetParams>,
    pub circuit_breaker: CircuitBreaker,
    pub policy: UpstreamPolicy,
    pub routes: Vec<Route>,
}

/// How the caller's sidecar treats the upstream's replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPolicy {
    pub load_balancing: LoadBalancing,
    pub connect_timeout: Duration,
    pub outlier_detection: Option<OutlierDetection>,
    pub health_check: Option<HealthCheck>,
    pub panic_threshold_percent: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: PathMatch,
    pub timeout: Duration,
    pub retry: Option<RetryPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub num_retries: u32,
    pub retry_on: Vec<String>,
    pub per_try_timeout: Option<Duration>,
    /// (base, max) interval.
    pub backoff: Option<(Duration, Duration)>,
    pub methods: Vec<String>,
}

impl Route {
    /// The route's name in Envoy config and in the filter's retry settings.
    pub fn name(upstream: &str, index: usize) -> String {
        format!("{upstream}/{index}")
    }
}

impl Mesh {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every instance of every service, in spec order (see [`Service::instances`]).
    pub fn instances(&self) -> impl Iterator<Item = (String, Service)> + '_ {
        self.services.iter().flat_map(Service::instances)
    }

    /// Instance `name` (a service's name means its first instance) as a service of its own.
    pub fn instance(&self, name: &str) -> Option<Service> {
        self.instances().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The first service no other service calls: where outside traffic enters.
    pub fn entry_service(&self) -> &str {
        let called: std::collections::HashSet<&str> = self
            .services
            .iter()
            .flat_map(|s| s.upstreams.iter().map(|u| u.service.as_str()))
            .collect();
        self.services
            .iter()
            .find(|s| !called.contains(s.name.as_str()))
            .or(self.services.first())
            .map(|s| s.name.as_str())
            .unwrap_or_default()
    }

    /// The longest health check round (interval and timeout) any caller runs; zero without
    /// health checks. How long a drain waits for callers to notice.
    pub fn longest_health_check_round(&self) -> std::time::Duration {
        self.services
            .iter()
            .flat_map(|s| &s.upstreams)
            .filter_map(|u| u.policy.health_check.as_ref())
            .map(|c| c.interval + c.timeout)
            .max()
            .unwrap_or_default()
    }

    /// How long taking an instance out of service waits: the Compose sidecar's stop sleeps
    /// these; both it and `meshkit up` give Envoy their sum as its drain time (`up`'s rolling
    /// restart watches the callers instead of sleeping).
    pub fn drain_timing(&self) -> DrainTiming {
        let round = self.longest_health_check_round();
        DrainTiming {
            notice: round * 2 + Duration::from_secs(1),
            settle: round + Duration::from_secs(1),
        }
    }
}

/// A drain's waits: for callers to notice a failed health check (two rounds: Envoy's
/// `x-envoy-immediate-health-check-fail` fails the host at its first failed check), then for
/// requests they picked before to arrive (one round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTiming {
    pub notice: Duration,
    pub settle: Duration,
}

impl DrainTiming {
    /// How long a draining listener stays open (Envoy's `--drain-time-s`): both waits.
    pub fn listener_drain_time(&self) -> Duration {
        self.notice + self.settle
    }
}
