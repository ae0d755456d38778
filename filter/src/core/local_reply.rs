//! Uniform error responses for failures Envoy generates (connect failure, timeout, no route…):
//! an RFC 9457 `application/problem+json` body for HTTP callers, `grpc-status`,
//! `grpc-message` and `grpc-status-details-bin` for gRPC callers.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::catalog::Catalog;
use super::error_code::MeshCode;
use super::grpc_status::encode_details;
use super::report::ErrorReport;

/// Per-listener switch for rewriting Envoy's local replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalReplies {
    /// Leave them as Envoy made them (still logged and counted).
    Off,
    /// Add the meshkit headers only.
    Headers,
    /// meshkit headers plus a uniform body (problem+json, or gRPC status details).
    #[default]
    HeadersAndBody,
}

/// Longest Envoy-made body quoted in `detail`.
pub const MAX_DETAIL_LEN: usize = 512;

/// The problem+json body for an HTTP caller.
pub fn problem_json(
    report: &ErrorReport,
    status: u16,
    detail: &str,
    request_id: Option<&str>,
) -> String {
    let code = report.code.as_deref().unwrap_or_default();
    let title = MeshCode::from_name(code).map_or("Request failed", MeshCode::title);
    let detail: String = detail.chars().take(MAX_DETAIL_LEN).collect();
    json!({
        "type": format!("urn:meshkit:error:{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "origin": report.origin,
        "retryable": report.retryable,
        "request_id": request_id,
    })
    .to_string()
}

/// `grpc-status`, `grpc-message`, `grpc-status-details-bin` for a gRPC caller.
pub fn grpc_headers(report: &ErrorReport, catalog: &Catalog) -> Vec<(&'static str, String)> {
    let code = report.code.as_deref().unwrap_or_default();
    let (status, message) = match MeshCode::from_name(code) {
        Some(m) => (m.grpc_status().code(), m.title().to_string()),
        None => catalog
            .get(code)
            .map_or((2, "Request failed".to_string()), |e| {
                (e.grpc_status.code(), e.message.clone())
            }),
    };
    let retryable = report.retryable.to_string();
    let details = encode_details(
        status,
        &message,
        code,
        &[("origin", &report.origin), ("retryable", &retryable)],
    );
    vec![
        ("grpc-status", status.to_string()),
        // grpc-message is percent-encoded; titles and catalog messages are checked ASCII text,
        // so only '%' and non-printables need escaping.
        ("grpc-message", percent_encode(&message)),
        ("grpc-status-details-bin", details),
    ]
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Classification;
    use crate::core::extract::Source;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn report() -> ErrorReport {
        ErrorReport {
            code: Some("MESH_UPSTREAM_CONNECT_FAILURE".into()),
            origin: "users".into(),
            retryable: true,
            classification: Classification::Mesh,
            source: Source::LocalReply,
            cause: None,
            malformed: None,
        }
    }

    #[test]
    fn problem_body_has_the_rfc_9457_members_and_ours() {
        let body = problem_json(&report(), 503, "upstream connect error", Some("r-1"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "urn:meshkit:error:MESH_UPSTREAM_CONNECT_FAILURE");
        assert_eq!(v["title"], "Upstream connection failed");
        assert_eq!(v["status"], 503);
        assert_eq!(v["detail"], "upstream connect error");
        assert_eq!(v["code"], "MESH_UPSTREAM_CONNECT_FAILURE");
        assert_eq!(v["origin"], "users");
        assert_eq!(v["retryable"], true);
        assert_eq!(v["request_id"], "r-1");
        let long = "x".repeat(10_000);
        let v: serde_json::Value =
            serde_json::from_str(&problem_json(&report(), 503, &long, None)).unwrap();
        assert_eq!(v["detail"].as_str().unwrap().len(), MAX_DETAIL_LEN);
        assert!(v["request_id"].is_null());
    }

    #[test]
    fn grpc_status_for_a_mesh_code() {
        let h = grpc_headers(&report(), &Catalog::default());
        assert_eq!(h[0], ("grpc-status", "14".to_string()));
        assert_eq!(
            h[1],
            ("grpc-message", "Upstream connection failed".to_string())
        );
        assert_eq!(percent_encode("50% off\n"), "50%25 off%0A");
    }
}
