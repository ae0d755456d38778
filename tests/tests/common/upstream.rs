//! An upstream app that counts what reaches it: every request's arrival time and request id,
//! recorded in the app itself (behind its sidecar), so retry bounds are measured where retries
//! land. Its behaviour (latency, failing or not) is a function of the time a request arrives.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the app does with a request that arrives `since_start` after it started.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub latency: Duration,
    /// Answer 503 with the retryable catalog code `CM503001`.
    pub fail: bool,
}

/// Arrivals, in order: (when, x-request-id).
#[derive(Default, Clone)]
pub struct Arrivals(Arc<Mutex<Vec<(Instant, String)>>>);

impl Arrivals {
    pub fn record(&self, id: String) {
        self.0.lock().unwrap().push((Instant::now(), id));
    }

    pub fn snapshot(&self) -> Vec<(Instant, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// Serves HTTP/1.1 on 127.0.0.1:`port` until the runtime ends.
pub async fn start_http(
    port: u16,
    behaviour: impl Fn(Duration) -> Behaviour + Send + Sync + 'static,
) -> (Arrivals, Instant) {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("bind the upstream app");
    let arrivals = Arrivals::default();
    let started = Instant::now();
    let behaviour = Arc::new(behaviour);
    let recorded = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (arrivals, behaviour) = (recorded.clone(), behaviour.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (arrivals, behaviour) = (arrivals.clone(), behaviour.clone());
                    async move {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        arrivals.record(id);
                        let b = behaviour(started.elapsed());
                        tokio::time::sleep(b.latency).await;
                        let response = if b.fail {
                            Response::builder()
                                .status(503)
                                .header("x-app-error-code", "CM503001")
                                .body(Full::new(Bytes::from_static(b"unavailable")))
                        } else {
                            Response::builder().body(Full::new(Bytes::from_static(b"ok")))
                        };
                        Ok::<_, hyper::http::Error>(response.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (arrivals, started)
}

/// What the upstream saw, against the budget's promise.
#[derive(Debug)]
pub struct RetryCount {
    /// Distinct requests (first arrival of each request id).
    pub requests: usize,
    /// Later arrivals of an id already seen: retries.
    pub retries: usize,
    /// Most retries that arrived within any `ttl`-long window.
    pub worst_window: usize,
    /// Most requests that first arrived within any `ttl`-long window.
    pub requests_per_window: usize,
    /// `ratio × requests_per_window + min_per_second × ttl`.
    pub bound: f64,
}

impl RetryCount {
    pub fn of(
        arrivals: &[(Instant, String)],
        ttl: Duration,
        ratio: f64,
        min_per_second: f64,
    ) -> RetryCount {
        let mut seen = HashSet::new();
        let (mut firsts, mut retries) = (Vec::new(), Vec::new());
        for (at, id) in arrivals {
            if seen.insert(id.clone()) {
                firsts.push(*at);
            } else {
                retries.push(*at);
            }
        }
        let requests_per_window = most_within(&firsts, ttl);
        RetryCount {
            requests: firsts.len(),
            retries: retries.len(),
            worst_window: most_within(&retries, ttl),
            requests_per_window,
            bound: ratio * requests_per_window as f64 + min_per_second * ttl.as_secs_f64(),
        }
    }
}

/// The most of `times` (sorted or not) that fall in any half-open window of length `window`.
pub fn most_within(times: &[Instant], window: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort_unstable();
    let (mut most, mut start) = (0, 0);
    for (end, t) in times.iter().enumerate() {
        while *t >= times[start] + window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}
