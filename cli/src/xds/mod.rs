//! meshkit's control plane: an ADS server (state-of-the-world xDS over one gRPC stream per
//! sidecar, tonic's server from envoy-types) that serves each sidecar the resources the SDK
//! renders for it, and pushes every valid spec change.
//!
//! - [`snapshot`]: what is served, per node and type, with content-derived versions;
//! - [`stream`]: the protocol of one stream, as plain state (nonces, ACK/NACK, ordering);
//! - [`server`]: the gRPC service and its tasks;
//! - [`status`]: what each node acknowledged or refused;
//! - [`http`]: the filter's module for sidecars to fetch, and the status page;
//! - [`control_plane`]: all of it assembled, as `meshkit serve` and `meshkit up` run it.

pub mod control_plane;
pub mod http;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod stream;

pub use control_plane::ControlPlane;
pub use server::AdsServer;
pub use snapshot::{ResourceType, Snapshot};
pub use status::StatusBoard;
