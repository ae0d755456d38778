//! The control plane's HTTP side: the filter's module for sidecars to fetch
//! (`GET /meshkit_filter.wasm`, checked by Envoy against the sha256 in its config), and the
//! status page (`GET /`: each node's acknowledged versions and last NACK).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use meshkit_sdk::envoy::{RemoteWasm, WASM_HTTP_PATH};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::status::StatusBoard;

/// The module's bytes, and what the config says of them.
#[derive(Clone)]
pub struct Module {
    pub bytes: Bytes,
    pub remote: RemoteWasm,
}

impl Module {
    /// Reads the module at `path`, to be served from `listener`'s address.
    pub fn read(path: &Path, listener: &TcpListener) -> anyhow::Result<Module> {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Module {
            bytes: Bytes::from(bytes),
            remote: RemoteWasm {
                server: listener.local_addr()?,
                sha256,
            },
        })
    }
}

/// Serves the module and the status page until the task is dropped.
pub async fn serve(listener: TcpListener, module: Module, status: Arc<StatusBoard>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: let some close rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (module, status) = (module.clone(), status.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = match req.uri().path() {
                    WASM_HTTP_PATH => Response::new(Full::new(module.bytes.clone())),
                    "/" => Response::new(Full::new(Bytes::from(status.render()))),
                    _ => {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
