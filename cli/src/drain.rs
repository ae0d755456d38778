//! Taking one instance out of service without failing a request, and putting it back.
//!
//! The order is Envoy's own: `/healthcheck/fail` on the instance's sidecar (its inbound health
//! check filter then marks every response `x-envoy-immediate-health-check-fail`, and callers
//! that health-check the service stop sending it new requests); wait until every such caller's
//! sidecar shows the host failed; `/drain_listeners?graceful&inboundonly` (HTTP/1 answers carry
//! `Connection: close`, HTTP/2 gets GOAWAY; requests are still served); wait until the callers
//! have routed it nothing for a whole health check round (a request a load balancer picked
//! before the change may still arrive) and no request is active on it; only then may the process be stopped. Putting it
//! back is the mirror: once its sidecar is ready, wait until every caller's health check passes
//! and a request reaches it again.
//!
//! Callers that do not health-check the service cannot be told: for them the drain only closes
//! connections between requests, and a request racing the close is theirs to retry.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hyper::Method;
use meshkit_sdk::model::Mesh;

use crate::http_client;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the admin endpoints are polled while waiting (a probe, not synchronisation).
const POLL: Duration = Duration::from_millis(50);

/// A caller's sidecar that health-checks the service, and how long it may take to notice.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub caller: String,
    pub admin: SocketAddr,
    /// One full health check round and then some: the longest it may take to notice a change.
    pub notice_within: Duration,
    /// One health check (interval and timeout).
    pub round: Duration,
}

/// Envoy's drain time for the sidecars of `mesh` (`--drain-time-s`): a draining listener must
/// stay open for the longest wait of [`drain`] — callers noticing, then routing nothing for a
/// health check round — and then some (the mesh's [`meshkit_sdk::model::DrainTiming`]).
pub fn drain_time(mesh: &Mesh) -> Duration {
    mesh.drain_timing()
        .listener_drain_time()
        .max(crate::local_mesh::DRAIN_TIME)
}

/// Every sidecar instance that health-checks `service`.
pub fn watchers(mesh: &Mesh, service: &str) -> Vec<Watcher> {
    let mut out = Vec::new();
    for caller in &mesh.services {
        let Some(check) = caller
            .upstreams
            .iter()
            .find(|u| u.service == service)
            .and_then(|u| u.policy.health_check.as_ref())
        else {
            continue;
        };
        let notice_within = (check.interval + check.timeout)
            * check.unhealthy_threshold.max(check.healthy_threshold)
            + Duration::from_secs(2);
        for (name, instance) in caller.instances() {
            out.push(Watcher {
                caller: name,
                admin: SocketAddr::from(([127, 0, 0, 1], instance.sidecar.admin_port)),
                notice_within,
                round: check.interval + check.timeout,
            });
        }
    }
    out
}

/// `host`'s health flags in `cluster` as the sidecar at `admin` sees them (`healthy`, or e.g.
/// `/failed_active_hc`); `None` if the host is not in the cluster.
pub async fn health_flags(
    admin: SocketAddr,
    cluster: &str,
    host: SocketAddr,
) -> anyhow::Result<Option<String>> {
    let r = http_client::get(admin, "/clusters").await?;
    let prefix = format!("{cluster}::{host}::health_flags::");
    Ok(r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string)))
}

/// Requests the watchers have routed to `host` of `cluster` so far (Envoy's per-host
/// `rq_total`: load-balanced requests only, never health checks).
async fn routed(watchers: &[Watcher], cluster: &str, host: SocketAddr) -> anyhow::Result<u64> {
    let key = format!("{cluster}::{host}::rq_total::");
    let mut total = 0;
    for w in watchers {
        let r = http_client::get(w.admin, "/clusters").await?;
        total += r
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Waits until the watchers route no request to `host` for one health check round. A host's
/// new health shows in `/clusters` at once; the callers' workers get it by a post, and with
/// Envoy's default 1 s `update_merge_window` (the generator sets 0) they kept routing to a
/// failed host for up to a second. The round keeps this safe for any caller config; the
/// draining sidecar still serves what they send meanwhile.
async fn wait_unrouted(
    watchers: &[Watcher],
    cluster: &str,
    host: SocketAddr,
) -> anyhow::Result<()> {
    let quiet = watchers.iter().map(|w| w.round).max().unwrap_or_default();
    let limit = watchers
        .iter()
        .map(|w| w.notice_within)
        .max()
        .unwrap_or_default()
        + quiet;
    let started = tokio::time::Instant::now();
    let mut last = routed(watchers, cluster, host).await?;
    let mut since = started;
    loop {
        let now = routed(watchers, cluster, host).await?;
        let t = tokio::time::Instant::now();
        if now != last {
            (last, since) = (now, t);
        } else if t - since >= quiet {
            return Ok(());
        }
        if t - started >= limit {
            bail!("callers still route requests to {cluster} at {host} after {limit:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the watchers route requests to `host` of `cluster` again (after a restart): its
/// health shows, then a request reaches it. With no traffic at all, the health is enough.
pub async fn wait_back(
    watchers: &[Watcher],
    cluster: &str,
    host: SocketAddr,
) -> anyhow::Result<()> {
    wait_health(watchers, cluster, host, true).await?;
    let limit = watchers
        .iter()
        .map(|w| w.notice_within)
        .max()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + limit;
    let before = routed(watchers, cluster, host).await?;
    while routed(watchers, cluster, host).await? == before {
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Waits until every watcher sees `host` of `cluster` healthy (`healthy`), or failed by its
/// active health check.
pub async fn wait_health(
    watchers: &[Watcher],
    cluster: &str,
    host: SocketAddr,
    healthy: bool,
) -> anyhow::Result<()> {
    for w in watchers {
        let deadline = tokio::time::Instant::now() + w.notice_within;
        loop {
            let flags = health_flags(w.admin, cluster, host).await?;
            let seen = match flags.as_deref() {
                Some("healthy") => healthy,
                Some(f) => !healthy && f.contains("failed_active_hc"),
                None => false,
            };
            if seen {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} still sees {cluster} at {host} as {:?} after {:?}",
                    w.caller,
                    flags.unwrap_or_default(),
                    w.notice_within
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

async fn post(admin: SocketAddr, path: &str) -> anyhow::Result<()> {
    let r = http_client::send(admin, Method::POST, path, &[], ADMIN_TIMEOUT)
        .await
        .with_context(|| format!("POST {path} to {admin}"))?;
    if r.status != 200 {
        bail!("POST {path} to {admin}: {} {}", r.status, r.text().trim());
    }
    Ok(())
}

/// Requests active on the sidecar's inbound listener.
async fn inbound_active(admin: SocketAddr) -> anyhow::Result<u64> {
    let r = http_client::get(admin, "/stats?filter=downstream_rq_active").await?;
    Ok(r.text()
        .lines()
        .find_map(|l| l.strip_prefix("http.inbound.downstream_rq_active: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Takes the instance whose sidecar admin is `admin` (inbound listener `host`, in its callers'
/// cluster `cluster`) out of service: fail its health, wait for the callers, drain the inbound
/// listener, wait for its requests to finish (at most `drain_time`).
pub async fn drain(
    admin: SocketAddr,
    watchers: &[Watcher],
    cluster: &str,
    host: SocketAddr,
    drain_time: Duration,
) -> anyhow::Result<()> {
    post(admin, "/healthcheck/fail").await?;
    wait_health(watchers, cluster, host, false).await?;
    post(admin, "/drain_listeners?graceful&inboundonly").await?;
    wait_unrouted(watchers, cluster, host).await?;
    let deadline = tokio::time::Instant::now() + drain_time;
    while inbound_active(admin).await? > 0 {
        if tokio::time::Instant::now() >= deadline {
            bail!("requests still active on {cluster} at {host} after {drain_time:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
