//! One sidecar's complete Envoy bootstrap.

use envoy_types::pb::envoy::config::bootstrap::v3::{bootstrap, Admin, Bootstrap};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value, Struct, Value};

use super::cluster::{cluster, socket, LOCAL_APP_CLUSTER};
use super::listener;
use super::stats;
use crate::model::{Mesh, Service};

/// What the spec does not say but the rendered config needs.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// Path of `meshkit_filter.wasm` as Envoy will see it (absolute, or relative to Envoy's
    /// working directory).
    /// `None`: no meshkit filter (bare Envoy, for benchmarks).
    pub wasm_path: Option<String>,
}

/// The bootstrap of one sidecar: `service` is the instance (see `Service::instance`), named
/// `instance_name` (its node id). Admin on loopback, inbound and outbound listeners, the local
/// app cluster and one cluster per upstream, over every replica of it.
pub fn bootstrap(
    mesh: &Mesh,
    service: &Service,
    instance_name: &str,
    options: &BootstrapOptions,
) -> Bootstrap {
    let mut clusters = vec![cluster(
        LOCAL_APP_CLUSTER,
        &[(service.app.address.to_string(), service.app.port)],
        service.app.protocol,
        &service.app.circuit_breaker,
        None,
    )];
    clusters.extend(service.upstreams.iter().map(|up| {
        cluster(
            &up.service,
            &up.endpoints,
            up.protocol,
            &up.circuit_breaker,
            Some(&up.policy),
        )
    }));
    Bootstrap {
        node: Some(Node {
            id: node_id(instance_name),
            cluster: service.name.clone(),
            metadata: Some(Struct {
                fields: [("meshkit.mesh".to_string(), string_value(&mesh.name))].into(),
            }),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket("127.0.0.1", service.sidecar.admin_port)),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners: vec![
                listener::inbound(mesh, service, instance_name, options.wasm_path.as_deref()),
                listener::outbound(mesh, service, instance_name, options.wasm_path.as_deref()),
            ],
            clusters,
            ..Default::default()
        }),
        stats_config: Some(stats::stats_config()),
        ..Default::default()
    }
}

/// The node id of instance `instance_name`'s sidecar: how it names itself to Envoy's admin,
/// and to meshkit's ADS server.
pub fn node_id(instance_name: &str) -> String {
    format!("{instance_name}-sidecar")
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}
