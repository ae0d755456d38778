//! How the core reads HTTP headers without knowing about proxy-wasm.

/// Read access to one header map (request or response). Values are raw bytes: Envoy lets
/// non-UTF-8 octets through, so the core decides what to do with them instead of the host
/// panicking while converting.
pub trait HeaderSource {
    /// The value of header `name` (lower-case), or `None` if absent.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

/// A header map held in memory: what native tests and benchmarks use in place of Envoy's.
#[derive(Debug, Default, Clone)]
pub struct StaticHeaders(pub Vec<(String, Vec<u8>)>);

impl StaticHeaders {
    pub fn with(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.0.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

impl HeaderSource for StaticHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}
