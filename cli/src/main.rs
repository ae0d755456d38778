//! `meshkit`: validate a mesh spec, generate Envoy config, check it with Envoy, run it locally.
//! Each command lives in its own module under `commands/`; exit codes are in
//! [`commands::Exit`].

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use meshkit_cli::locate;
use meshkit_sdk::OutputFormat;

use commands::{Exit, Failure, EXIT_CODES_HELP};

#[derive(Parser)]
#[command(
    name = "meshkit",
    version,
    about = "Service-mesh resilience in the proxy: spec → Envoy config → local mesh",
    after_help = EXIT_CODES_HELP
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
    /// Write one Envoy bootstrap per service sidecar into DIR (-o), the mesh's dashboards and
    /// alert rules (--dashboards), a Compose project (--compose); nothing if the spec is
    /// invalid. Each DIR is meshkit's: files it wrote before and no longer generates are removed, and a file
    /// it did not write (or the spec itself) is never overwritten.
    #[command(group(clap::ArgGroup::new("outputs").required(true).multiple(true).args(["out", "dashboards", "compose"])))]
    Generate {
        spec: PathBuf,
        /// Output directory for the sidecars' bootstraps (created if missing).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Output directory for the mesh's Grafana dashboard and provisioning files, the
        /// Prometheus scrape configuration for every sidecar and the alert rules.
        #[arg(long, value_name = "DIR")]
        dashboards: Option<PathBuf>,
        /// Output directory for a Compose project: per instance an app container and a
        /// sidecar container sharing its network namespace, reaching each other by DNS name
        /// (a spec's loopback addresses become instance names), with the bootstraps.
        #[arg(long, value_name = "DIR")]
        compose: Option<PathBuf>,
        /// Where the generated Grafana datasource reaches Prometheus.
        #[arg(long, default_value = "http://localhost:9090", requires = "dashboards")]
        prometheus_url: String,
        /// Path to meshkit_filter.wasm as Envoy will open it (relative to Envoy's working
        /// directory, or absolute). With --compose: the module's path on this host, mounted
        /// into every sidecar (default: the built module).
        #[arg(long, default_value = locate::WASM_RELATIVE)]
        wasm: String,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Bootstraps for sidecars that get everything else from `meshkit serve` at this
        /// address (ADS): node identity, admin and the server only.
        #[arg(long, value_name = "HOST:PORT")]
        ads: Option<std::net::SocketAddr>,
    },
    /// Serve the mesh's config to its sidecars over ADS (xDS) and push every valid edit of
    /// SPEC to them live, until Ctrl-C / SIGTERM. Sidecars start from `generate --ads`.
    Serve {
        spec: PathBuf,
        /// Where the ADS server listens. It has no authentication: keep it on loopback unless
        /// the network is trusted (see README, "Running it for real").
        #[arg(long, default_value = "127.0.0.1:18000")]
        listen: std::net::SocketAddr,
        /// Where sidecars fetch the filter's module (`/meshkit_filter.wasm`; give an address
        /// they can reach), and `GET /` shows each sidecar's acknowledged versions and last
        /// NACK.
        #[arg(long, default_value = "127.0.0.1:18090")]
        http: std::net::SocketAddr,
        /// The filter's module to serve.
        #[arg(long, default_value = locate::WASM_RELATIVE)]
        wasm: String,
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
        /// Envoy worker threads per sidecar (1–64).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: u32,
        /// Where generated config and Envoy's own logs go.
        #[arg(long, default_value = ".meshkit/run")]
        run_dir: PathBuf,
        /// Run your own app for each instance of SERVICE instead of the demo app:
        /// `SERVICE=COMMAND`, run with `sh -c`; the command reads MESHKIT_APP_PORT (listen
        /// there) and MESHKIT_OUTBOUND (its sidecar, for upstream calls). Repeatable.
        #[arg(long = "app", value_name = "SERVICE=COMMAND")]
        apps: Vec<String>,
        /// SERVICE's app is already running on its spec address: start no app for it.
        /// Repeatable.
        #[arg(long = "external", value_name = "SERVICE")]
        external: Vec<String>,
        /// Give each sidecar a complete static bootstrap instead of serving its config from
        /// meshkit's xDS server (then an edit of the spec needs a restart).
        #[arg(long = "static")]
        static_config: bool,
    },
    /// A live view of the running mesh from its sidecars' admin endpoints: per service and
    /// upstream edge, request rate, success, p99, retries and retry budget; the top error codes
    /// with their origin. Refreshes in place on a terminal; plain lines otherwise.
    Top {
        spec: PathBuf,
        /// How often to refresh (e.g. `2s`).
        #[arg(long, default_value = "2s")]
        interval: String,
        /// Rates, percentiles and error counts cover this much of the recent past.
        #[arg(long, default_value = "30s")]
        window: String,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Explain an error code: a built-in mesh code (no spec needed), or an entry of the
    /// catalog. Without a code, list every code. Exits 1 for a code that is neither.
    Explain {
        /// e.g. `CM503001`, `MESH_UPSTREAM_TIMEOUT`.
        code: Option<String>,
        /// Mesh spec whose catalog to consult [default: envoy/mesh.yaml, if it exists].
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// Run one demo app (what `up` runs per service).
    DemoApp {
        /// Service name (directives in `x-demo` are addressed to it).
        #[arg(long)]
        name: String,
        /// Instance name (`users-1`: directives addressed to it apply too) [default: NAME].
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Upstream call made for every request: `OUTBOUND_ADDR/PATH`, e.g.
        /// `127.0.0.1:18101/recipes`, or `grpc:OUTBOUND_ADDR/PATH` for a gRPC upstream (a unary
        /// call at that path). Repeatable.
        #[arg(long = "call")]
        calls: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
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
            return ExitCode::from(Exit::Environment as u8);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(exit, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit as u8)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Validate { spec } => commands::validate::run(&spec),
        Command::Generate {
            spec,
            out,
            dashboards,
            compose,
            prometheus_url,
            wasm,
            format,
            ads,
        } => {
            let format = match format {
                Format::Json => OutputFormat::Json,
                Format::Yaml => OutputFormat::Yaml,
            };
            commands::generate::run(commands::generate::GenerateArgs {
                spec,
                out,
                dashboards,
                compose,
                prometheus_url,
                wasm,
                format,
                ads,
            })
        }
        Command::Serve {
            spec,
            listen,
            http,
            wasm,
        } => {
            commands::serve::run(commands::serve::ServeArgs {
                spec,
                listen,
                http,
                wasm,
            })
            .await
        }
        Command::Check { spec } => commands::check::run(&spec).await,
        Command::Top {
            spec,
            interval,
            window,
            count,
        } => {
            let parse = |flag: &str, value: &str| {
                meshkit_sdk::duration::parse_duration(value)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        Failure::new(
                            Exit::Usage,
                            format!("{flag}: expected a duration such as 2s, got {value:?}"),
                        )
                    })
            };
            let (interval, window) = (parse("--interval", &interval)?, parse("--window", &window)?);
            // The window's scrapes are kept: bounded, whatever the flags.
            if window.as_secs_f64() / interval.as_secs_f64() > commands::top::MAX_SCRAPES as f64 {
                return Err(Failure::new(
                    Exit::Usage,
                    format!(
                        "--window: at most {} times --interval (its scrapes are kept), got {window:?} over {interval:?}",
                        commands::top::MAX_SCRAPES
                    ),
                ));
            }
            commands::top::run(commands::top::TopArgs {
                spec: &spec,
                interval,
                window,
                count,
            })
            .await
        }
        Command::Explain { code, spec } => commands::explain::run(code.as_deref(), spec.as_deref()),
        Command::Up {
            spec,
            duration,
            demo,
            concurrency,
            run_dir,
            apps,
            external,
            static_config,
        } => {
            let duration = duration
                .map(|d| meshkit_sdk::duration::parse_duration(&d))
                .transpose()
                .map_err(|e| Failure::new(Exit::Usage, format!("--duration: {e}")))?;
            commands::up::run(commands::up::UpArgs {
                spec,
                duration,
                demo,
                concurrency,
                run_dir,
                apps,
                external,
                static_config,
            })
            .await
        }
        Command::DemoApp {
            name,
            instance,
            listen,
            calls,
        } => commands::demo_app::run(name, instance, listen, &calls).await,
    }
}
