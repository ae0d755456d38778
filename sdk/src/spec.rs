//! The mesh spec file format, exactly as written by users (YAML or JSON).
//!
//! These types only describe the document's shape. Field values are checked in
//! [`crate::validate`], which turns a `MeshSpec` into the validated [`crate::model::Mesh`].
//! Unknown fields are not rejected by serde here: the loader collects all of them so the user
//! sees every typo at once, not one per run.

use meshkit_filter::core::config::ErrorSettings;
use meshkit_filter::core::local_reply::LocalReplies;
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
    #[serde(default)]
    pub upstreams: Vec<UpstreamSpec>,
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

/// The sidecar's own ports.
#[derive(Debug, Clone, Deserialize)]
pub struct SidecarSpec {
    /// Address the inbound listener binds and that other sidecars connect to.
    #[serde(default = "loopback")]
    pub address: String,
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
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
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
    /// Envoy retry conditions, e.g. `connect-failure`, `reset`, `5xx`.
    #[serde(default)]
    pub retry_on: Vec<String>,
    pub per_try_timeout: Option<String>,
}

fn loopback() -> String {
    "127.0.0.1".into()
}
