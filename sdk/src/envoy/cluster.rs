//! Clusters: the local app (inbound side) and one per upstream service (outbound side).

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster, CircuitBreakers, Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, Http2ProtocolOptions, RoutingPriority, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::any::{duration, pack};
use crate::model::{CircuitBreaker, Protocol};

/// Name of the cluster that reaches the sidecar's own app.
pub const LOCAL_APP_CLUSTER: &str = "local_app";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster with one endpoint: STATIC for an IP address, STRICT_DNS for a host name. Its
/// circuit breaker is always explicit: Envoy's defaults allow only 3 retries in flight, which
/// would silently override the retry budget.
pub fn cluster(
    name: &str,
    host: &str,
    port: u16,
    protocol: Protocol,
    breaker: &CircuitBreaker,
) -> Cluster {
    let discovery = if host.parse::<std::net::IpAddr>().is_ok() {
        cluster::DiscoveryType::Static
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(host, port)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut c = Cluster {
        name: name.into(),
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        circuit_breakers: Some(circuit_breakers(breaker)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
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
