//! `meshkit up SPEC`: the mesh on this machine, access logs on stdout, until Ctrl-C, SIGTERM
//! or `--duration`; `--demo` sends scripted traffic first. While it runs, `restart SERVICE` on
//! stdin restarts a service one instance at a time, without failing its callers' requests.
//!
//! The sidecars get their config from meshkit's ADS server, run in-process (`--static`: from
//! complete bootstrap files instead), and every valid edit of SPEC reaches them live.

use std::path::PathBuf;
use std::time::Duration;

use meshkit_cli::demo_traffic::{self, DemoPlan};
use meshkit_cli::local_mesh::{LocalMesh, LocalMeshOptions};
use meshkit_cli::locate;
use meshkit_cli::spec_watch::SpecWatch;
use meshkit_sdk::model::Mesh;
use meshkit_sdk::LoadError;

use super::{load, Exit, Failure, OrExit, Signals, Stop};

pub struct UpArgs {
    pub spec: PathBuf,
    pub duration: Option<Duration>,
    pub demo: bool,
    pub concurrency: u32,
    pub run_dir: PathBuf,
    /// `SERVICE=COMMAND`: run the user's own app for each instance of SERVICE.
    pub apps: Vec<String>,
    /// Services whose apps already run.
    pub external: Vec<String>,
    /// Complete static bootstraps instead of the ADS server (no live changes).
    pub static_config: bool,
}

pub async fn run(args: UpArgs) -> Result<(), Failure> {
    let mesh = load(&args.spec)?;
    let app_commands = app_commands(&mesh, &args.apps, &args.external)?;
    if args.demo && !(app_commands.is_empty() && args.external.is_empty()) {
        return Err(Failure::new(
            Exit::Usage,
            "--demo scripts the demo apps; it cannot be combined with --app or --external",
        ));
    }
    let instance_count = mesh.instances().count();
    let options = LocalMeshOptions {
        envoy: locate::pinned_envoy()?,
        wasm: locate::wasm()?,
        run_dir: args.run_dir,
        concurrency: args.concurrency,
        echo_access_log: true,
        report_progress: true,
        ready_timeout: Duration::from_secs(30),
        external_apps: args.external,
        app_commands,
        ads: !args.static_config,
    };
    eprintln!(
        "starting mesh {:?}: {} demo apps and {} Envoy sidecars ({} worker{} each)",
        mesh.name,
        instance_count,
        instance_count,
        options.concurrency,
        if options.concurrency == 1 { "" } else { "s" }
    );
    // Listening from here to the end: a signal between two waits is not lost.
    let mut signals = Signals::new().exit(Exit::Environment)?;
    // A signal during start-up drops the start, which stops every process started so far.
    let mut local = tokio::select! {
        // A port in use or a sidecar that did not start: the environment, not the spec.
        started = LocalMesh::start(mesh, &options) => started.map_err(|e| Failure(Exit::Environment, e))?,
        stop = signals.next() => {
            return Err(stop.failure("during start-up; every process started was stopped"))
        }
    };
    print_banner(&local, &options);
    let result = if args.demo {
        let outcome = run_demo(&local, &mut signals).await;
        if outcome.is_ok() {
            if let Some(d) = args.duration {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = signals.next() => {}
                }
            }
        }
        outcome
    } else {
        eprintln!(
            "streaming access logs; type `restart SERVICE` for a rolling restart; Ctrl-C to stop"
        );
        let watch = local
            .control_plane
            .is_some()
            .then(|| SpecWatch::new(&args.spec));
        serve_commands(&mut local, args.duration, watch, &mut signals).await;
        Ok(())
    };
    eprintln!("stopping the mesh");
    local.shutdown().await;
    result
}

/// `--app SERVICE=COMMAND` flags, checked against the spec: every service named exists, once.
fn app_commands(
    mesh: &Mesh,
    apps: &[String],
    external: &[String],
) -> Result<Vec<(String, String)>, Failure> {
    let mut out: Vec<(String, String)> = Vec::new();
    for flag in apps {
        let Some((service, command)) = flag.split_once('=') else {
            return Err(Failure::new(
                Exit::Usage,
                format!("--app {flag:?}: expected SERVICE=COMMAND"),
            ));
        };
        if command.trim().is_empty() {
            return Err(Failure::new(
                Exit::Usage,
                format!("--app {flag:?}: the command is empty"),
            ));
        }
        if out.iter().any(|(s, _)| s == service) || external.iter().any(|s| s == service) {
            return Err(Failure::new(
                Exit::Usage,
                format!("--app {flag:?}: {service} is given twice (--app or --external)"),
            ));
        }
        out.push((service.to_string(), command.to_string()));
    }
    for service in out.iter().map(|(s, _)| s).chain(external) {
        if mesh.service(service).is_none() {
            return Err(Failure::new(
                Exit::Usage,
                format!("{service}: no such service in the spec"),
            ));
        }
    }
    Ok(out)
}

fn print_banner(local: &LocalMesh, options: &LocalMeshOptions) {
    let mesh = &local.mesh;
    eprintln!(
        "mesh {:?} is up (configs and Envoy logs in {}):",
        mesh.name,
        options.run_dir.display()
    );
    let instances: Vec<_> = mesh.instances().collect();
    let width = instances.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, s) in &instances {
        eprintln!(
            "  {:<width$}  inbound http://{}:{}  outbound 127.0.0.1:{}  admin http://127.0.0.1:{}  app {}:{}",
            name,
            s.sidecar.address,
            s.sidecar.inbound_port,
            s.sidecar.outbound_port,
            s.sidecar.admin_port,
            s.app.address,
            s.app.port
        );
    }
    match &local.control_plane {
        Some(cp) => eprintln!(
            "sidecars get their config from meshkit's xDS server on {} (ADS); a valid edit of \
             the spec reaches them live",
            cp.addr
        ),
        None => eprintln!("sidecars run on static bootstraps (--static): restart to change them"),
    }
}

async fn run_demo(local: &LocalMesh, signals: &mut Signals) -> Result<(), Failure> {
    let DemoPlan { entry, requests } = demo_traffic::plan(&local.mesh);
    let addr = local.inbound(&entry).ok_or_else(|| {
        Failure::new(Exit::Environment, format!("no inbound address for {entry}"))
    })?;
    for request in &requests {
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
    for request in &requests {
        let wait = local.access_log.wait_for_request(
            &request.request_id,
            request.min_lines,
            Duration::from_secs(20),
        );
        let outcome = tokio::select! {
            outcome = wait => outcome,
            stop = signals.next() => return Err(interrupted(stop)),
        };
        if let Err(seen) = outcome {
            return Err(Failure::new(
                Exit::Environment,
                format!(
                    "expected at least {} access log lines for {}, saw {}",
                    request.min_lines,
                    request.request_id,
                    seen.len()
                ),
            ));
        }
    }
    eprintln!(
        "each request logged one JSON line per sidecar hop it reached (a retried hop logs each \
         attempt)"
    );
    Ok(())
}

/// Until a stop signal (or `duration`): runs the commands typed on stdin, one per line.
/// `restart SERVICE` restarts the service's instances one at a time (see
/// [`LocalMesh::rolling_restart`]); a signal interrupts it. Without a stdin, only the signal.
async fn serve_commands(
    local: &mut LocalMesh,
    duration: Option<Duration>,
    mut watch: Option<SpecWatch>,
    signals: &mut Signals,
) {
    let stop = async {
        match duration {
            Some(d) => tokio::select! {
                _ = tokio::time::sleep(d) => Stop::Elapsed,
                stop = signals.next() => stop,
            },
            None => signals.next().await,
        }
    };
    tokio::pin!(stop);
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    loop {
        let line = tokio::select! {
            _ = &mut stop => return,
            line = lines.recv(), if stdin_open => line,
            edit = async { watch.as_mut()?.next().await.into() }, if watch.is_some() => {
                let path = watch.as_ref().map(|w| w.path().display().to_string()).unwrap_or_default();
                apply_edit(local, &path, edit, &mut stop).await;
                continue;
            }
        };
        let Some(line) = line else {
            stdin_open = false;
            continue;
        };
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => {}
            ["restart", service] => {
                let service = service.to_string();
                let said = |step: &str| eprintln!("restart {service}: {step}");
                let outcome = tokio::select! {
                    _ = &mut stop => return,
                    outcome = local.rolling_restart(&service, said) => outcome,
                };
                match outcome {
                    Ok(()) => eprintln!("restart {service}: done"),
                    Err(e) => eprintln!("restart {service}: failed: {e:#}"),
                }
            }
            _ => eprintln!("unknown command {line:?}: try `restart SERVICE`"),
        }
    }
}

/// Serves an edited spec, or says why it is refused: the mesh keeps the config it has.
async fn apply_edit(
    local: &mut LocalMesh,
    path: &str,
    edit: Option<Result<Mesh, LoadError>>,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = Stop>>,
) {
    let mesh = match edit {
        Some(Ok(mesh)) => mesh,
        Some(Err(LoadError::Invalid(problems))) => {
            eprintln!(
                "{path} changed but is invalid ({} problem{}); the mesh keeps its config:\n{problems}",
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            );
            return;
        }
        Some(Err(e)) => {
            eprintln!("{path} changed but cannot be read ({e}); the mesh keeps its config");
            return;
        }
        None => return,
    };
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        _ = stop => return,
        outcome = local.update(mesh) => outcome,
    };
    match outcome {
        Ok(()) => eprintln!(
            "{path} changed: every sidecar has the new config ({:.0} ms)",
            started.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => eprintln!("{path} changed: {e:#}"),
    }
}

/// Stdin, line by line, read on a thread of its own: a read blocked on a terminal must not
/// keep the process from exiting (a runtime's blocking read would: it cannot be cancelled).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn interrupted(stop: Stop) -> Failure {
    stop.failure("during the demo")
}
