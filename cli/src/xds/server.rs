//! The ADS gRPC service: one task per sidecar stream, fed by the latest snapshot.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::snapshot::{ResourceType, Snapshot};
use super::status::StatusBoard;
use super::stream::Stream;

/// How the server names itself in every response.
const IDENTIFIER: &str = "meshkit";

/// A running ADS server. Stopping (or dropping) it ends every stream and closes every
/// connection: sidecars keep the config they have and reconnect to whatever serves next.
pub struct AdsServer {
    pub addr: SocketAddr,
    snapshot: watch::Sender<Arc<Snapshot>>,
    pub status: Arc<StatusBoard>,
    stopping: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AdsServer {
    /// Serves `snapshot` on `listener`; `echo`: print every NACK on stderr.
    pub fn start(
        listener: TcpListener,
        snapshot: Snapshot,
        echo: bool,
    ) -> anyhow::Result<AdsServer> {
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let status = Arc::new(StatusBoard::new(echo));
        let (stopping, mut stop) = watch::channel(false);
        let service = Ads {
            snapshot: rx,
            status: status.clone(),
            stopping: stop.clone(),
        };
        let task = tokio::spawn(async move {
            // On stop, streams end (below) and connections get a GOAWAY, so a sidecar
            // reconnects rather than opening a new stream on a connection to this server.
            let result = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("meshkit xDS server on {addr} stopped: {e}");
            }
        });
        Ok(AdsServer {
            addr,
            snapshot: tx,
            status,
            stopping,
            task,
        })
    }

    /// Ends every stream, closes every connection and the listener.
    pub async fn stop(mut self) {
        self.stopping.send_replace(true);
        let task = &mut self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }

    /// Pushes `snapshot` to every connected sidecar (each gets what changed for it).
    pub fn update(&self, snapshot: Snapshot) {
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

impl Drop for AdsServer {
    fn drop(&mut self) {
        self.stopping.send_replace(true);
        self.task.abort();
    }
}

struct Ads {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    status: Arc<StatusBoard>,
    stopping: watch::Receiver<bool>,
}

type Responses<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = request.into_inner();
        // Envoy names itself in the first request only (`set_node_on_first_message_only`).
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before its first request"))?;
        let node = first
            .node
            .as_ref()
            .map(|n| n.id.clone())
            .unwrap_or_default();
        if *self.stopping.borrow() {
            return Err(Status::unavailable("meshkit's xDS server is stopping"));
        }
        if !self.snapshot.borrow().nodes.contains_key(&node) {
            return Err(Status::permission_denied(format!(
                "unknown node id {node:?}: not a sidecar of this mesh"
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        let snapshot = self.snapshot.clone();
        let status = self.status.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(serve_stream(
            node, first, inbound, snapshot, status, stopping, tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "meshkit serves state-of-the-world ADS (api_type GRPC)",
        ))
    }
}

/// One sidecar's stream until either side ends it.
async fn serve_stream(
    node: String,
    first: DiscoveryRequest,
    mut inbound: Streaming<DiscoveryRequest>,
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    status: Arc<StatusBoard>,
    mut stopping: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let stream_id = status.connected(&node);
    let mut stream = Stream::new(IDENTIFIER);
    let mut current = snapshot
        .borrow_and_update()
        .nodes
        .get(&node)
        .cloned()
        .unwrap_or_default();
    let mut request = Some(first);
    loop {
        let responses = match request.take() {
            Some(req) => {
                let (event, responses) = stream.on_request(&req, &current);
                if let Some(e) = event {
                    status.record(&node, e);
                }
                responses
            }
            None => {
                // A node that left the spec keeps what it has: nothing new is sent to it.
                if let Some(n) = snapshot.borrow_and_update().nodes.get(&node) {
                    current = n.clone();
                }
                stream.on_snapshot(&current)
            }
        };
        for r in responses {
            if let Some(t) = ResourceType::from_type_url(&r.type_url) {
                status.sent(&node, t, &r.version_info);
            }
            if tx.send(Ok(r)).await.is_err() {
                status.disconnected(&node, stream_id);
                return;
            }
        }
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => request = Some(req),
                Ok(None) | Err(_) => break,
            },
            changed = snapshot.changed() => if changed.is_err() { break },
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    status.disconnected(&node, stream_id);
}
