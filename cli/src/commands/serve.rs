//! `meshkit serve SPEC`: meshkit's control plane on its own. Sidecars started from
//! `meshkit generate SPEC --ads ADDR` bootstraps connect to it over ADS; each gets the config
//! rendered for its node id, and every valid edit of SPEC is pushed to them. An invalid edit
//! is refused with its problems, and the sidecars keep what they have. `--status` answers
//! `GET /` with each node's acknowledged versions and last NACK.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use meshkit_cli::spec_watch::SpecWatch;
use meshkit_cli::xds::{AdsServer, Snapshot, StatusBoard};
use meshkit_sdk::{LoadError, OutputFormat, RenderOptions};
use tokio::net::TcpListener;

use super::{load, stop_signal, Exit, Failure, OrExit};

pub struct ServeArgs {
    pub spec: PathBuf,
    pub listen: SocketAddr,
    pub status: Option<SocketAddr>,
    pub wasm: String,
}

pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    let mesh = load(&args.spec)?;
    let render = RenderOptions {
        wasm_path: args.wasm,
        format: OutputFormat::Json,
        bare: false,
    };
    let snapshot = Snapshot::build(&mesh, &render).exit(Exit::Invalid)?;
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {} without authentication: anyone who can reach it can \
             claim to be any sidecar of the mesh and read its config",
            args.listen
        );
    }
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::new(Exit::Environment, format!("listen on {addr}: {e}")))
    };
    let server =
        AdsServer::start(bind(args.listen).await?, snapshot, true).exit(Exit::Environment)?;
    if let Some(addr) = args.status {
        let listener = bind(addr).await?;
        tokio::spawn(serve_status(listener, server.status.clone()));
        eprintln!("status: http://{addr}/");
    }
    eprintln!(
        "serving mesh {:?} ({} sidecars) over ADS on {}; watching {} for edits",
        mesh.name,
        server.snapshot().nodes.len(),
        server.addr,
        args.spec.display()
    );
    let mut watch = SpecWatch::new(&args.spec);
    let path = args.spec.display().to_string();
    let stop = stop_signal(None);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            edit = watch.next() => match edit.map(|m| Snapshot::build(&m, &render)) {
                Ok(Ok(snapshot)) => {
                    server.update(snapshot);
                    eprintln!("{path} changed: pushing it to the connected sidecars");
                }
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
    server.stop().await;
    Ok(())
}

/// Answers every request with the status board as plain text.
async fn serve_status(listener: TcpListener, status: Arc<StatusBoard>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let body = status.render();
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
