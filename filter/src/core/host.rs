//! What the per-stream logic ([`super::stream`]) needs from Envoy, as one small trait.
//!
//! The filter's proxy-wasm glue implements it with hostcalls; tests implement it with maps and
//! record what was written. Every method is a hostcall (or a few) in the real filter, so the
//! stream asks only for what a decision needs, when it needs it.

use super::access_log::FilterField;
use super::metrics::CardinalityCap;
use super::shared_data::CasStore;

/// A header map of the current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    RequestHeaders,
    ResponseHeaders,
    ResponseTrailers,
}

/// The stream properties the filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// `xds.route_name`: the generated route's name (`<upstream>/<index>`).
    RouteName,
    /// `xds.cluster_name`: the upstream cluster the router used.
    ClusterName,
    /// `response.code_details`: `via_upstream`, or why Envoy replied itself.
    ResponseCodeDetails,
    /// `response.flags`: Envoy's response flags, a u64 little-endian bitmask.
    ResponseFlags,
    /// `upstream.request_attempt_count`: attempts the router made (u64 little-endian).
    RequestAttemptCount,
}

impl Property {
    pub fn path(self) -> &'static [&'static str] {
        match self {
            Property::RouteName => &["xds", "route_name"],
            Property::ClusterName => &["xds", "cluster_name"],
            Property::ResponseCodeDetails => &["response", "code_details"],
            Property::ResponseFlags => &["response", "flags"],
            Property::RequestAttemptCount => &["upstream", "request_attempt_count"],
        }
    }
}

/// Envoy, as one HTTP stream sees it.
pub trait Host: CasStore {
    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>>;
    /// Sets (replaces) a header. The stream only writes a map while Envoy accepts writes to it.
    fn set_header(&mut self, map: Map, name: &str, value: &str);
    fn remove_header(&mut self, map: Map, name: &str);
    fn property(&self, property: Property) -> Option<Vec<u8>>;
    /// Up to `len` bytes of the buffered response body.
    fn response_body(&self, len: usize) -> Vec<u8>;
    /// Replaces the first `len` bytes of the buffered response body.
    fn replace_response_body(&mut self, len: usize, body: &[u8]);
    /// A field of this stream's access log line (filter state).
    fn set_log_field(&mut self, field: FilterField, value: &str);
    /// Wall-clock milliseconds (Envoy's time source; the same for every worker).
    fn now_ms(&self) -> u64;
    fn counter(&mut self, name: &str, n: u64);
    fn gauge(&mut self, name: &str, value: u64);
    /// The VM's cardinality cap for error metric labels (one per VM, shared by its plugins).
    fn with_cap<R>(&mut self, f: impl FnOnce(&mut CardinalityCap) -> R) -> R;
    /// Logs a diagnostic at debug level.
    fn debug(&self, message: &str);
}

/// A numeric property: 8 bytes, little-endian.
pub fn u64_property(host: &impl Host, property: Property) -> Option<u64> {
    let bytes = host.property(property)?;
    let word: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(word))
}

pub fn string_property(host: &impl Host, property: Property) -> Option<String> {
    String::from_utf8(host.property(property)?).ok()
}
