//! The same sidecar config, delivered over ADS (one aggregated xDS stream per sidecar).
//!
//! The static bootstrap is the single source of truth: [`NodeResources::split`] takes it apart
//! into xDS resources, so both deliveries render one config. Listeners refer to their route
//! tables by RDS and to the meshkit filter's configuration by ECDS (a catalog or budget change
//! then reaches the filter without touching, or draining, its listener); upstream clusters take
//! their replicas from EDS. [`ads_bootstrap`] keeps only what a sidecar must know before it
//! can reach the server: its node identity, admin, stats settings and the server's address.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::bootstrap::v3::{bootstrap, Bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    api_config_source, async_data_source, config_source, grpc_service, http_uri,
    AggregatedConfigSource, ApiConfigSource, ApiVersion, AsyncDataSource, ConfigSource,
    ExtensionConfigSource, GrpcService, HttpUri, RemoteDataSource, RetryPolicy,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, Rds,
};
use envoy_types::pb::envoy::extensions::wasm::v3::plugin_config;
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::{Message, Name};

use super::any::{duration, pack};
use super::cluster::{cluster as static_cluster, LOCAL_APP_CLUSTER};
use crate::model::{CircuitBreaker, Protocol};

/// The bootstrap cluster through which a sidecar reaches meshkit's ADS server.
pub const XDS_CLUSTER: &str = "meshkit-xds";

/// The cluster (delivered by CDS) through which a sidecar fetches the filter's module.
pub const WASM_CLUSTER: &str = "meshkit-wasm";

/// Where the control plane serves the filter's module.
pub const WASM_HTTP_PATH: &str = "/meshkit_filter.wasm";

/// How long a sidecar waits for the module.
const WASM_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The meshkit filter's module, fetched by each sidecar from meshkit's control plane over
/// HTTP, and checked by Envoy against its sha256 before it loads it: a sidecar on another
/// host needs no local copy, and a module that is not the one the server rendered the config
/// for is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWasm {
    /// The control plane's HTTP address, as the sidecars reach it.
    pub server: SocketAddr,
    /// Lowercase hex.
    pub sha256: String,
}

/// One sidecar's xDS resources, each kind in the order Envoy should see them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeResources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// The meshkit filter's configuration per listener (ECDS), named as the listener's filter.
    pub filters: Vec<TypedExtensionConfig>,
    /// Where the filter's module comes from, if not a local file.
    pub wasm: Option<RemoteWasm>,
}

/// Points `wasm`'s VM at the control plane's copy of the module.
fn fetch_from(wasm: &mut Wasm, remote: &RemoteWasm) {
    let Some(plugin_config::Vm::VmConfig(vm)) = wasm.config.as_mut().and_then(|c| c.vm.as_mut())
    else {
        return;
    };
    vm.code = Some(AsyncDataSource {
        specifier: Some(async_data_source::Specifier::Remote(RemoteDataSource {
            http_uri: Some(HttpUri {
                uri: format!("http://{}{WASM_HTTP_PATH}", remote.server),
                timeout: Some(duration(WASM_FETCH_TIMEOUT)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(WASM_CLUSTER.into())),
            }),
            sha256: remote.sha256.clone(),
            retry_policy: Some(RetryPolicy {
                num_retries: Some(UInt32Value { value: 3 }),
                ..Default::default()
            }),
        })),
    });
}

/// A resource that should have been well-formed was not (a bug in the generator).
#[derive(Debug, thiserror::Error)]
#[error("cannot split the bootstrap into xDS resources: {0}")]
pub struct SplitError(String);

impl NodeResources {
    /// Takes `static_bootstrap` (as [`super::bootstrap`] renders it) apart; with `wasm`, the
    /// filter's module comes from the control plane instead of a local file.
    pub fn split(
        static_bootstrap: &Bootstrap,
        wasm: Option<&RemoteWasm>,
    ) -> Result<NodeResources, SplitError> {
        let mut out = NodeResources {
            wasm: wasm.cloned(),
            ..Default::default()
        };
        let resources = static_bootstrap
            .static_resources
            .clone()
            .unwrap_or_default();
        for mut c in resources.clusters {
            // The local app and DNS-resolved upstreams keep their endpoints inline: there is
            // nothing EDS would add.
            let is_static = c.cluster_discovery_type
                == Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                ));
            if c.name != LOCAL_APP_CLUSTER && is_static {
                if let Some(assignment) = c.load_assignment.take() {
                    out.endpoints.push(assignment);
                }
                c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Eds as i32,
                ));
                c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                    eds_config: Some(ads()),
                    service_name: c.name.clone(),
                });
            }
            out.clusters.push(c);
        }
        for mut l in resources.listeners {
            for chain in &mut l.filter_chains {
                for f in &mut chain.filters {
                    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                        continue;
                    };
                    let mut hcm: HttpConnectionManager = unpack(any)?;
                    out.split_connection_manager(&mut hcm)?;
                    f.config_type = Some(filter::ConfigType::TypedConfig(pack(&hcm)));
                }
            }
            out.listeners.push(l);
        }
        if let (Some(w), false) = (&out.wasm, out.filters.is_empty()) {
            let mut c = static_cluster(
                WASM_CLUSTER,
                &[(w.server.ip().to_string(), w.server.port())],
                Protocol::Http1,
                &CircuitBreaker::default(),
                None,
            );
            c.circuit_breakers = None;
            out.clusters.push(c);
        }
        Ok(out)
    }

    /// Moves `hcm`'s route table to RDS and its meshkit filter's configuration to ECDS.
    fn split_connection_manager(
        &mut self,
        hcm: &mut HttpConnectionManager,
    ) -> Result<(), SplitError> {
        if let Some(http_connection_manager::RouteSpecifier::RouteConfig(routes)) =
            hcm.route_specifier.take()
        {
            hcm.route_specifier = Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: Some(ads()),
                route_config_name: routes.name.clone(),
            }));
            self.routes.push(routes);
        }
        for f in &mut hcm.http_filters {
            let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if any.type_url != type_url::<Wasm>() {
                continue;
            }
            let mut wasm: Wasm = unpack(any)?;
            if let Some(remote) = &self.wasm {
                fetch_from(&mut wasm, remote);
            }
            // The ECDS resource is named as the filter; the plugin's name is distinct per
            // listener, and stays what Envoy's logs call it.
            let name = wasm
                .config
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            self.filters.push(TypedExtensionConfig {
                name: name.clone(),
                typed_config: Some(pack(&wasm)),
            });
            f.name = name;
            f.config_type = Some(http_filter::ConfigType::ConfigDiscovery(
                ExtensionConfigSource {
                    config_source: Some(ads()),
                    // Until its configuration came, the listener is not ready: no request
                    // passes a sidecar without meshkit.
                    apply_default_config_without_warming: false,
                    type_urls: vec![type_url::<Wasm>()],
                    ..Default::default()
                },
            ));
        }
        Ok(())
    }
}

/// The bootstrap of a sidecar whose resources come from the ADS server at `server`: the
/// static bootstrap's node, admin and stats settings, and the server's cluster.
pub fn ads_bootstrap(static_bootstrap: &Bootstrap, server: SocketAddr) -> Bootstrap {
    let mut xds = static_cluster(
        XDS_CLUSTER,
        &[(server.ip().to_string(), server.port())],
        Protocol::Http2,
        &CircuitBreaker::default(),
        None,
    );
    // One long-lived stream: nothing to break.
    xds.circuit_breakers = None;
    Bootstrap {
        node: static_bootstrap.node.clone(),
        admin: static_bootstrap.admin.clone(),
        stats_config: static_bootstrap.stats_config.clone(),
        static_resources: Some(bootstrap::StaticResources {
            clusters: vec![xds],
            ..Default::default()
        }),
        dynamic_resources: Some(bootstrap::DynamicResources {
            ads_config: Some(ApiConfigSource {
                api_type: api_config_source::ApiType::Grpc as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: XDS_CLUSTER.into(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                set_node_on_first_message_only: true,
                ..Default::default()
            }),
            cds_config: Some(ads()),
            lds_config: Some(ads()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// `type.googleapis.com/<full name>` of message type `M`.
pub fn type_url<M: Name>() -> String {
    M::type_url()
}

fn unpack<M: Message + Name + Default>(any: &Any) -> Result<M, SplitError> {
    if any.type_url != M::type_url() {
        return Err(SplitError(format!(
            "expected {}, found {}",
            M::type_url(),
            any.type_url
        )));
    }
    M::decode(any.value.as_slice()).map_err(|e| SplitError(format!("{}: {e}", M::full_name())))
}
