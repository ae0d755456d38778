//! What the ADS server serves: every node's resources, by type, each type with a version
//! derived from its content.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use meshkit_sdk::envoy::{NodeResources, RemoteWasm};
use meshkit_sdk::model::Mesh;
use meshkit_sdk::render::to_json_value;
use meshkit_sdk::{sidecars, RenderOptions};
use prost::{Message, Name};
use sha2::{Digest, Sha256};

/// The xDS resource types meshkit serves, in make-before-break order: a cluster (and its
/// endpoints) exists before a listener or route refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    /// The meshkit filter's configuration (ECDS).
    Filter,
}

impl ResourceType {
    pub const ORDER: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Filter,
    ];

    pub fn type_url(self) -> String {
        match self {
            ResourceType::Cluster => Cluster::type_url(),
            ResourceType::Endpoint => ClusterLoadAssignment::type_url(),
            ResourceType::Listener => Listener::type_url(),
            ResourceType::Route => RouteConfiguration::type_url(),
            ResourceType::Filter => TypedExtensionConfig::type_url(),
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name for status lines and logs (Envoy's own: CDS, EDS, …).
    pub fn short(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::Filter => "ECDS",
        }
    }

    /// Whether Envoy needs resources of type `later` before it can answer a response of
    /// this type: a new cluster warms until its endpoints come, a listener until its routes
    /// and filter configuration do.
    pub fn warms_with(self, later: ResourceType) -> bool {
        matches!(
            (self, later),
            (ResourceType::Cluster, ResourceType::Endpoint)
                | (
                    ResourceType::Listener,
                    ResourceType::Route | ResourceType::Filter
                )
        )
    }

    /// Whether Envoy asks for every resource of this type (an empty name list), rather than
    /// for resources by name.
    pub fn wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

/// One resource, packed as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub any: Any,
    /// Digest of the resource's canonical JSON (prost's encoding of maps is not stable).
    pub digest: [u8; 32],
}

/// One node's resources of one type, and the version that names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeResources {
    pub version: String,
    pub resources: Vec<Resource>,
}

impl TypeResources {
    pub fn new(resources: Vec<Resource>) -> TypeResources {
        TypeResources {
            version: version_of(resources.iter()),
            resources,
        }
    }

    /// The resources of type `t` named in `names` (all of them for CDS and LDS, which Envoy
    /// asks for by wildcard), and their version.
    pub fn select(&self, t: ResourceType, names: &[String]) -> (String, Vec<Resource>) {
        if t.wildcard() {
            return (self.version.clone(), self.resources.clone());
        }
        let chosen: Vec<Resource> = self
            .resources
            .iter()
            .filter(|r| names.contains(&r.name))
            .cloned()
            .collect();
        (version_of(chosen.iter()), chosen)
    }
}

/// The version of a set of resources: a digest of their digests, so the same content always
/// has the same version, across server restarts too (a reconnecting sidecar that already has
/// it is not sent it again).
pub fn version_of<'a>(resources: impl Iterator<Item = &'a Resource>) -> String {
    let mut h = Sha256::new();
    for r in resources {
        h.update(r.name.as_bytes());
        h.update(r.digest);
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything one sidecar is served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    pub types: BTreeMap<ResourceType, TypeResources>,
}

impl NodeSnapshot {
    pub fn get(&self, t: ResourceType) -> &TypeResources {
        static EMPTY: std::sync::OnceLock<TypeResources> = std::sync::OnceLock::new();
        self.types
            .get(&t)
            .unwrap_or_else(|| EMPTY.get_or_init(|| TypeResources::new(Vec::new())))
    }
}

/// Every node of the mesh, by node id.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, Arc<NodeSnapshot>>,
}

impl Snapshot {
    /// Renders `mesh` for every sidecar; with `wasm`, sidecars fetch the filter's module
    /// from the control plane rather than open `options.wasm_path`.
    pub fn build(
        mesh: &Mesh,
        options: &RenderOptions,
        wasm: Option<&RemoteWasm>,
    ) -> anyhow::Result<Snapshot> {
        let mut nodes = BTreeMap::new();
        for s in sidecars(mesh, options) {
            let r = NodeResources::split(&s.bootstrap, wasm)?;
            let mut types = BTreeMap::new();
            types.insert(ResourceType::Cluster, packed(&r.clusters, |c| &c.name)?);
            types.insert(
                ResourceType::Endpoint,
                packed(&r.endpoints, |e| &e.cluster_name)?,
            );
            types.insert(ResourceType::Listener, packed(&r.listeners, |l| &l.name)?);
            types.insert(ResourceType::Route, packed(&r.routes, |r| &r.name)?);
            types.insert(ResourceType::Filter, packed(&r.filters, |f| &f.name)?);
            nodes.insert(s.node_id, Arc::new(NodeSnapshot { types }));
        }
        Ok(Snapshot { nodes })
    }
}

impl Resource {
    /// `message`, packed, named `name`.
    pub fn of<M: Message + Name>(name: &str, message: &M) -> anyhow::Result<Resource> {
        let canonical = serde_json::to_vec(&to_json_value(message)?)?;
        Ok(Resource {
            name: name.to_string(),
            any: Any {
                type_url: M::type_url(),
                value: message.encode_to_vec(),
            },
            digest: Sha256::digest(&canonical).into(),
        })
    }
}

fn packed<M: Message + Name>(
    messages: &[M],
    name: impl Fn(&M) -> &String,
) -> anyhow::Result<TypeResources> {
    let resources = messages
        .iter()
        .map(|m| Resource::of(name(m), m))
        .collect::<anyhow::Result<_>>()?;
    Ok(TypeResources::new(resources))
}
