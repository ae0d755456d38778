//! The scripted requests `meshkit up --demo` sends once the mesh is ready, for any mesh: one
//! that succeeds end to end and one that fails at the deepest service, each with the access
//! log lines it must produce.
//!
//! Traffic enters at the first service no other service calls. Each demo app calls its
//! upstreams in spec order and answers a plain 500 as soon as one fails, so a failure at the
//! deepest service (reached through first upstreams) skips the later calls of every service on
//! the way: the line count is exact for that path, not the whole tree. A retried hop logs each
//! attempt, so counts are minimums.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use meshkit_sdk::model::Mesh;

use crate::http_client::{self, Response};

/// One scripted request.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    pub request_id: String,
    pub description: String,
    /// `x-demo` directives (see [`crate::demo_app`]).
    pub directives: Option<String>,
    /// Access log lines it produces across the mesh, at least.
    pub min_lines: usize,
}

/// The demo for `mesh`: where traffic enters, and what is sent.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    pub entry: String,
    pub requests: Vec<DemoRequest>,
}

pub fn plan(mesh: &Mesh) -> DemoPlan {
    let entry = entry_service(mesh).to_string();
    let path = first_upstream_path(mesh, &entry);
    let deepest = path.last().cloned().unwrap_or_else(|| entry.clone());
    // A code the spec's own catalog knows: preferably a retryable 5xx (the nearest caller
    // retries it), else any 5xx, else any entry; with an empty catalog, a plain 503.
    let catalog = &mesh.errors.catalog;
    let entry_5xx = |retryable: bool| {
        catalog
            .iter()
            .find(|e| e.http_status >= 500 && (e.retryable || !retryable))
    };
    let code = entry_5xx(true)
        .or_else(|| entry_5xx(false))
        .or(catalog.first());
    let (directives, description) = match code {
        Some(e) => (
            // (`grpc=` is for a gRPC service: the catalog's status for the code.)
            format!(
                "{deepest}.status={};{deepest}.code={};{deepest}.grpc={}",
                e.http_status,
                e.code,
                e.grpc_status.name()
            ),
            format!(
                "{deepest} answers {} with app error code {}",
                e.http_status, e.code
            ),
        ),
        None => (
            format!("{deepest}.status=503"),
            format!("{deepest} answers 503 (the catalog is empty: no app code)"),
        ),
    };
    // Every service on the path logs its inbound line, and each caller one outbound line.
    let failing_lines = 2 * path.len().saturating_sub(1) + 1;
    DemoPlan {
        requests: vec![
            DemoRequest {
                request_id: "demo-ok-1".into(),
                description: "every hop succeeds".into(),
                directives: None,
                min_lines: lines_per_request(mesh, &entry, &mut HashSet::new()),
            },
            DemoRequest {
                request_id: "demo-fail-1".into(),
                description,
                directives: Some(directives),
                min_lines: failing_lines,
            },
        ],
        entry,
    }
}

/// The first service no other service calls: where outside traffic enters.
pub fn entry_service(mesh: &Mesh) -> &str {
    mesh.entry_service()
}

/// `from`, then its first upstream, then that one's first upstream, to the end of the chain.
fn first_upstream_path(mesh: &Mesh, from: &str) -> Vec<String> {
    let mut path = vec![from.to_string()];
    while let Some(next) = path
        .last()
        .and_then(|s| mesh.service(s))
        .and_then(|s| s.upstreams.first())
        .map(|u| u.service.clone())
    {
        if path.contains(&next) || path.len() > mesh.services.len() {
            break; // specs are acyclic; never loop on one that is not
        }
        path.push(next);
    }
    path
}

/// Access log lines one request into `service` produces when every hop is reached: its
/// inbound line, plus an outbound line and the upstream's lines per call.
pub fn lines_per_request<'m>(
    mesh: &'m Mesh,
    service: &'m str,
    path: &mut HashSet<&'m str>,
) -> usize {
    let Some(s) = mesh.service(service) else {
        return 0;
    };
    if !path.insert(&s.name) {
        return 0;
    }
    let n = 1 + s
        .upstreams
        .iter()
        .map(|u| 1 + lines_per_request(mesh, &u.service, path))
        .sum::<usize>();
    path.remove(s.name.as_str());
    n
}

/// Sends `request` to `entry` with a fixed request id and trace context.
pub async fn send(
    entry: SocketAddr,
    request: &DemoRequest,
) -> Result<Response, http_client::HttpError> {
    let mut headers = vec![
        ("x-request-id".to_string(), request.request_id.clone()),
        (
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        ),
        ("user-agent".to_string(), "meshkit-demo".to_string()),
    ];
    if let Some(d) = &request.directives {
        headers.push(("x-demo".to_string(), d.clone()));
    }
    http_client::send(entry, Method::GET, "/", &headers, Duration::from_secs(30)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshkit_sdk::{load_str, Format};

    fn mesh(services: &str, catalog: &str) -> Mesh {
        let mut text = format!("version: 1\nmesh: m\nerrors:\n  catalog: [{catalog}]\nservices:\n");
        for (i, line) in services.lines().enumerate() {
            let (name, ups) = line.split_once(':').unwrap();
            text.push_str(&format!(
                "  - name: {name}\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
                10000 + i, 11000 + i, 12000 + i, 13000 + i
            ));
            let ups: Vec<&str> = ups
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            if !ups.is_empty() {
                text.push_str("    upstreams:\n");
                for u in ups {
                    text.push_str(&format!(
                        "      - service: {u}\n        routes: [{{ match: {{ prefix: /{u} }} }}]\n"
                    ));
                }
            }
        }
        load_str(&text, Format::Yaml).unwrap()
    }

    #[test]
    fn a_chain_logs_five_lines_both_ways() {
        let m = mesh("a: b\nb: c\nc:", "");
        let p = plan(&m);
        assert_eq!(p.entry, "a");
        assert_eq!(p.requests[0].min_lines, 5);
        assert_eq!(p.requests[1].min_lines, 5);
        assert_eq!(p.requests[1].directives.as_deref(), Some("c.status=503"));
    }

    #[test]
    fn a_tree_fails_down_its_first_branch_and_skips_the_rest() {
        // gateway → orders → (payments, inventory, notifications), the user's 5-service mesh.
        let m = mesh(
            "gateway: orders\norders: payments, inventory, notifications\npayments:\ninventory:\nnotifications:",
            r#"{ code: shop.declined, http_status: 402, grpc_status: FAILED_PRECONDITION, retryable: false, message: declined },
               { code: shop.down, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: down }"#,
        );
        let p = plan(&m);
        assert_eq!(p.entry, "gateway");
        assert_eq!(p.requests[0].min_lines, 9);
        assert_eq!(
            p.requests[1].min_lines, 5,
            "gateway, orders, payments; the rest skipped"
        );
        assert_eq!(
            p.requests[1].directives.as_deref(),
            Some("payments.status=503;payments.code=shop.down;payments.grpc=UNAVAILABLE"),
            "a code from the spec's own catalog"
        );
    }
}
