//! The demo service app of the local mesh: answers with a configurable status, app error code,
//! latency and body, and otherwise calls its upstreams through its sidecar's outbound listener.
//!
//! Behaviour is set per request, so a test can make any hop fail. Directives come in the
//! `x-demo` header or the `demo` query parameter, as `;`-separated `<service>.<key>=<value>`
//! (`<service>` may also name one replica, `<service>-<k>`, or `*` for every app):
//!
//! - `status=<code>`: answer with this status instead of calling upstreams;
//! - `code=<APPCODE>`: set the `x-app-error-code` response header;
//! - `latency=<duration>`: wait this long first (`250ms`, `2s`);
//! - `body=<text>`: response body;
//! - `problem=<APPCODE>`: answer `application/problem+json` with this `code` member (and no
//!   code header) — the RFC 9457 way of reporting a code;
//! - `header=<name>:<value>`: add this header to a `status` answer (repeatable), e.g.
//!   `retry-after:5` or `grpc-retry-pushback-ms:-1` for server pushback;
//! - `health=fail` / `health=ok`: from now on (sticky, this instance only) answer the health
//!   check path [`HEALTH_PATH`] with 503 / 200. Health checks never call upstreams;
//! - `grpc=<code>`: the gRPC status of a failing gRPC call (`UNAVAILABLE` or `14`; default:
//!   the gRPC spec's mapping of `status`).
//!
//! A gRPC request (`application/grpc`, at any path) is answered the gRPC way, with the same
//! directives read from its metadata (see [`grpc`]); an upstream whose app speaks HTTP/2 is
//! called with gRPC.
//!
//! Example: `x-demo: users.status=503;users.code=CM503001` makes `users` fail and everything
//! in front of it see that failure. The app forwards `x-demo`, `x-request-id` and
//! `traceparent` to its upstreams. If an upstream call fails, the app answers a plain 500
//! with no app code — what an unmodified service does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::http_client;

mod grpc;

/// What a demo app answers: HTTP or gRPC bodies.
type DemoResponse = Response<UnsyncBoxBody<Bytes, BoxError>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Header the app sets to report an application error code.
pub const APP_ERROR_CODE_HEADER: &str = "x-app-error-code";
/// Headers forwarded to upstream calls.
const FORWARDED: &[&str] = &["x-demo", "x-request-id", "traceparent"];
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The path the demo app answers as a health check.
pub const HEALTH_PATH: &str = "/healthz";

/// One upstream call the app makes for every request it serves.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    /// The sidecar's outbound listener.
    pub via: SocketAddr,
    pub path: String,
    /// The upstream's app speaks HTTP/2: call it with gRPC (at `path`).
    pub grpc: bool,
}

#[derive(Debug, Clone)]
pub struct DemoAppConfig {
    pub name: String,
    /// This instance's name (a replica's `<service>-<k>`): directives addressed to it apply
    /// only here, so a test can make one replica fail.
    pub instance: String,
    pub calls: Vec<UpstreamCall>,
}

/// A running demo app. Dropping it (or [`DemoApp::stop`]) closes the listener and every open
/// connection, so its sidecar sees connection failures, exactly as when a real app dies.
pub struct DemoApp {
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
}

/// A configured app: its settings and a channel per gRPC upstream.
struct App {
    config: DemoAppConfig,
    channels: Vec<Option<Channel>>,
}

impl DemoApp {
    /// Serves on an already-bound listener (HTTP/1.1 and h2c prior knowledge).
    pub fn start(listener: TcpListener, config: DemoAppConfig) -> std::io::Result<DemoApp> {
        let addr = listener.local_addr()?;
        let channels = config
            .calls
            .iter()
            .map(|call| {
                call.grpc.then(|| {
                    Channel::from_shared(format!("http://{}", call.via))
                        .map(|endpoint| endpoint.timeout(UPSTREAM_TIMEOUT).connect_lazy())
                        .map_err(std::io::Error::other)
                })
            })
            .map(Option::transpose)
            .collect::<std::io::Result<_>>()?;
        let config = Arc::new(App { config, channels });
        let healthy = Arc::new(AtomicBool::new(true));
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Connections live in this inner set, dropped (aborted) with the accept loop.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Answers go out at once (no Nagle delay waiting for the sidecar's ACK).
                let _ = stream.set_nodelay(true);
                let (config, healthy) = (config.clone(), healthy.clone());
                connections.spawn(async move {
                    let service =
                        service_fn(move |req| handle(config.clone(), healthy.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(DemoApp { addr, tasks })
    }

    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one request asks of this app.
#[derive(Debug, Default, Clone, PartialEq)]
struct Behaviour {
    status: Option<u16>,
    code: Option<String>,
    latency: Option<Duration>,
    body: Option<String>,
    problem: Option<String>,
    headers: Vec<(String, String)>,
    health: Option<bool>,
    grpc: Option<tonic::Code>,
}

fn behaviour(me: &str, instance: &str, directives: &str) -> Behaviour {
    let mut b = Behaviour::default();
    for d in directives.split(';') {
        let Some((target, value)) = d.trim().split_once('=') else {
            continue;
        };
        let Some((service, key)) = target.split_once('.') else {
            continue;
        };
        if service != me && service != instance && service != "*" {
            continue;
        }
        match key {
            "status" => b.status = value.parse().ok().filter(|s| (100..=599).contains(s)),
            "code" => b.code = Some(value.to_string()),
            "latency" => b.latency = meshkit_sdk::duration::parse_duration(value).ok(),
            "body" => b.body = Some(value.to_string()),
            "problem" => b.problem = Some(value.to_string()),
            "health" => b.health = matches!(value, "ok" | "fail").then_some(value == "ok"),
            "grpc" => b.grpc = grpc::parse_code(value),
            "header" => {
                if let Some((name, value)) = value.split_once(':') {
                    b.headers
                        .push((name.trim().to_string(), value.trim().to_string()));
                }
            }
            _ => {}
        }
    }
    b
}

async fn handle(
    app: Arc<App>,
    healthy: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<DemoResponse, Infallible> {
    let config = &app.config;
    let mut directives = header(&req, "x-demo").unwrap_or_default();
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("demo=") {
                directives.push(';');
                directives.push_str(v);
            }
        }
    }
    let b = behaviour(&config.name, &config.instance, &directives);
    if let Some(h) = b.health {
        healthy.store(h, Ordering::Relaxed);
    }
    if grpc::is_grpc(&req) {
        // First, as for HTTP: before the call is even read.
        if let Some(latency) = b.latency {
            tokio::time::sleep(latency).await;
        }
        return Ok(grpc::serve(app.clone(), b, req).await);
    }
    Ok(boxed(http(&app, &healthy, b, req).await))
}

async fn http(
    app: &App,
    healthy: &AtomicBool,
    b: Behaviour,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let config = &app.config;
    if req.uri().path() == HEALTH_PATH {
        let status = if healthy.load(Ordering::Relaxed) {
            200
        } else {
            503
        };
        return reply(status, String::new(), None, &config.name);
    }
    if let Some(latency) = b.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = b.status {
        if let Some(code) = &b.problem {
            let body = json!({"type": "about:blank", "title": "demo failure", "status": status,
                              "code": code, "service": config.name});
            let mut r = reply(status, body.to_string(), None, &config.name);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            return with_headers(r, &b.headers);
        }
        let body = b.body.clone().unwrap_or_else(|| {
            json!({"service": config.name, "status": status, "code": b.code}).to_string()
        });
        let r = reply(status, body, b.code.as_deref(), &config.name);
        return with_headers(r, &b.headers);
    }

    let forwarded: Vec<(String, String)> = FORWARDED
        .iter()
        .filter_map(|h| header(&req, h).map(|v| (h.to_string(), v)))
        .collect();
    let upstreams = match call_upstreams(app, &forwarded).await {
        Ok(upstreams) => upstreams,
        Err(error) => {
            let body = json!({"service": config.name, "error": error});
            return reply(500, body.to_string(), None, &config.name);
        }
    };
    let body = b.body.unwrap_or_else(|| {
        json!({"service": config.name, "path": req.uri().path(), "upstreams": upstreams})
            .to_string()
    });
    reply(200, body, None, &config.name)
}

/// Calls every upstream in order (HTTP GET, or gRPC for an HTTP/2 app), forwarding the demo
/// headers; stops at the first failure, as an app that cannot do its job would.
async fn call_upstreams(
    app: &App,
    forwarded: &[(String, String)],
) -> Result<Vec<serde_json::Value>, String> {
    let mut upstreams = Vec::new();
    for (call, channel) in app.config.calls.iter().zip(&app.channels) {
        let answer = match channel {
            Some(channel) => grpc::call(channel, &call.path, forwarded).await?,
            None => {
                let r = http_client::send(
                    call.via,
                    Method::GET,
                    &call.path,
                    forwarded,
                    UPSTREAM_TIMEOUT,
                )
                .await
                .map_err(|e| e.to_string())?;
                if r.status >= 400 {
                    return Err(format!("upstream failed with {}", r.status));
                }
                serde_json::from_slice(&r.body).unwrap_or_else(|_| json!(r.text()))
            }
        };
        upstreams.push(answer);
    }
    Ok(upstreams)
}

fn boxed(r: Response<Full<Bytes>>) -> DemoResponse {
    r.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// Adds the `header=` directives' headers (invalid names or values are skipped).
fn with_headers(
    mut r: Response<Full<Bytes>>,
    headers: &[(String, String)],
) -> Response<Full<Bytes>> {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            r.headers_mut().append(name, value);
        }
    }
    r
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn reply(status: u16, body: String, code: Option<&str>, service: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(service) {
        headers.insert("x-demo-service", v);
    }
    if let Some(v) = code.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(APP_ERROR_CODE_HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_target_one_service() {
        let b = behaviour(
            "users",
            "users",
            "users.status=503;users.code=CM503001;recipes.status=500",
        );
        // A replica answers what is addressed to its service or to itself.
        assert_eq!(
            behaviour("users", "users-1", "users-1.status=503").status,
            Some(503)
        );
        assert_eq!(
            behaviour("users", "users", "users-1.status=503").status,
            None
        );
        assert_eq!(b.status, Some(503));
        assert_eq!(b.code.as_deref(), Some("CM503001"));
        assert_eq!(
            behaviour("frontend", "frontend", "users.status=503"),
            Behaviour::default()
        );
    }

    #[test]
    fn wildcard_latency_and_garbage() {
        let b = behaviour("a", "a", "*.latency=20ms; junk ;a.status=999;=;.=x");
        assert_eq!(b.latency, Some(Duration::from_millis(20)));
        assert_eq!(b.status, None, "out-of-range status ignored");
    }

    #[test]
    fn grpc_codes_by_name_or_number_and_garbage_ignored() {
        let b = behaviour("a", "a", "a.grpc=UNAVAILABLE");
        assert_eq!(b.grpc, Some(tonic::Code::Unavailable));
        assert_eq!(
            behaviour("a", "a", "a.grpc=5").grpc,
            Some(tonic::Code::NotFound)
        );
        for junk in ["a.grpc=17", "a.grpc=-1", "a.grpc=unavailable", "a.grpc="] {
            assert_eq!(behaviour("a", "a", junk).grpc, None, "{junk}");
        }
    }
}
