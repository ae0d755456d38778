//! meshkit's control plane assembled: the ADS server serving every sidecar of the mesh and
//! pushing each change of the spec to them without a restart, and its HTTP side, from which
//! the sidecars fetch the filter's module (checked by its sha256) and which shows the status
//! page. `meshkit serve` runs it on the addresses it is given, `meshkit up` on free loopback
//! ports.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use meshkit_sdk::model::Mesh;
use meshkit_sdk::{generate_ads, GeneratedFile, RenderOptions};
use tokio::net::TcpListener;

use super::http::{self, Module};
use super::{AdsServer, Snapshot};

/// How often the status board is polled while waiting for sidecars to acknowledge.
const POLL: Duration = Duration::from_millis(20);

pub struct ControlPlane {
    /// `None` while stopped (the sidecars keep running on what they have).
    server: Option<AdsServer>,
    /// Where the sidecars' bootstraps say the server is.
    pub addr: SocketAddr,
    render: RenderOptions,
    echo: bool,
    /// The module the sidecars fetch, and where from.
    pub module: Module,
    http: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    /// Starts serving `mesh` on free loopback ports; `echo`: print every NACK on stderr.
    pub async fn start(mesh: &Mesh, render: RenderOptions, echo: bool) -> anyhow::Result<Self> {
        let http = TcpListener::bind(("127.0.0.1", 0)).await?;
        let ads = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(mesh, render, echo, ads, http)
    }

    /// Starts serving `mesh`: ADS on `ads`, the module and the status page on `http`.
    pub fn start_on(
        mesh: &Mesh,
        render: RenderOptions,
        echo: bool,
        ads: TcpListener,
        http: TcpListener,
    ) -> anyhow::Result<Self> {
        let module = Module::read(Path::new(&render.wasm_path), &http)?;
        let snapshot = Snapshot::build(mesh, &render, Some(&module.remote))?;
        let server = AdsServer::start(ads, snapshot, echo)?;
        let http = tokio::spawn(http::serve(http, module.clone(), server.status.clone()));
        Ok(ControlPlane {
            addr: server.addr,
            server: Some(server),
            render,
            echo,
            module,
            http,
        })
    }

    /// `mesh` as the server serves it.
    pub fn snapshot(&self, mesh: &Mesh) -> anyhow::Result<Snapshot> {
        Snapshot::build(mesh, &self.render, Some(&self.module.remote))
    }

    /// The running server.
    pub fn server(&self) -> anyhow::Result<&AdsServer> {
        self.server.as_ref().context("the control plane is stopped")
    }

    /// Every sidecar's bootstrap: its identity, admin, and the way to this server.
    pub fn bootstraps(&self, mesh: &Mesh) -> anyhow::Result<Vec<GeneratedFile>> {
        Ok(generate_ads(mesh, &self.render, self.addr)?)
    }

    /// Serves `mesh` from now on: every connected sidecar is sent what changed for it.
    pub fn push(&self, mesh: &Mesh) -> anyhow::Result<()> {
        self.server()?.update(self.snapshot(mesh)?);
        Ok(())
    }

    /// Stops the server: streams end, connections close; the sidecars keep their config.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Starts the server again on the same address, serving `mesh`.
    pub async fn start_again(&mut self, mesh: &Mesh) -> anyhow::Result<()> {
        self.stop().await;
        let snapshot = self.snapshot(mesh)?;
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("bind {} again", self.addr))?;
        self.server = Some(AdsServer::start(listener, snapshot, self.echo)?);
        Ok(())
    }

    /// Waits until every sidecar of the current snapshot acknowledged all of it; fails at
    /// once if one refused it (NACK), with Envoy's reason.
    pub async fn wait_acked(&self, timeout: Duration) -> anyhow::Result<()> {
        let server = self.server()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let snapshot = server.snapshot();
        while !server.status.all_acked(&snapshot) {
            if let Some((node, t, detail)) = server.status.refused(&snapshot) {
                bail!("{node} refused its config ({} NACK): {detail}", t.short());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "not every sidecar acknowledged the config within {timeout:?}:\n{}",
                    server.status.render()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.http.abort();
    }
}
