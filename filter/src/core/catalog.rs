//! The error catalog: application codes the mesh knows, with their HTTP status, gRPC status,
//! retryability and message. Shared by every service; part of the plugin configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error_code::{is_valid_code, GrpcStatus, MeshCode, MAX_CODE_LEN};

/// At most this many codes in a catalog: it is copied into every listener's configuration.
pub const MAX_CATALOG_CODES: usize = 1000;
const MAX_MESSAGE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// e.g. `CM503001`.
    pub code: String,
    pub http_status: u16,
    pub grpc_status: GrpcStatus,
    /// Whether callers may retry a request that failed with this code.
    pub retryable: bool,
    pub message: String,
}

/// How a reported code relates to the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// In the catalog.
    Catalog,
    /// A well-formed code the catalog does not list: carried, but flagged.
    Unknown,
    /// One of meshkit's built-in mesh codes.
    Mesh,
    /// The app tried to report a code but the carrier was broken (bad base64, protobuf, …).
    Malformed,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Catalog => "catalog",
            Classification::Unknown => "unknown",
            Classification::Mesh => "mesh",
            Classification::Malformed => "malformed",
        }
    }
}

/// The catalog, indexed for lookups on the request path.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    pub fn new(entries: &[CatalogEntry]) -> Catalog {
        Catalog {
            entries: entries
                .iter()
                .map(|e| (e.code.clone(), e.clone()))
                .collect(),
        }
    }

    pub fn get(&self, code: &str) -> Option<&CatalogEntry> {
        self.entries.get(code)
    }

    pub fn classify(&self, code: &str) -> Classification {
        if MeshCode::from_name(code).is_some() {
            Classification::Mesh
        } else if self.entries.contains_key(code) {
            Classification::Catalog
        } else {
            Classification::Unknown
        }
    }

    /// Retryable per the catalog or the mesh code; unknown codes are not retried.
    pub fn retryable(&self, code: &str) -> bool {
        match MeshCode::from_name(code) {
            Some(m) => m.retryable(),
            None => self.get(code).is_some_and(|e| e.retryable),
        }
    }
}

/// Every problem with a catalog, as `(path relative to the catalog, message)`. The filter and
/// the SDK both validate with this, so a spec the SDK accepts is one the filter accepts.
pub fn catalog_problems(entries: &[CatalogEntry]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if entries.len() > MAX_CATALOG_CODES {
        problems.push((
            String::new(),
            format!("at most {MAX_CATALOG_CODES} codes, got {}", entries.len()),
        ));
    }
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("[{i}]");
        if !is_valid_code(e.code.as_bytes()) {
            problems.push((
                format!("{at}.code"),
                format!(
                    "{:?} is not a valid code (1-{MAX_CODE_LEN} of A-Z, a-z, 0-9, '_', '-', '.', \
                     starting with a letter or digit)",
                    e.code
                ),
            ));
        } else if e.code.starts_with("MESH_") {
            problems.push((
                format!("{at}.code"),
                format!(
                    "{:?}: the MESH_ prefix is reserved for meshkit's mesh codes",
                    e.code
                ),
            ));
        } else if let Some(j) = first.insert(&e.code, i) {
            problems.push((
                format!("{at}.code"),
                format!("duplicate code {:?} (first at [{j}])", e.code),
            ));
        }
        if !(400..=599).contains(&e.http_status) {
            problems.push((
                format!("{at}.http_status"),
                format!("must be an error status (400-599), got {}", e.http_status),
            ));
        }
        if e.grpc_status == GrpcStatus::Ok {
            problems.push((
                format!("{at}.grpc_status"),
                "must not be OK for an error".into(),
            ));
        }
        if e.message.len() > MAX_MESSAGE_LEN {
            problems.push((
                format!("{at}.message"),
                format!("at most {MAX_MESSAGE_LEN} bytes, got {}", e.message.len()),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn entry(code: &str, retryable: bool) -> CatalogEntry {
        CatalogEntry {
            code: code.into(),
            http_status: 503,
            grpc_status: GrpcStatus::Unavailable,
            retryable,
            message: "unavailable".into(),
        }
    }

    #[test]
    fn classifies_and_answers_retryability() {
        let c = Catalog::new(&[entry("CM503001", true), entry("CM500003", false)]);
        assert_eq!(c.classify("CM503001"), Classification::Catalog);
        assert_eq!(c.classify("XX1"), Classification::Unknown);
        assert_eq!(c.classify("MESH_UPSTREAM_TIMEOUT"), Classification::Mesh);
        assert!(c.retryable("CM503001"));
        assert!(!c.retryable("CM500003"));
        assert!(!c.retryable("XX1"), "unknown codes are not retried");
        assert!(c.retryable("MESH_UPSTREAM_CONNECT_FAILURE"));
        assert!(!c.retryable("MESH_UPSTREAM_OVERFLOW"));
    }

    #[test]
    fn reports_every_catalog_problem() {
        let mut bad = entry("CM503001", true);
        bad.http_status = 200;
        bad.grpc_status = GrpcStatus::Ok;
        let p = catalog_problems(&[
            entry("CM503001", true),
            bad,
            entry("has space", true),
            entry("MESH_MINE", true),
        ]);
        let paths: Vec<&str> = p.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "[1].code",
                "[1].http_status",
                "[1].grpc_status",
                "[2].code",
                "[3].code"
            ]
        );
        assert!(p[0].1.contains("duplicate code"));
    }
}
