//! What the response callbacks read: the head of a response, where an error came from, and
//! the host's header maps as [`HeaderSource`]s.

use crate::core::error_code::MeshCode;
use crate::core::headers::HeaderSource;
use crate::core::host::{string_property, u64_property, Host, Map, Property};
use crate::core::retry_control::RouterFailure;

/// Whether a `content-type` is gRPC, as Envoy decides it: `application/grpc`, optionally
/// followed by `+format`. gRPC-Web is not gRPC (it has its own filter and wire format).
pub fn is_grpc(content_type: &[u8]) -> bool {
    match content_type.strip_prefix(b"application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with(b"+"),
        None => false,
    }
}

/// The response as the headers callback sees it.
pub struct ResponseHead {
    pub status: u16,
    pub is_error: bool,
    /// `content-type` is gRPC. For a reply Envoy made itself this also says the caller speaks
    /// gRPC: Envoy answers gRPC requests in gRPC.
    pub grpc: bool,
    /// A gRPC response whose status comes in trailers.
    pub status_in_trailers: bool,
}

/// Where Envoy's reply came from, read only for error responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// `Some` when Envoy generated the response itself.
    pub local_reply: Option<MeshCode>,
    pub flags: u64,
    pub via_upstream: bool,
}

impl ResponseHead {
    pub fn read(host: &impl Host, end_of_stream: bool) -> ResponseHead {
        let status = host
            .header(Map::ResponseHeaders, ":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok())
            .unwrap_or(0);
        let grpc = host
            .header(Map::ResponseHeaders, "content-type")
            .is_some_and(|ct| is_grpc(&ct));
        // Only a gRPC response carries grpc-status: other responses skip the read.
        let grpc_status = grpc
            .then(|| host.header(Map::ResponseHeaders, "grpc-status"))
            .flatten();
        ResponseHead {
            status,
            is_error: status >= 400 || grpc_status.as_deref().is_some_and(|s| s != b"0"),
            grpc,
            status_in_trailers: grpc && grpc_status.is_none() && !end_of_stream,
        }
    }
}

/// Where an error response came from: Envoy itself (and why), or the upstream. Only a reply
/// Envoy made has its flags read here (they say why); an upstream's response has them read
/// later, and only if the retry decision needs them (see `Stream::record_retry`).
pub fn origin(host: &impl Host) -> Origin {
    let details = string_property(host, Property::ResponseCodeDetails);
    let via_upstream = details.as_deref() == Some("via_upstream");
    let flags = if via_upstream {
        0
    } else {
        u64_property(host, Property::ResponseFlags).unwrap_or(0)
    };
    // Only called for errors (HTTP ≥ 400, or a gRPC status: Envoy's gRPC replies are 200).
    // An error Envoy made for a reason meshkit has no name for is still the mesh's, never the
    // app's (nor a remembered upstream cause's).
    let local_reply = match details {
        Some(_) if !via_upstream => {
            Some(MeshCode::from_response_flags(flags).unwrap_or(MeshCode::LocalReply))
        }
        _ => None,
    };
    Origin {
        local_reply,
        flags,
        via_upstream,
    }
}

pub fn router_failure_of(mesh: MeshCode) -> RouterFailure {
    match mesh {
        MeshCode::UpstreamConnectFailure => RouterFailure::ConnectFailure,
        MeshCode::UpstreamReset => RouterFailure::Reset,
        _ => RouterFailure::Other,
    }
}

/// A header map of the host, for the readers that take a [`HeaderSource`].
///
pub struct RequestHeaders<'a, H>(pub &'a H);
pub struct ResponseHeaders<'a, H>(pub &'a H);
pub struct Trailers<'a, H>(pub &'a H);

impl<H: Host> HeaderSource for RequestHeaders<'_, H> {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.header(Map::RequestHeaders, name)
    }
}

impl<H: Host> HeaderSource for ResponseHeaders<'_, H> {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.header(Map::ResponseHeaders, name)
    }
}

impl<H: Host> HeaderSource for Trailers<'_, H> {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.header(Map::ResponseTrailers, name)
    }
}
