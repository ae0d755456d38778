//! Clusters: the local app (inbound side) and one per upstream service (outbound side).

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster, CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, health_check, socket_address, Address, HealthCheck as EnvoyHealthCheck,
    Http2ProtocolOptions, RoutingPriority, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use envoy_types::pb::envoy::r#type::v3::{CodecClientType, Percent};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::any::{duration, pack};
use crate::model::{
    CircuitBreaker, HealthCheck, LoadBalancing, OutlierDetection, Protocol, UpstreamPolicy,
};

/// Name of the cluster that reaches the sidecar's own app.
pub const LOCAL_APP_CLUSTER: &str = "local_app";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster of `endpoints` (host, port): STATIC when every host is an IP address, else
/// STRICT_DNS (which resolves names and takes IPs as they are). Its circuit breaker is always
/// explicit: Envoy's defaults allow only 3 retries in flight, which would silently override
/// the retry budget. `policy`: an upstream's (the local app's cluster has none).
pub fn cluster(
    name: &str,
    endpoints: &[(String, u16)],
    protocol: Protocol,
    breaker: &CircuitBreaker,
    policy: Option<&UpstreamPolicy>,
) -> Cluster {
    let all_ips = endpoints
        .iter()
        .all(|(host, _)| host.parse::<std::net::IpAddr>().is_ok());
    let discovery = if all_ips {
        cluster::DiscoveryType::Static
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let lb_endpoints = endpoints
        .iter()
        .map(|(host, port)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(host, *port)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    let mut c = Cluster {
        name: name.into(),
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        circuit_breakers: Some(circuit_breakers(breaker)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(p) = policy {
        apply_policy(&mut c, p, protocol);
    }
    if protocol == Protocol::Http2 {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(
                http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(
                            http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                Http2ProtocolOptions::default(),
                            ),
                        ),
                    },
                ),
            ),
            ..Default::default()
        };
        c.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
            pack(&options),
        );
    }
    c
}

fn apply_policy(c: &mut Cluster, p: &UpstreamPolicy, protocol: Protocol) {
    c.lb_policy = match p.load_balancing {
        LoadBalancing::LeastRequest => cluster::LbPolicy::LeastRequest,
        LoadBalancing::RoundRobin => cluster::LbPolicy::RoundRobin,
        LoadBalancing::Random => cluster::LbPolicy::Random,
    } as i32;
    c.connect_timeout = Some(duration(p.connect_timeout));
    c.outlier_detection = p.outlier_detection.as_ref().map(outlier_detection);
    c.health_checks = p
        .health_check
        .iter()
        .map(|h| health_check(h, protocol))
        .collect();
    c.common_lb_config = Some(cluster::CommonLbConfig {
        healthy_panic_threshold: Some(Percent {
            value: p.panic_threshold_percent,
        }),
        // Envoy merges health changes for 1 s by default before its load balancers see them,
        // so a replica that failed its check (or began to drain) kept getting requests for up
        // to a second. A meshkit cluster is one service's replicas: changes are rare, and
        // should apply at once.
        update_merge_window: Some(duration(Duration::ZERO)),
        ..Default::default()
    });
}

fn outlier_detection(o: &OutlierDetection) -> EnvoyOutlier {
    let n = |value: u32| Some(UInt32Value { value });
    EnvoyOutlier {
        consecutive_5xx: n(o.consecutive_5xx),
        consecutive_gateway_failure: n(o.consecutive_gateway_failure),
        // Envoy counts gateway failures but does not eject on them unless told to.
        enforcing_consecutive_gateway_failure: n(100),
        enforcing_consecutive_5xx: n(100),
        interval: Some(duration(o.interval)),
        base_ejection_time: Some(duration(o.base_ejection_time)),
        max_ejection_time: Some(duration(o.max_ejection_time)),
        // Envoy takes a whole percent here; at least one host can always be ejected.
        max_ejection_percent: n(o.max_ejection_percent.round() as u32),
        ..Default::default()
    }
}

fn health_check(h: &HealthCheck, protocol: Protocol) -> EnvoyHealthCheck {
    let n = |value: u32| Some(UInt32Value { value });
    let codec = match protocol {
        Protocol::Http1 => CodecClientType::Http1,
        Protocol::Http2 => CodecClientType::Http2,
    };
    EnvoyHealthCheck {
        timeout: Some(duration(h.timeout)),
        interval: Some(duration(h.interval)),
        // Envoy checks a cluster that has had no traffic yet only every 60s by default: a
        // replica that was not up at the first check would stay unhealthy that long.
        no_traffic_interval: Some(duration(h.interval)),
        unhealthy_threshold: n(h.unhealthy_threshold),
        healthy_threshold: n(h.healthy_threshold),
        health_checker: Some(health_check::HealthChecker::HttpHealthCheck(
            health_check::HttpHealthCheck {
                path: h.path.clone(),
                codec_client_type: codec as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn circuit_breakers(b: &CircuitBreaker) -> CircuitBreakers {
    let n = |value: u32| Some(UInt32Value { value });
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: n(b.max_connections),
            max_pending_requests: n(b.max_pending_requests),
            max_requests: n(b.max_requests),
            max_retries: n(b.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A TCP socket address.
pub fn socket(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}
