//! The inbound listener's health check filter: how a sidecar leaves its callers' load balancing
//! before it stops (graceful drain).
//!
//! Callers' active health checks (`upstreams[].health_check`) reach this service's app through
//! this sidecar, and the filter passes them through (`pass_through_mode`): the app decides
//! whether it is healthy. Once the sidecar's admin `/healthcheck/fail` is called, the filter
//! answers those checks 503 itself and sets `x-envoy-immediate-health-check-fail` on every
//! response, health check or not; a caller whose cluster health-checks this service marks the
//! replica failed on the next response it gets, and sends it no new request. The filter is
//! rendered only when some caller health-checks this service (the header means nothing to a
//! caller that does not), first in the chain, so its own answers are not mesh errors.

use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::extensions::filters::http::health_check::v3::HealthCheck;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::BoolValue;

use super::any::pack;
use crate::model::{Mesh, Service};

/// The paths `service`'s callers health-check it on, in spec order, each once.
pub fn checked_paths(mesh: &Mesh, service: &Service) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    let checks = mesh
        .services
        .iter()
        .flat_map(|caller| &caller.upstreams)
        .filter(|u| u.service == service.name)
        .filter_map(|u| u.policy.health_check.as_ref());
    for check in checks {
        if !paths.contains(&check.path) {
            paths.push(check.path.clone());
        }
    }
    paths
}

/// The filter for requests to one of `paths` (`None` when no caller health-checks).
pub fn health_check_filter(paths: &[String]) -> Option<HttpFilter> {
    let pattern = match paths {
        [] => return None,
        [one] => string_matcher::MatchPattern::Exact(one.clone()),
        several => string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: format!(
                "^({})$",
                several
                    .iter()
                    .map(|p| regex::escape(p))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            ..Default::default()
        }),
    };
    let filter = HealthCheck {
        pass_through_mode: Some(BoolValue { value: true }),
        headers: vec![HeaderMatcher {
            name: ":path".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(pattern),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    Some(HttpFilter {
        name: "envoy.filters.http.health_check".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(&filter))),
        ..Default::default()
    })
}
