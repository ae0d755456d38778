//! `meshkit demo-app`: one demo app, as `up` runs it per service.

use meshkit_cli::demo_app::{DemoApp, DemoAppConfig, UpstreamCall};

use super::{stop_signal, Exit, Failure, OrExit};

pub async fn run(
    name: String,
    instance: Option<String>,
    listen: std::net::SocketAddr,
    calls: &[String],
) -> Result<(), Failure> {
    let calls = calls
        .iter()
        .map(|c| parse_call(c))
        .collect::<Result<Vec<_>, _>>()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::new(Exit::Environment, format!("listen on {listen}: {e}")))?;
    let _app = DemoApp::start(
        listener,
        DemoAppConfig {
            instance: instance.unwrap_or_else(|| name.clone()),
            name,
            calls,
        },
    )
    .exit(Exit::Environment)?;
    eprintln!("demo app listening on {listen}; Ctrl-C to stop");
    stop_signal().await;
    Ok(())
}

fn parse_call(text: &str) -> Result<UpstreamCall, Failure> {
    let usage = |why: &str| Failure::new(Exit::Usage, format!("--call {text:?}: {why}"));
    let (grpc, rest) = match text.strip_prefix("grpc:") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (addr, path) = rest
        .split_once('/')
        .ok_or_else(|| usage("expected [grpc:]ADDR/PATH"))?;
    Ok(UpstreamCall {
        via: addr.parse().map_err(|_| usage("bad address"))?,
        path: format!("/{path}"),
        grpc,
    })
}
