//! `meshkit serve SPEC`: meshkit's control plane on its own. Sidecars started from
//! `meshkit generate SPEC --ads ADDR` bootstraps connect to it over ADS; each gets the config
//! rendered for its node id, and every valid edit of SPEC is pushed to them. An invalid edit
//! is refused with its problems, and the sidecars keep what they have. On `--http`, sidecars
//! fetch the filter's module (checked against its sha256), and `GET /` answers with each
//! node's acknowledged versions and last NACK.

use std::net::SocketAddr;
use std::path::PathBuf;

use meshkit_cli::spec_watch::SpecWatch;
use meshkit_cli::xds::ControlPlane;
use meshkit_sdk::envoy::WASM_HTTP_PATH;
use meshkit_sdk::{LoadError, OutputFormat, RenderOptions};
use tokio::net::TcpListener;

use super::{load, stop_signal, Exit, Failure, OrExit};

pub struct ServeArgs {
    pub spec: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub wasm: String,
}

pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    let mesh = load(&args.spec)?;
    let render = RenderOptions {
        wasm_path: args.wasm,
        format: OutputFormat::Json,
        bare: false,
    };
    if !(args.listen.ip().is_loopback() && args.http.ip().is_loopback()) {
        eprintln!(
            "warning: listening on {} and {} without authentication: anyone who can reach \
             them can claim to be any sidecar of the mesh and read its config",
            args.listen, args.http
        );
    }
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::new(Exit::Environment, format!("listen on {addr}: {e}")))
    };
    let http = bind(args.http).await?;
    let ads = bind(args.listen).await?;
    let mut control_plane =
        ControlPlane::start_on(&mesh, render, true, ads, http).exit(Exit::Environment)?;
    eprintln!(
        "status: http://{}/; sidecars fetch the filter from http://{}{WASM_HTTP_PATH} (sha256 {})",
        args.http, args.http, control_plane.module.remote.sha256
    );
    eprintln!(
        "serving mesh {:?} ({} sidecars) over ADS on {}; watching {} for edits",
        mesh.name,
        mesh.instances().count(),
        control_plane.addr,
        args.spec.display()
    );
    let mut watch = SpecWatch::new(&args.spec);
    let path = args.spec.display().to_string();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            edit = watch.next() => match edit.map(|m| control_plane.push(&m)) {
                Ok(Ok(())) => eprintln!("{path} changed: pushing it to the connected sidecars"),
                Ok(Err(e)) => eprintln!("{path} changed but cannot be rendered: {e:#}"),
                Err(LoadError::Invalid(problems)) => eprintln!(
                    "{path} changed but is invalid ({} problem{}); still serving the previous \
                     config:\n{problems}",
                    problems.0.len(),
                    if problems.0.len() == 1 { "" } else { "s" }
                ),
                Err(e) => eprintln!("{path} changed but cannot be read ({e}); still serving the previous config"),
            }
        }
    }
    eprintln!("stopping; the sidecars keep their config");
    control_plane.stop().await;
    Ok(())
}
