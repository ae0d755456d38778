//! meshkit on Istio: what Istio's default stats filter keeps of meshkit's metrics and Envoy's,
//! and the `proxyStatsMatcher` a user adds so Envoy's retry, outlier, overflow and membership
//! stats are exported at all (the dashboard's queries still assume meshkit's own stats tags and
//! names, which Istio's bootstrap does not have: see the README).
//!
//! Istio keeps only stats whose names start with [`DEFAULT_INCLUSION_PREFIXES`]. meshkit's
//! own metrics live in Envoy's `wasmcustom.` namespace, which the `wasm` prefix covers: they
//! survive. Envoy's request, retry, outlier, overflow and membership stats do not; with
//! [`inclusion_regexps`] added they do (the integration tests check both against real Envoy).

use envoy_types::pb::envoy::config::metrics::v3::{stats_matcher, StatsMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, ListStringMatcher, RegexMatcher, StringMatcher,
};
use serde::Serialize;

/// Istio's default inclusion prefixes (istio/istio `pkg/bootstrap/config.go`).
pub const DEFAULT_INCLUSION_PREFIXES: [&str; 5] = [
    "cluster_manager",
    "listener_manager",
    "server",
    "cluster.xds-grpc",
    "wasm",
];

/// Regexes (RE2, matched against the whole stat name before tags are extracted) for the Envoy
/// stats meshkit's dashboard and `meshkit top` read. Cluster names on Istio contain dots
/// (`outbound|80||users.ns.svc.cluster.local`), hence `.*`.
pub fn inclusion_regexps() -> Vec<String> {
    [
        r"cluster\..*\.upstream_rq_(total|time|[1-5]xx|retry|retry_overflow|retry_limit_exceeded|retry_success|pending_overflow)",
        r"cluster\..*\.upstream_cx_overflow",
        r"cluster\..*\.outlier_detection\.ejections_enforced_total",
        r"cluster\..*\.membership_(healthy|total)",
        r"http\..*\.downstream_rq_(total|time|[1-5]xx)",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The Envoy stats matcher Istio generates from its defaults, plus `regexps`: what a sidecar
/// on Istio keeps.
pub fn stats_matcher(regexps: &[String]) -> StatsMatcher {
    let prefixes = DEFAULT_INCLUSION_PREFIXES.iter().map(|p| StringMatcher {
        match_pattern: Some(MatchPattern::Prefix((*p).to_string())),
        ..Default::default()
    });
    let regexes = regexps.iter().map(|r| StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
            regex: r.clone(),
            ..Default::default()
        })),
        ..Default::default()
    });
    StatsMatcher {
        stats_matcher: Some(stats_matcher::StatsMatcher::InclusionList(
            ListStringMatcher {
                patterns: prefixes.chain(regexes).collect(),
            },
        )),
    }
}

/// A `ProxyConfig` fragment (the `proxy.istio.io/config` annotation, or the mesh's
/// `meshConfig.defaultConfig`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub proxy_stats_matcher: ProxyStatsMatcher,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatsMatcher {
    pub inclusion_regexps: Vec<String>,
}

pub fn proxy_config() -> ProxyConfig {
    ProxyConfig {
        proxy_stats_matcher: ProxyStatsMatcher {
            inclusion_regexps: inclusion_regexps(),
        },
    }
}
