//! Clusters: the local app (inbound side) and one per upstream service (outbound side).

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, Http2ProtocolOptions, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};

use super::any::{duration, pack};
use crate::model::Protocol;

/// Name of the cluster that reaches the sidecar's own app.
pub const LOCAL_APP_CLUSTER: &str = "local_app";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster with one endpoint: STATIC for an IP address, STRICT_DNS for a host name.
pub fn cluster(name: &str, host: &str, port: u16, protocol: Protocol) -> Cluster {
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
