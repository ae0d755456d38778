//! The scripted requests `meshkit up --demo` sends once the mesh is ready: one that succeeds
//! end to end and one that fails at the deepest service.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;

use crate::http_client::{self, Response};

/// One scripted request.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    pub request_id: String,
    pub description: String,
    /// `x-demo` directives (see [`crate::demo_app`]).
    pub directives: Option<String>,
}

/// A success, then a failure injected at `deepest` (a 503 with app code `CM503001`).
pub fn script(deepest: &str) -> Vec<DemoRequest> {
    vec![
        DemoRequest {
            request_id: "demo-ok-1".into(),
            description: "every hop succeeds".into(),
            directives: None,
        },
        DemoRequest {
            request_id: "demo-fail-1".into(),
            description: format!("{deepest} answers 503 with app error code CM503001"),
            directives: Some(format!("{deepest}.status=503;{deepest}.code=CM503001")),
        },
    ]
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
