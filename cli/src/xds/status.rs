//! What each connected sidecar holds: per node and type, the version last sent, the version it
//! acknowledged, and its last refusal (NACK) with Envoy's reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::snapshot::{ResourceType, Snapshot};
use super::stream::Event;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    pub sent: Option<String>,
    pub acked: Option<String>,
    pub nack: Option<Nack>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub connected: bool,
    /// Streams this node opened so far (a reconnect opens another).
    pub streams: u64,
    stream: u64,
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

/// Shared by every stream task; read by the status view and by whoever waits for a push.
#[derive(Debug, Default)]
pub struct StatusBoard {
    nodes: Mutex<BTreeMap<String, NodeStatus>>,
    next_stream: AtomicU64,
    /// Print each NACK on stderr (`meshkit up` and `meshkit serve` do).
    pub echo: bool,
}

impl StatusBoard {
    pub fn new(echo: bool) -> StatusBoard {
        StatusBoard {
            echo,
            ..Default::default()
        }
    }

    fn with<R>(&self, node: &str, f: impl FnOnce(&mut NodeStatus) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(nodes.entry(node.to_string()).or_default())
    }

    /// A stream from `node` began; its id.
    pub fn connected(&self, node: &str) -> u64 {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed) + 1;
        self.with(node, |n| {
            n.connected = true;
            n.streams += 1;
            n.stream = id;
        });
        id
    }

    /// Stream `id` of `node` ended (unless a newer one replaced it already).
    pub fn disconnected(&self, node: &str, id: u64) {
        self.with(node, |n| {
            if n.stream == id {
                n.connected = false;
            }
        });
    }

    pub fn sent(&self, node: &str, t: ResourceType, version: &str) {
        self.with(node, |n| {
            n.types.entry(t).or_default().sent = Some(version.to_string())
        });
    }

    pub fn record(&self, node: &str, event: Event) {
        if let (true, Event::Nack { t, version, detail }) = (self.echo, &event) {
            eprintln!(
                "{node}: Envoy refused {} {version} (NACK) and keeps its config: {detail}",
                t.short()
            );
        }
        self.with(node, |n| match event {
            Event::Ack { t, version } => n.types.entry(t).or_default().acked = Some(version),
            Event::Nack { t, version, detail } => {
                n.types.entry(t).or_default().nack = Some(Nack { version, detail })
            }
        });
    }

    pub fn nodes(&self) -> BTreeMap<String, NodeStatus> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether every node of `snapshot` is connected and has acknowledged all of it.
    pub fn all_acked(&self, snapshot: &Snapshot) -> bool {
        let nodes = self.nodes();
        snapshot.nodes.iter().all(|(id, snap)| {
            nodes.get(id).is_some_and(|n| {
                n.connected
                    && ResourceType::ORDER.into_iter().all(|t| {
                        let want = snap.get(t);
                        let acked = n.types.get(&t).and_then(|s| s.acked.as_ref());
                        // Envoy never asks for a type it has none of (EDS without clusters).
                        acked == Some(&want.version)
                            || (acked.is_none() && want.resources.is_empty())
                    })
            })
        })
    }

    /// The first refusal of what `snapshot` holds: (node, type, Envoy's reason).
    pub fn refused(&self, snapshot: &Snapshot) -> Option<(String, ResourceType, String)> {
        let nodes = self.nodes();
        snapshot.nodes.iter().find_map(|(id, snap)| {
            let n = nodes.get(id)?;
            ResourceType::ORDER.into_iter().find_map(|t| {
                let nack = n.types.get(&t)?.nack.as_ref()?;
                (nack.version == snap.get(t).version).then(|| (id.clone(), t, nack.detail.clone()))
            })
        })
    }

    /// One line per node: connected or not, and per type its acked version (`*` marks one
    /// that differs from what was sent last), then the last NACK.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (id, n) in self.nodes() {
            let _ = write!(
                out,
                "{id:<24} {:<12}",
                if n.connected {
                    "connected"
                } else {
                    "disconnected"
                }
            );
            for t in ResourceType::ORDER {
                let s = n.types.get(&t).cloned().unwrap_or_default();
                let acked = s.acked.as_deref().unwrap_or("-");
                let mark = if s.sent.is_some() && s.sent != s.acked {
                    "*"
                } else {
                    ""
                };
                let _ = write!(out, " {}={acked}{mark}", t.short());
            }
            out.push('\n');
            for t in ResourceType::ORDER {
                if let Some(nack) = n.types.get(&t).and_then(|s| s.nack.as_ref()) {
                    let _ = writeln!(
                        out,
                        "{:<24} last NACK: {} {}: {}",
                        "",
                        t.short(),
                        nack.version,
                        nack.detail
                    );
                }
            }
        }
        out
    }
}
