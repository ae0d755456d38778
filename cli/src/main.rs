//! `meshkit`: validate a mesh spec, generate Envoy config, check it with Envoy, run it locally.
//!
//! Exit codes: 0 success; 1 the spec is invalid or Envoy rejected generated config;
//! 2 bad command line; 3 the environment is not ready (no Envoy or filter .wasm, a port in
//! use, a sidecar that failed to start).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use meshkit_cli::demo_app::{DemoApp, DemoAppConfig, UpstreamCall};
use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};
use meshkit_cli::{demo_traffic, locate};
use meshkit_sdk::model::Mesh;
use meshkit_sdk::{generate, write_files, LoadError, OutputFormat, RenderOptions};

#[derive(Parser)]
#[command(
    name = "meshkit",
    version,
    about = "Service-mesh resilience in the proxy: spec → Envoy config → local mesh"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 invalid spec / rejected config, 2 usage, 3 environment (Envoy, .wasm, ports)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a mesh spec; list every problem as `path.to.field: message`.
    Validate {
        /// Mesh spec (YAML, or JSON if it ends in .json).
        spec: PathBuf,
    },
    /// Write one Envoy bootstrap per service sidecar into DIR (nothing if the spec is invalid).
    Generate {
        spec: PathBuf,
        /// Output directory (created if missing).
        #[arg(short, long)]
        out: PathBuf,
        /// Path to meshkit_filter.wasm as Envoy will open it (relative to Envoy's working
        /// directory, or absolute).
        #[arg(long, default_value = locate::WASM_RELATIVE)]
        wasm: String,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Generate every bootstrap and have the real Envoy validate it (`envoy --mode validate`).
    Check { spec: PathBuf },
    /// Run the mesh locally: a demo app and a stock Envoy per service, streaming access logs
    /// (JSON, one per line) to stdout until Ctrl-C / SIGTERM or --duration.
    Up {
        spec: PathBuf,
        /// Stop after this long (e.g. `30s`, `5m`).
        #[arg(long)]
        duration: Option<String>,
        /// Once ready, send demo requests (one success, one failing at the deepest service),
        /// wait for their access log lines, then stop (unless --duration is given).
        #[arg(long)]
        demo: bool,
        /// Envoy worker threads per sidecar.
        #[arg(long, default_value_t = 2)]
        concurrency: u32,
        /// Where generated config and Envoy's own logs go.
        #[arg(long, default_value = ".meshkit/run")]
        run_dir: PathBuf,
    },
    /// Explain an error code: the catalog entry, or the built-in mesh code. Without a code,
    /// list every code. Exits 1 for a code that is neither.
    Explain {
        /// e.g. `CM503001`, `MESH_UPSTREAM_TIMEOUT`.
        code: Option<String>,
        /// Mesh spec whose catalog to consult.
        #[arg(long, default_value = "envoy/mesh.yaml")]
        spec: PathBuf,
    },
    /// Run one demo app (what `up` runs per service), e.g. for docker-compose.
    DemoApp {
        /// Service name (directives in `x-demo` are addressed to it).
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Upstream call made for every request: `OUTBOUND_ADDR/PATH`, e.g.
        /// `127.0.0.1:18101/recipes`. Repeatable.
        #[arg(long = "call")]
        calls: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

/// An error with the exit code it maps to.
struct Failure(u8, anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(3, e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Validate { spec } => {
            let mesh = load(&spec)?;
            let names: Vec<&str> = mesh.services.iter().map(|s| s.name.as_str()).collect();
            println!(
                "{}: valid: mesh {:?}, {} services ({})",
                spec.display(),
                mesh.name,
                names.len(),
                names.join(", ")
            );
            Ok(())
        }
        Command::Generate {
            spec,
            out,
            wasm,
            format,
        } => {
            let mesh = load(&spec)?;
            let format = match format {
                Format::Json => OutputFormat::Json,
                Format::Yaml => OutputFormat::Yaml,
            };
            let files = generate(
                &mesh,
                &RenderOptions {
                    wasm_path: wasm,
                    format,
                    bare: false,
                },
            )
            .map_err(|e| Failure(1, e.into()))?;
            write_files(&out, &files).with_context(|| format!("write {}", out.display()))?;
            for f in &files {
                println!("{}", out.join(&f.file_name).display());
            }
            Ok(())
        }
        Command::Check { spec } => check(&spec).await,
        Command::Explain { code, spec } => explain(code.as_deref(), &spec),
        Command::Up {
            spec,
            duration,
            demo,
            concurrency,
            run_dir,
        } => {
            let mesh = load(&spec)?;
            let duration = duration
                .map(|d| meshkit_sdk::duration::parse_duration(&d))
                .transpose()
                .map_err(|e| Failure(2, anyhow::anyhow!("--duration: {e}")))?;
            let options = LocalMeshOptions {
                envoy: locate::envoy()?,
                wasm: locate::wasm()?,
                run_dir,
                concurrency,
                echo_access_log: true,
                ready_timeout: Duration::from_secs(30),
                external_apps: Vec::new(),
            };
            up(mesh, &options, duration, demo).await
        }
        Command::DemoApp {
            name,
            listen,
            calls,
        } => {
            let calls = calls
                .iter()
                .map(|c| parse_call(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure(2, e))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            let _app = DemoApp::start(listener, DemoAppConfig { name, calls })?;
            eprintln!("demo app listening on {listen}; Ctrl-C to stop");
            wait_for_signal(None).await;
            Ok(())
        }
    }
}

fn load(spec: &Path) -> Result<Mesh, Failure> {
    meshkit_sdk::load_file(spec).map_err(|e| match e {
        LoadError::Invalid(problems) => Failure(
            1,
            anyhow::anyhow!(
                "{} is invalid ({} problem{}):\n{problems}",
                spec.display(),
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            ),
        ),
        io @ LoadError::Io { .. } => Failure(1, io.into()),
    })
}

fn explain(code: Option<&str>, spec: &Path) -> Result<(), Failure> {
    use meshkit_filter::core::error_code::MeshCode;
    let mesh = load(spec)?;
    let describe_mesh = |m: MeshCode| {
        format!(
            "{}  (mesh code, built in)\n  title:       {}\n  envoy flags: {}\n  HTTP status: {}\n  gRPC status: {} ({})\n  retryable:   {}\n  blamed on:   {}",
            m.name(),
            m.title(),
            m.envoy_flags(),
            m.http_status(),
            m.grpc_status().name(),
            m.grpc_status().code(),
            if m.retryable() { "yes" } else { "no" },
            match m.blame() {
                meshkit_filter::core::error_code::Blame::Upstream => "the upstream (or, inbound, the service's own app)",
                meshkit_filter::core::error_code::Blame::Sidecar => "the sidecar that refused the request",
            }
        )
    };
    let describe_entry = |e: &meshkit_filter::core::catalog::CatalogEntry| {
        format!(
            "{}  (catalog, {})\n  message:     {}\n  HTTP status: {}\n  gRPC status: {} ({})\n  retryable:   {}",
            e.code,
            spec.display(),
            e.message,
            e.http_status,
            e.grpc_status.name(),
            e.grpc_status.code(),
            if e.retryable { "yes" } else { "no" }
        )
    };
    match code {
        None => {
            for m in MeshCode::ALL {
                println!("{}\n", describe_mesh(m));
            }
            for e in &mesh.errors.catalog {
                println!("{}\n", describe_entry(e));
            }
            Ok(())
        }
        Some(code) => {
            if let Some(m) = MeshCode::from_name(code) {
                println!("{}", describe_mesh(m));
            } else if let Some(e) = mesh.errors.catalog.iter().find(|e| e.code == code) {
                println!("{}", describe_entry(e));
            } else {
                return Err(Failure(
                    1,
                    anyhow::anyhow!(
                        "{code} is not in the catalog of {} nor a mesh code: meshkit carries it \
                         as-is, classified \"unknown\", and never retries it",
                        spec.display()
                    ),
                ));
            }
            Ok(())
        }
    }
}

async fn check(spec: &Path) -> Result<(), Failure> {
    let mesh = load(spec)?;
    let envoy = locate::envoy()?;
    let wasm = std::path::absolute(locate::wasm()?)?;
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: wasm.display().to_string(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .map_err(|e| Failure(1, e.into()))?;
    let dir = std::env::temp_dir().join(format!("meshkit-check-{}", std::process::id()));
    write_files(&dir, &files)?;
    let mut rejected = Vec::new();
    for f in &files {
        let path = dir.join(&f.file_name);
        let out = tokio::process::Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&path)
            .output()
            .await
            .with_context(|| format!("run {}", envoy.display()))?;
        if out.status.success() {
            println!("{}: OK (envoy --mode validate)", f.service);
        } else {
            let log = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            println!(
                "{}: REJECTED\n{}",
                f.service,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            rejected.push(f.service.clone());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure(
            1,
            anyhow::anyhow!("Envoy rejected config for: {}", rejected.join(", ")),
        ))
    }
}

async fn up(
    mesh: Mesh,
    options: &LocalMeshOptions,
    duration: Option<Duration>,
    demo: bool,
) -> Result<(), Failure> {
    let mut local = LocalMesh::start(mesh, options).await?;
    eprintln!(
        "mesh {:?} is up (configs and Envoy logs in {}):",
        local.mesh.name,
        options.run_dir.display()
    );
    for s in &local.mesh.services {
        eprintln!(
            "  {:<12} inbound http://{}:{}  outbound 127.0.0.1:{}  admin http://127.0.0.1:{}  app {}:{}",
            s.name, s.sidecar.address, s.sidecar.inbound_port, s.sidecar.outbound_port,
            s.sidecar.admin_port, s.app.address, s.app.port
        );
    }
    let result = if demo {
        let outcome = run_demo(&local).await;
        if outcome.is_ok() {
            if let Some(d) = duration {
                wait_for_signal(Some(d)).await;
            }
        }
        outcome
    } else {
        eprintln!("streaming access logs; Ctrl-C to stop");
        wait_for_signal(duration).await;
        Ok(())
    };
    eprintln!("stopping the mesh");
    local.shutdown().await;
    result
}

async fn run_demo(local: &LocalMesh) -> Result<(), Failure> {
    let entry = local.entry_service().to_string();
    let addr = local
        .inbound(&entry)
        .ok_or_else(|| anyhow::anyhow!("no inbound address for {entry}"))?;
    let deepest = deepest_service(&local.mesh, &entry);
    let script = demo_traffic::script(&deepest);
    for request in &script {
        match demo_traffic::send(addr, request).await {
            Ok(r) => {
                let meshkit: Vec<String> = r
                    .headers
                    .iter()
                    .filter(|(name, _)| name.as_str().starts_with("x-meshkit-"))
                    .map(|(name, value)| format!("\n   {name}: {}", value.to_str().unwrap_or("?")))
                    .collect();
                eprintln!(
                    "→ GET http://{addr}/  x-request-id: {}  ({})\n← {} {}{}",
                    request.request_id,
                    request.description,
                    r.status,
                    r.text(),
                    meshkit.concat()
                )
            }
            Err(e) => eprintln!("→ {} failed: {e}", request.request_id),
        }
    }
    let expected = local.lines_per_request(&entry);
    for request in &script {
        if let Err(seen) = local
            .access_log
            .wait_for_request(&request.request_id, expected, Duration::from_secs(20))
            .await
        {
            return Err(Failure(
                3,
                anyhow::anyhow!(
                    "expected {expected} access log lines for {}, saw {}",
                    request.request_id,
                    seen.len()
                ),
            ));
        }
    }
    eprintln!(
        "each request logged one JSON line per sidecar hop ({expected} hops; a retried hop logs \
         each attempt)"
    );
    Ok(())
}

/// Follows first upstreams from `from` to the end of the chain.
fn deepest_service(mesh: &Mesh, from: &str) -> String {
    let mut current = from.to_string();
    for _ in 0..mesh.services.len() {
        match mesh.service(&current).and_then(|s| s.upstreams.first()) {
            Some(u) => current = u.service.clone(),
            None => break,
        }
    }
    current
}

async fn wait_for_signal(limit: Option<Duration>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let timer = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = timer => {}
    }
}

fn parse_call(text: &str) -> anyhow::Result<UpstreamCall> {
    let (addr, path) = text
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--call {text:?}: expected ADDR/PATH"))?;
    Ok(UpstreamCall {
        via: addr
            .parse()
            .with_context(|| format!("--call {text:?}: bad address"))?,
        path: format!("/{path}"),
    })
}
