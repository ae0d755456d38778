//! The sidecar's two listeners, each an HTTP connection manager with the meshkit filter before
//! the router and the JSON access log.
//!
//! - inbound: callers → `sidecar.address:inbound_port` (bound on `listen_address`) → local app;
//! - outbound: local app → `127.0.0.1:outbound_port` → upstream sidecars, routed by path.

use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener, Filter, FilterChain, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, retry_policy, retry_policy::RetryBackOff, route, route_action, route_match,
    HeaderMatcher, RetryPolicy as EnvoyRetryPolicy, Route as EnvoyRoute, RouteAction,
    RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use meshkit_filter::core::cause_table::{MAX_BUCKETS, MIN_BUCKETS, WAYS};
use meshkit_filter::core::config::{CauseTableSettings, Direction, PluginConfig};
use meshkit_filter::core::propagation;
use meshkit_filter::core::retry_budget::MAX_HOLD_MS;
use meshkit_filter::core::retry_control::{RetrySettings, RouteRetry};

use super::access_log::stdout_json_access_log;
use super::any::{duration, pack};
use super::cluster::{socket, LOCAL_APP_CLUSTER};
use super::health_check_filter::{checked_paths, health_check_filter};
use super::wasm_filter::meshkit_http_filter;
use crate::model::{Mesh, PathMatch, RetryPolicy, Route, Service};

pub fn inbound(
    mesh: &Mesh,
    service: &Service,
    instance: &str,
    wasm_path: Option<&str>,
) -> Listener {
    let route = EnvoyRoute {
        r#match: Some(path_match(&PathMatch::Prefix("/".into()))),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                LOCAL_APP_CLUSTER.into(),
            )),
            timeout: Some(duration(service.app.timeout)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let vhost = VirtualHost {
        name: "local_app".into(),
        domains: vec!["*".into()],
        routes: vec![route],
        // meshkit's headers only ever come from meshkit: Envoy strips them from what callers
        // send and from what the app answers (before the filter stamps its own), natively.
        request_headers_to_remove: meshkit_headers(),
        response_headers_to_remove: meshkit_headers(),
        ..Default::default()
    };
    listener(
        mesh,
        service,
        instance,
        Direction::Inbound,
        &service.sidecar.listen_address.to_string(),
        service.sidecar.inbound_port,
        vhost,
        wasm_path,
    )
}

pub fn outbound(
    mesh: &Mesh,
    service: &Service,
    instance: &str,
    wasm_path: Option<&str>,
) -> Listener {
    let routes = service
        .upstreams
        .iter()
        .flat_map(|up| {
            up.routes.iter().enumerate().map(|(i, r)| EnvoyRoute {
                // The filter finds the route's retry settings by this name.
                name: Route::name(&up.service, i),
                r#match: Some(path_match(&r.path)),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        up.service.clone(),
                    )),
                    timeout: Some(duration(r.timeout)),
                    retry_policy: r.retry.as_ref().map(retry_policy),
                    ..Default::default()
                })),
                ..Default::default()
            })
        })
        .collect();
    let vhost = VirtualHost {
        name: "upstreams".into(),
        domains: vec!["*".into()],
        routes,
        // Lets callers (and the meshkit filter) see how many attempts the router made.
        include_attempt_count_in_response: true,
        // The app cannot speak for the mesh: its x-meshkit-* never reach an upstream. (What
        // upstream sidecars stamp on responses is kept: that is how errors propagate.)
        request_headers_to_remove: meshkit_headers(),
        ..Default::default()
    };
    listener(
        mesh,
        service,
        instance,
        Direction::Outbound,
        "127.0.0.1",
        service.sidecar.outbound_port,
        vhost,
        wasm_path,
    )
}

#[allow(clippy::too_many_arguments)] // one listener's every input, each used once
fn listener(
    mesh: &Mesh,
    service: &Service,
    instance: &str,
    direction: Direction,
    host: &str,
    port: u16,
    vhost: VirtualHost,
    wasm_path: Option<&str>,
) -> Listener {
    let name = direction.as_str();
    let plugin = PluginConfig {
        service: service.name.clone(),
        direction,
        local_replies: service.local_replies,
        errors: mesh.errors.clone(),
        retries: match direction {
            Direction::Outbound => retry_settings(service),
            Direction::Inbound => RetrySettings::default(),
        },
        retry_layers: mesh.retry_layers,
        cause_table: cause_table(service),
    };
    // Inbound: how this replica leaves its callers' rotation before it stops.
    let health_check = match direction {
        Direction::Inbound => health_check_filter(&checked_paths(mesh, service)),
        Direction::Outbound => None,
    };
    let hcm = HttpConnectionManager {
        stat_prefix: name.into(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: name.into(),
                virtual_hosts: vec![vhost],
                ..Default::default()
            },
        )),
        http_filters: health_check
            .into_iter()
            .chain(wasm_path.map(|path| meshkit_http_filter(&plugin, path)))
            .chain([router()])
            .collect(),
        access_log: vec![stdout_json_access_log(&service.name, instance, direction)],
        // Every peer is treated as external: Envoy strips x-envoy-* request headers (nobody
        // outside the sidecar can set retry counts) ...
        use_remote_address: Some(BoolValue { value: true }),
        // ... but the request id is kept, so one id follows a request through every hop.
        preserve_external_request_id: true,
        ..Default::default()
    };
    Listener {
        name: name.into(),
        address: Some(socket(host, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            ..Default::default()
        }],
        // The outbound listener serves only the local app, which keeps calling its upstreams
        // while the inbound side drains: only a change to the listener itself drains it, not
        // `/healthcheck/fail` or `/drain_listeners`.
        drain_type: match direction {
            Direction::Inbound => listener::DrainType::Default,
            Direction::Outbound => listener::DrainType::ModifyOnly,
        } as i32,
        ..Default::default()
    }
}

fn meshkit_headers() -> Vec<String> {
    propagation::ALL.iter().map(|h| h.to_string()).collect()
}

fn router() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    }
}

fn path_match(path: &PathMatch) -> RouteMatch {
    let specifier = match path {
        PathMatch::Prefix(p) => route_match::PathSpecifier::Prefix(p.clone()),
        PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
    };
    RouteMatch {
        path_specifier: Some(specifier),
        ..Default::default()
    }
}

/// The routes whose retries the outbound filter controls, and each upstream's budget.
fn retry_settings(service: &Service) -> RetrySettings {
    let mut settings = RetrySettings::default();
    for up in &service.upstreams {
        for (i, r) in up.routes.iter().enumerate() {
            if let Some(retry) = &r.retry {
                settings.routes.insert(
                    Route::name(&up.service, i),
                    RouteRetry {
                        upstream: up.service.clone(),
                        num_retries: retry.num_retries,
                        methods: retry.methods.clone(),
                        retry_on: retry.retry_on.clone(),
                        // The filter holds retries at most this long (capped: a route
                        // timeout may be longer than the longest hold).
                        timeout_ms: millis(r.timeout).min(MAX_HOLD_MS),
                    },
                );
            }
        }
        if let Some(budget) = &up.retry_budget {
            settings.budgets.insert(up.service.clone(), budget.clone());
        }
    }
    settings
}

/// The cause table holds a cause from the app's failed upstream call until the app answers
/// the request with an error (or the entry ages out): the failing requests in flight into the
/// app, so it gets four slots per request the app's circuit breaker admits (at most 65,536
/// buckets), and entries live as long as the inbound route timeout lets a request live.
fn cause_table(service: &Service) -> CauseTableSettings {
    let slots = u64::from(service.app.circuit_breaker.max_requests) * 4;
    let buckets = slots.div_ceil(WAYS as u64).next_power_of_two();
    CauseTableSettings {
        buckets: u32::try_from(buckets)
            .unwrap_or(MAX_BUCKETS)
            .clamp(MIN_BUCKETS, MAX_BUCKETS),
        max_age_ms: millis(service.app.timeout)
            .saturating_add(1_000)
            .min(MAX_HOLD_MS),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Envoy's retry policy: the spec's transport conditions, plus app errors the failing
/// service's sidecar marked retryable (`x-meshkit-error-retryable: true`), for the listed
/// methods only. The filter caps the count per request with `x-envoy-max-retries`.
fn retry_policy(r: &RetryPolicy) -> EnvoyRetryPolicy {
    let mut retry_on = r.retry_on.clone();
    retry_on.push("retriable-headers".into());
    EnvoyRetryPolicy {
        retry_on: retry_on.join(","),
        num_retries: Some(UInt32Value {
            value: r.num_retries,
        }),
        per_try_timeout: r.per_try_timeout.map(duration),
        retriable_headers: vec![HeaderMatcher {
            name: propagation::RETRYABLE.into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact("true".into())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        retriable_request_headers: vec![HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                        regex: format!("^({})$", r.methods.join("|")),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        retry_back_off: r.backoff.map(|(base, max)| RetryBackOff {
            base_interval: Some(duration(base)),
            max_interval: Some(duration(max)),
        }),
        // A retry goes to another replica than the attempts before it (when there is one): a
        // replica that just failed, or went away before its callers' load balancers noticed,
        // is not asked again.
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                pack(&PreviousHostsPredicate::default()),
            )),
        }],
        host_selection_retry_max_attempts: 3,
        ..Default::default()
    }
}
