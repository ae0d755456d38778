//! Two sidecars on a 2-hop path, as the benchmark runs them: load → `a` outbound → `b` inbound →
//! `b`'s app (a demo app in this process). Both Envoys' CPU time and RSS are read from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use meshkit_cli::access_log::AccessLog;
use meshkit_cli::demo_app::{DemoApp, DemoAppConfig};
use meshkit_cli::process::{EnvoyCommand, EnvoyProcess};
use meshkit_sdk::model::Mesh;
use meshkit_sdk::{generate, write_files, OutputFormat, RenderOptions};

/// The filter a variant runs.
#[derive(Debug, Clone)]
pub enum Filter {
    /// No Wasm filter at all: the same generated config without meshkit.
    Bare,
    /// This `.wasm` (meshkit, or the no-op filter) with meshkit's plugin configuration.
    Wasm(PathBuf),
}

/// `a → b`, `a`'s route retrying twice (as routes usually do; `retries: false` leaves the
/// route without a retry policy, to see what the retry budget costs), and a catalog with the
/// code the error path uses: `CM503002`, not retryable, so the error path makes no retries.
pub fn mesh(ports: &[u16], retries: bool) -> anyhow::Result<Mesh> {
    let retry = if retries {
        ", retry: { num_retries: 2 }"
    } else {
        ""
    };
    let spec = format!(
        "version: 1\nmesh: bench\n\
         errors:\n  catalog:\n    - {{ code: CM503002, http_status: 503, grpc_status: UNAVAILABLE, retryable: false, message: unavailable }}\n\
         services:\n\
         \x20 - name: a\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n\
         \x20   upstreams:\n      - {{ service: b, routes: [ {{ match: {{ prefix: / }}, timeout: 10s{retry} }} ] }}\n\
         \x20 - name: b\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
        ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
    );
    meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml)
        .map_err(|p| anyhow::anyhow!("bench spec: {p:?}"))
}

pub struct Pair {
    envoys: Vec<EnvoyProcess>,
    _app: DemoApp,
    /// Where the load goes: `a`'s outbound listener.
    pub entry: SocketAddr,
}

/// CPU seconds (user + system) and resident memory of a set of processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl Pair {
    /// `wrapper`: a command that runs each Envoy (e.g. valgrind), or nothing.
    pub async fn start(
        envoy: &Path,
        filter: &Filter,
        concurrency: u32,
        retries: bool,
        run_dir: &Path,
        wrapper: &[String],
    ) -> anyhow::Result<Pair> {
        let ports = free_ports(8)?;
        let mesh = mesh(&ports, retries)?;
        std::fs::create_dir_all(run_dir)?;
        let (wasm_path, bare) = match filter {
            Filter::Bare => (String::new(), true),
            Filter::Wasm(p) => (std::path::absolute(p)?.display().to_string(), false),
        };
        let files = generate(
            &mesh,
            &RenderOptions {
                wasm_path,
                format: OutputFormat::Json,
                bare,
            },
        )?;
        write_files(run_dir, &files)?;
        let app_listener = tokio::net::TcpListener::bind(("127.0.0.1", ports[4])).await?;
        let app = DemoApp::start(
            app_listener,
            DemoAppConfig {
                name: "b".into(),
                instance: "b".into(),
                calls: vec![],
            },
        )?;
        let access_log = Arc::new(AccessLog::new(false));
        let mut envoys = Vec::new();
        for (service, file) in mesh.services.iter().zip(&files) {
            let admin = SocketAddr::from(([127, 0, 0, 1], service.sidecar.admin_port));
            let cmd = EnvoyCommand {
                binary: envoy.to_path_buf(),
                config: run_dir.join(&file.file_name),
                base_id: u32::from(service.sidecar.admin_port),
                concurrency,
                log_path: run_dir.join(format!("{}.envoy.log", service.name)),
                discard_access_log: true,
                drain_time: meshkit_cli::local_mesh::DRAIN_TIME,
                wrapper: wrapper.to_vec(),
            };
            let mut e = EnvoyProcess::spawn(&service.name, admin, &cmd, access_log.clone())?;
            // Under valgrind Envoy takes ~15 s to start.
            e.wait_ready(Duration::from_secs(180))
                .await
                .with_context(|| format!("sidecar {}", service.name))?;
            envoys.push(e);
        }
        Ok(Pair {
            envoys,
            _app: app,
            entry: SocketAddr::from(([127, 0, 0, 1], ports[2])),
        })
    }

    /// Both sidecars' process ids.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        self.envoys
            .iter()
            .map(|e| e.pid().context("Envoy exited"))
            .collect()
    }

    /// Both sidecars' CPU time so far and their current RSS.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let mut total = Usage::default();
        for e in &self.envoys {
            let pid = e.pid().context("Envoy exited")?;
            let u = process_usage(pid)?;
            total.cpu_seconds += u.cpu_seconds;
            total.rss_bytes += u.rss_bytes;
        }
        Ok(total)
    }

    pub async fn stop(mut self) {
        for e in &mut self.envoys {
            e.stop(Duration::from_secs(5)).await;
        }
    }
}

/// From `/proc/<pid>/stat` (utime + stime, in clock ticks) and `/proc/<pid>/status` (VmRSS).
pub fn process_usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    // Field 14 is the 12th after the state (field 3).
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Usage {
        cpu_seconds: cpu_ticks / clock_ticks_per_second(),
        rss_bytes: rss_kb * 1024,
    })
}

/// `sysconf(_SC_CLK_TCK)`, which is 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    100.0
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
