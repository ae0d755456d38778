//! The load: HTTP/1.1 keep-alive connections to the first sidecar's outbound listener, either
//! as fast as answers come (closed loop, for throughput and CPU per request) or at a fixed
//! offered rate (open loop per connection, for latency at the same load across variants).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one load phase measured.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Every request's latency, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0–1) of latency, in microseconds.
    pub fn quantile_us(&mut self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)]
    }
}

/// What each request carries.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The status every answer must have (anything else counts as an error).
    pub expect_status: u16,
}

/// Exactly `n` requests, one after another on one keep-alive connection.
pub async fn count(target: &Target, n: u64) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let far = start + Duration::from_secs(24 * 3600);
    let mut r = connection(target.clone(), far, None, Some(n)).await?;
    r.elapsed = start.elapsed();
    Ok(r)
}

/// Runs `connections` connections for `duration`. `rate`: total requests per second, spread
/// over the connections (`None`: each sends its next request as soon as the last is answered).
pub async fn run(
    target: &Target,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        let gap = rate.map(|r| Duration::from_secs_f64(connections as f64 / r.max(1.0)));
        tasks.spawn(async move { connection(target, deadline, gap, None).await });
    }
    let mut total = LoadResult::default();
    while let Some(r) = tasks.join_next().await {
        let r = r.context("load task")??;
        total.requests += r.requests;
        total.errors += r.errors;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

async fn connection(
    target: Target,
    deadline: Instant,
    gap: Option<Duration>,
    max_requests: Option<u64>,
) -> anyhow::Result<LoadResult> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut result = LoadResult::default();
    let mut next = Instant::now();
    while Instant::now() < deadline && max_requests.is_none_or(|m| result.requests < m) {
        if let Some(gap) = gap {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
            next += gap;
        }
        let mut request = Request::get(target.path.as_str()).header("host", "bench");
        for (k, v) in &target.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request.body(Empty::<Bytes>::new())?;
        let sent = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        let latency = sent.elapsed();
        result.requests += 1;
        if status != target.expect_status {
            result.errors += 1;
        }
        result
            .latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }
    Ok(result)
}
