//! One sidecar's ADS stream (state of the world) as plain state: what to send in answer to
//! each request and after each new snapshot. No I/O, so every protocol rule is unit-tested.
//!
//! The rules:
//! - each type has its own version (see [`super::snapshot`]) and each response a new nonce;
//! - an ACK echoes the nonce of the latest response of its type; a NACK carries
//!   `error_detail`: Envoy keeps its last good config, and that version is not sent again
//!   (a newer one is);
//! - a request with an older nonce is stale and ignored (a newer response is on its way);
//! - make-before-break: responses go out in the order CDS, EDS, LDS, RDS, ECDS, each once the
//!   ones before it are answered, so a cluster and its endpoints exist before a route refers
//!   to it (except what Envoy needs to answer: the endpoints of clusters it is warming, and the
//!   routes and filter configuration of listeners); a cluster that left the spec stays in CDS,
//!   with its endpoints, until listeners and routes no longer refer to it.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::snapshot::{version_of, NodeSnapshot, Resource, ResourceType};

/// What a request told the server about the config Envoy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ack {
        t: ResourceType,
        version: String,
    },
    Nack {
        t: ResourceType,
        /// The version Envoy refused (it keeps the one before).
        version: String,
        detail: String,
    },
}

#[derive(Debug, Default)]
struct TypeState {
    /// Envoy asked for this type on this stream.
    subscribed: bool,
    /// The names it asked for, sorted (empty: all, for CDS and LDS).
    names: Vec<String>,
    sent: Option<Sent>,
    /// The latest response is not answered yet.
    pending: bool,
    acked: Option<String>,
    /// The version Envoy refused: never sent again.
    rejected: Option<String>,
}

#[derive(Debug, Clone)]
struct Sent {
    nonce: String,
    version: String,
    names: Vec<String>,
    resources: Vec<Resource>,
}

#[derive(Debug)]
pub struct Stream {
    nonces: u64,
    types: BTreeMap<ResourceType, TypeState>,
    identifier: String,
}

impl Stream {
    /// `identifier`: the server's name in every response (`control_plane.identifier`).
    pub fn new(identifier: &str) -> Stream {
        Stream {
            nonces: 0,
            types: ResourceType::ORDER
                .into_iter()
                .map(|t| (t, TypeState::default()))
                .collect(),
            identifier: identifier.to_string(),
        }
    }

    /// Takes one request from Envoy; returns what it says about Envoy's config, and what to
    /// send now.
    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &NodeSnapshot,
    ) -> (Option<Event>, Vec<DiscoveryResponse>) {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            return (None, Vec::new());
        };
        let st = self.state(t);
        let mut event = None;
        if !req.response_nonce.is_empty() {
            let Some(sent) = st.sent.as_ref().filter(|s| s.nonce == req.response_nonce) else {
                // Stale: Envoy answers an older response; the newer one settles it.
                return (None, Vec::new());
            };
            st.pending = false;
            event = Some(match &req.error_detail {
                Some(status) => {
                    st.rejected = Some(sent.version.clone());
                    Event::Nack {
                        t,
                        version: sent.version.clone(),
                        detail: status.message.clone(),
                    }
                }
                None => {
                    st.acked = Some(req.version_info.clone());
                    Event::Ack {
                        t,
                        version: req.version_info.clone(),
                    }
                }
            });
        }
        st.subscribed = true;
        let mut names = req.resource_names.clone();
        names.sort();
        names.dedup();
        st.names = names;
        (event, self.next(snap))
    }

    /// A new snapshot: what to send now (the rest follows as Envoy answers).
    pub fn on_snapshot(&mut self, snap: &NodeSnapshot) -> Vec<DiscoveryResponse> {
        self.next(snap)
    }

    /// The version Envoy last acknowledged for `t` on this stream.
    pub fn acked(&self, t: ResourceType) -> Option<&str> {
        self.types.get(&t).and_then(|s| s.acked.as_deref())
    }

    fn state(&mut self, t: ResourceType) -> &mut TypeState {
        self.types.entry(t).or_default()
    }

    /// The first type, in make-before-break order, that has something new to send, unless an
    /// earlier type still waits for Envoy's answer (and is not one Envoy needs it to answer).
    fn next(&mut self, snap: &NodeSnapshot) -> Vec<DiscoveryResponse> {
        let mut waiting: Option<ResourceType> = None;
        for t in ResourceType::ORDER {
            // Envoy answers CDS only once the new clusters have their endpoints (warming), and
            // a listener warms with its routes and filter configuration: those may go out
            // while it waits; nothing later may.
            if let Some(w) = waiting {
                if !w.warms_with(t) {
                    return Vec::new();
                }
            }
            let (version, resources) = self.desired(t, snap);
            let st = self.state(t);
            if st.pending {
                waiting = waiting.or(Some(t));
                continue;
            }
            if !st.subscribed {
                continue;
            }
            let up_to_date = st
                .sent
                .as_ref()
                .is_some_and(|s| s.version == version && s.names == st.names);
            let refused = st.sent.is_some() && st.rejected.as_deref() == Some(version.as_str());
            // After a refusal, a spec reverted to what Envoy still holds has nothing to send.
            let holds = st.acked.as_deref() == Some(version.as_str())
                && st.sent.as_ref().is_some_and(|s| s.names == st.names);
            if up_to_date || refused || holds {
                continue;
            }
            self.nonces += 1;
            let nonce = self.nonces.to_string();
            let st = self.state(t);
            st.pending = true;
            st.sent = Some(Sent {
                nonce: nonce.clone(),
                version: version.clone(),
                names: st.names.clone(),
                resources: resources.clone(),
            });
            return vec![DiscoveryResponse {
                version_info: version,
                resources: resources.into_iter().map(|r| r.any).collect(),
                type_url: t.type_url(),
                nonce,
                control_plane: Some(ControlPlane {
                    identifier: self.identifier.clone(),
                }),
                ..Default::default()
            }];
        }
        Vec::new()
    }

    /// What `t` should hold now: the snapshot's resources Envoy asked for, and for CDS and
    /// EDS the clusters and endpoints it still may need (below).
    fn desired(&self, t: ResourceType, snap: &NodeSnapshot) -> (String, Vec<Resource>) {
        let names = self
            .types
            .get(&t)
            .map(|s| s.names.as_slice())
            .unwrap_or(&[]);
        let (version, mut resources) = snap.get(t).select(t, names);
        let keeps = matches!(t, ResourceType::Cluster | ResourceType::Endpoint);
        if !keeps || self.routes_settled(snap) {
            return (version, resources);
        }
        // A cluster that left the spec is kept, with its endpoints, until the listeners and
        // routes that may refer to it are replaced: a request routed to it meanwhile still
        // finds it, and its replicas.
        let kept: Vec<Resource> = self
            .types
            .get(&t)
            .and_then(|s| s.sent.as_ref())
            .map(|s| s.resources.as_slice())
            .unwrap_or(&[])
            .iter()
            .filter(|old| !resources.iter().any(|r| r.name == old.name))
            .filter(|old| t.wildcard() || names.contains(&old.name))
            .cloned()
            .collect();
        if kept.is_empty() {
            return (version, resources);
        }
        resources.extend(kept);
        (version_of(resources.iter()), resources)
    }

    /// Whether Envoy has acknowledged the snapshot's listeners and routes (or never asked).
    fn routes_settled(&self, snap: &NodeSnapshot) -> bool {
        [ResourceType::Listener, ResourceType::Route]
            .into_iter()
            .all(|t| {
                let Some(st) = self.types.get(&t) else {
                    return true;
                };
                if !st.subscribed {
                    return true;
                }
                let (version, _) = snap.get(t).select(t, &st.names);
                !st.pending && st.acked.as_deref() == Some(version.as_str())
            })
    }
}

#[cfg(test)]
mod tests;
