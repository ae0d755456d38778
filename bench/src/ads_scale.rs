//! How `meshkit serve` copes with a fleet: `n` simulated sidecars, each a tonic ADS client
//! that subscribes the way Envoy does (CDS and LDS, then the endpoints, route tables and
//! filter configurations they name) and acknowledges every response. Reported: the server's
//! memory, the time from a spec edit (a catalog entry, so every node's filter configuration
//! changes) to all `n` acknowledged, and the server's CPU for that push.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{Node, TypedExtensionConfig};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::{Message, Name};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::generate_time;
use crate::pair::process_usage;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub struct Figures {
    pub nodes: usize,
    pub connected_in: Duration,
    pub rss_mib: f64,
    pub edit_to_all_acked: Duration,
    pub push_cpu_ms: f64,
    pub rss_after_mib: f64,
}

/// Runs the server (`meshkit` at `meshkit`, serving `wasm`) and `n` simulated sidecars.
pub async fn measure(n: usize, meshkit: &Path, wasm: &Path, dir: &Path) -> anyhow::Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let spec_path = dir.join("mesh.yaml");
    let spec = generate_time::spec(n);
    std::fs::write(&spec_path, &spec)?;
    let (listen, http) = (free_port()?, free_port()?);
    let mut server = tokio::process::Command::new(meshkit)
        .arg("serve")
        .arg(&spec_path)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--wasm")
        .arg(wasm)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {}", meshkit.display()))?;
    let pid = server.id().context("the server's pid")?;
    let mut stderr = BufReader::new(server.stderr.take().context("stderr")?).lines();
    let ready = async {
        while let Some(line) = stderr.next_line().await? {
            if line.starts_with("serving mesh") {
                return Ok(());
            }
        }
        bail!("meshkit serve exited before serving")
    };
    tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .context("meshkit serve never started")??;
    // Keep draining its stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let first = Arc::new(AtomicUsize::new(0));
    let second = Arc::new(AtomicUsize::new(0));
    // Once measured, the server is killed: the streams' errors then are expected.
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    for i in 0..n {
        let (first, second, done) = (first.clone(), second.clone(), done.clone());
        let endpoint = format!("http://127.0.0.1:{listen}");
        tokio::spawn(async move {
            let outcome = sidecar(&endpoint, &format!("s{i}-sidecar"), &first, &second).await;
            if let (Err(e), false) = (outcome, done.load(Ordering::Relaxed)) {
                eprintln!("simulated sidecar s{i}: {e:#}");
            }
        });
    }
    wait_count(&first, n, "every node acknowledged its first config").await?;
    let connected_in = started.elapsed();
    let before = process_usage(pid)?;

    let edited = spec.replacen("message: unavailable", "message: unavailable for now", 1);
    let tmp = dir.join(".mesh.yaml.tmp");
    std::fs::write(&tmp, edited)?;
    let edit = Instant::now();
    std::fs::rename(&tmp, &spec_path)?;
    wait_count(&second, n, "every node acknowledged the edit").await?;
    let edit_to_all_acked = edit.elapsed();
    let after = process_usage(pid)?;
    done.store(true, Ordering::Relaxed);
    let _ = server.kill().await;
    Ok(Figures {
        nodes: n,
        connected_in,
        rss_mib: mib(before.rss_bytes),
        edit_to_all_acked,
        push_cpu_ms: (after.cpu_seconds - before.cpu_seconds) * 1e3,
        rss_after_mib: mib(after.rss_bytes),
    })
}

async fn wait_count(count: &AtomicUsize, n: usize, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not {what}: {} of {n}",
            count.load(Ordering::Relaxed)
        );
        // Polling the simulated sidecars' own counter.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One simulated sidecar: subscribes as Envoy does and acknowledges everything. Counts itself
/// in `first` once it acknowledged a filter configuration, in `second` once a newer one.
async fn sidecar(
    endpoint: &str,
    node: &str,
    first: &AtomicUsize,
    second: &AtomicUsize,
) -> anyhow::Result<()> {
    let mut client = AggregatedDiscoveryServiceClient::connect(endpoint.to_string()).await?;
    let (tx, rx) = mpsc::channel(16);
    let request =
        |type_url: String, names: Vec<String>, r: Option<&DiscoveryResponse>| DiscoveryRequest {
            type_url,
            resource_names: names,
            version_info: r.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: r.map(|r| r.nonce.clone()).unwrap_or_default(),
            ..Default::default()
        };
    let mut hello = request(Cluster::type_url(), vec![], None);
    hello.node = Some(Node {
        id: node.into(),
        ..Default::default()
    });
    tx.send(hello).await?;
    tx.send(request(Listener::type_url(), vec![], None)).await?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut names: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut filter_versions = 0;
    while let Some(r) = responses.message().await? {
        let t = r.type_url.clone();
        let subscribed = names.get(&t).cloned().unwrap_or_default();
        tx.send(request(t.clone(), subscribed, Some(&r))).await?;
        if t == Cluster::type_url() {
            let eds: Vec<String> = decode_all::<Cluster>(&r)?
                .into_iter()
                .filter(|c| c.eds_cluster_config.is_some())
                .map(|c| c.name)
                .collect();
            subscribe(&tx, &mut names, ClusterLoadAssignment::type_url(), eds).await?;
        } else if t == Listener::type_url() {
            let (routes, filters) = named_by(&decode_all::<Listener>(&r)?)?;
            subscribe(&tx, &mut names, RouteConfiguration::type_url(), routes).await?;
            subscribe(&tx, &mut names, TypedExtensionConfig::type_url(), filters).await?;
        } else if t == TypedExtensionConfig::type_url() {
            filter_versions += 1;
            match filter_versions {
                1 => first.fetch_add(1, Ordering::Relaxed),
                2 => second.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }
    Ok(())
}

/// Asks for `wanted` resources of `type_url` if that is not what was asked before.
async fn subscribe(
    tx: &mpsc::Sender<DiscoveryRequest>,
    names: &mut std::collections::HashMap<String, Vec<String>>,
    type_url: String,
    mut wanted: Vec<String>,
) -> anyhow::Result<()> {
    wanted.sort();
    if wanted.is_empty() || names.get(&type_url) == Some(&wanted) {
        return Ok(());
    }
    names.insert(type_url.clone(), wanted.clone());
    tx.send(DiscoveryRequest {
        type_url,
        resource_names: wanted,
        ..Default::default()
    })
    .await?;
    Ok(())
}

fn decode_all<M: Message + Default>(r: &DiscoveryResponse) -> anyhow::Result<Vec<M>> {
    Ok(r.resources
        .iter()
        .map(|a| M::decode(a.value.as_slice()))
        .collect::<Result<_, _>>()?)
}

/// The route tables (RDS) and filter configurations (ECDS) `listeners` refer to.
fn named_by(listeners: &[Listener]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut routes, mut filters) = (Vec::new(), Vec::new());
    for l in listeners {
        for f in l.filter_chains.iter().flat_map(|c| &c.filters) {
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice())?;
            if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                routes.push(rds.route_config_name);
            }
            for h in hcm.http_filters {
                if let Some(http_filter::ConfigType::ConfigDiscovery(_)) = h.config_type {
                    filters.push(h.name);
                }
            }
        }
    }
    Ok((routes, filters))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
