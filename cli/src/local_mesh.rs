//! A whole mesh on 127.0.0.1: one demo app and one stock Envoy per service instance (a service
//! and each of its replicas), from SDK-generated config. `meshkit up` and the integration tests
//! both run it. Instances are named as `Service::instance_name` names them: the first by its
//! service's name, replicas `<service>-<k>`.
//!
//! Start-up is all or nothing: ports are checked before anything starts, and if any sidecar
//! fails to become ready every process already started is stopped before the error returns.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use meshkit_sdk::model::{Mesh, Service};
use meshkit_sdk::{generate, write_files, OutputFormat, RenderOptions};
use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::app_process::{AppEnv, AppProcess};
use crate::demo_app::{DemoApp, DemoAppConfig, UpstreamCall};
use crate::drain;

use crate::process::{EnvoyCommand, EnvoyProcess};
pub use crate::xds::ControlPlane;

#[derive(Debug, Clone)]
pub struct LocalMeshOptions {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    /// Generated bootstraps and Envoy logs go here.
    pub run_dir: PathBuf,
    /// Envoy worker threads per sidecar.
    pub concurrency: u32,
    /// Print access log lines to stdout as they arrive.
    pub echo_access_log: bool,
    /// Say on stderr what start-up is doing (it takes seconds).
    pub report_progress: bool,
    pub ready_timeout: Duration,
    /// Services whose app the caller runs itself (e.g. a real gRPC server in a test): no demo
    /// app is started and their app port is left alone.
    pub external_apps: Vec<String>,
    /// (service, shell command): run this command per instance of the service instead of the
    /// demo app (see [`crate::app_process`]).
    pub app_commands: Vec<(String, String)>,
    /// Sidecars get their config from meshkit's ADS server (see [`crate::xds::control_plane`]), which
    /// [`LocalMesh::update`] changes live; otherwise each has a complete static bootstrap.
    pub ads: bool,
}

/// A listening socket the mesh needs is taken by someone else.
#[derive(Debug, thiserror::Error)]
#[error("port {port} on {ip} ({owner}) is already in use: {error}")]
pub struct PortInUse {
    pub ip: IpAddr,
    pub port: u16,
    pub owner: String,
    /// Part of the message, not a `source`: error chains print it once.
    pub error: std::io::Error,
}

pub struct LocalMesh {
    pub mesh: Mesh,
    pub access_log: Arc<AccessLog>,
    pub run_dir: PathBuf,
    /// Tagged with the instance name.
    envoys: Vec<EnvoyProcess>,
    /// (service, instance, app).
    apps: Vec<(String, String, DemoApp)>,
    /// The user's own apps, by instance.
    app_processes: Vec<AppProcess>,
    options: LocalMeshOptions,
    /// Each instance's sidecar bootstrap: (instance, path).
    configs: Vec<(String, PathBuf)>,
    /// The ADS server the sidecars get their config from, if `ads`.
    pub control_plane: Option<ControlPlane>,
}

/// Envoy's drain time where no health check asks for longer (see [`drain::drain_time`]).
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// One instance of a service: its name and its config as a service of its own.
struct Instance {
    name: String,
    spec: Service,
}

fn instances(mesh: &Mesh) -> Vec<Instance> {
    mesh.instances()
        .map(|(name, spec)| Instance { name, spec })
        .collect()
}

impl LocalMesh {
    pub async fn start(mesh: Mesh, options: &LocalMeshOptions) -> anyhow::Result<LocalMesh> {
        // Neither a demo app nor a port claim for apps the user runs.
        let not_demo: Vec<String> = options
            .external_apps
            .iter()
            .cloned()
            .chain(options.app_commands.iter().map(|(s, _)| s.clone()))
            .collect();
        let app_listeners = claim_ports(&mesh, &not_demo).await?;

        std::fs::create_dir_all(&options.run_dir)
            .with_context(|| format!("create {}", options.run_dir.display()))?;
        let wasm = std::path::absolute(&options.wasm)?;
        let render = RenderOptions {
            wasm_path: wasm.display().to_string(),
            format: OutputFormat::Json,
            bare: false,
        };
        let control_plane = match options.ads {
            true => {
                Some(ControlPlane::start(&mesh, render.clone(), options.report_progress).await?)
            }
            false => None,
        };
        let files = match &control_plane {
            Some(cp) => cp.bootstraps(&mesh)?,
            None => generate(&mesh, &render)?,
        };
        write_files(&options.run_dir, &files)?;

        let access_log = Arc::new(AccessLog::new(options.echo_access_log));
        let mut local = LocalMesh {
            access_log: access_log.clone(),
            run_dir: options.run_dir.clone(),
            envoys: Vec::new(),
            apps: Vec::new(),
            app_processes: Vec::new(),
            mesh: mesh.clone(),
            options: options.clone(),
            configs: files
                .iter()
                .filter_map(|f| {
                    let service = mesh.service(&f.service)?;
                    let name = service.instance_name(f.instance);
                    Some((name, options.run_dir.join(&f.file_name)))
                })
                .collect(),
            control_plane,
        };
        for (instance, listener) in app_listeners {
            let app = DemoApp::start(listener, demo_app_config(&instance.spec, &instance.name))?;
            local
                .apps
                .push((instance.spec.name.clone(), instance.name, app));
        }
        for i in instances(&mesh) {
            if let Err(e) = local.spawn_app_process(&i).await {
                local.shutdown().await;
                return Err(e);
            }
        }
        for (name, _) in local.configs.clone() {
            if let Err(e) = local.spawn_sidecar(&name) {
                local.shutdown().await;
                return Err(e);
            }
        }
        let mut failure = None;
        let started = tokio::time::Instant::now();
        for app in &mut local.app_processes {
            if let Err(e) = app.wait_listening(options.ready_timeout).await {
                failure = Some(e);
                break;
            }
            if options.report_progress {
                eprintln!("  {} app listening on {}", app.instance, app.listen);
            }
        }
        for envoy in local.envoys.iter_mut().take_while(|_| failure.is_none()) {
            if let Err(e) = envoy.wait_ready(options.ready_timeout).await {
                failure = Some(e);
                break;
            }
            if options.report_progress {
                eprintln!(
                    "  {} sidecar ready ({:.1}s)",
                    envoy.service,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        if let (None, Some(cp)) = (&failure, &local.control_plane) {
            failure = cp.wait_acked(options.ready_timeout).await.err();
        }
        if failure.is_none() {
            failure = local.wait_checked_healthy().await.err();
        }
        if let Some(e) = failure {
            local.shutdown().await;
            return Err(e);
        }
        if options.report_progress
            && local
                .mesh
                .services
                .iter()
                .any(|s| !drain::watchers(&local.mesh, &s.name).is_empty())
        {
            eprintln!(
                "  every health-checked instance healthy in its callers' checks ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(local)
    }

    /// Waits until every caller that health-checks a service sees each of its instances
    /// healthy, so that "up" means requests flow: a caller's first check may have run before
    /// the instance's sidecar listened, and with no healthy replica it answers
    /// `MESH_NO_HEALTHY_UPSTREAM` (or, above a panic threshold, routes blindly). Services whose
    /// apps the user runs are skipped: those may come up later.
    async fn wait_checked_healthy(&self) -> anyhow::Result<()> {
        for s in &self.mesh.services {
            let watchers = drain::watchers(&self.mesh, &s.name);
            if watchers.is_empty() || self.options.external_apps.contains(&s.name) {
                continue;
            }
            for (name, _) in s.instances() {
                let host = self
                    .inbound(&name)
                    .with_context(|| format!("no address for {name}"))?;
                let path = self
                    .mesh
                    .services
                    .iter()
                    .flat_map(|c| &c.upstreams)
                    .filter(|u| u.service == s.name)
                    .find_map(|u| u.policy.health_check.as_ref())
                    .map_or("", |c| c.path.as_str());
                drain::wait_health(&watchers, &s.name, host, true)
                    .await
                    .with_context(|| {
                        format!("{name} never passed its callers' health check: does its app answer GET {path} with 200?")
                    })?;
            }
        }
        Ok(())
    }

    /// Runs the user's command for instance `i`, if its service has one (not yet listening).
    async fn spawn_app_process(&mut self, i: &Instance) -> anyhow::Result<()> {
        let commands = &self.options.app_commands;
        let Some((_, command)) = commands.iter().find(|(s, _)| *s == i.spec.name) else {
            return Ok(());
        };
        let listen = SocketAddr::new(i.spec.app.address, i.spec.app.port);
        bind(listen.ip(), listen.port(), &format!("{} app", i.name)).await?;
        let env = AppEnv {
            service: &i.spec.name,
            instance: &i.name,
            listen,
            outbound: SocketAddr::from(([127, 0, 0, 1], i.spec.sidecar.outbound_port)),
        };
        let process = AppProcess::spawn(command, &env, &self.options.run_dir)?;
        self.app_processes.push(process);
        Ok(())
    }

    /// Starts instance `name`'s sidecar (not yet ready).
    fn spawn_sidecar(&mut self, name: &str) -> anyhow::Result<()> {
        let (instance, config) = self
            .mesh
            .instance(name)
            .zip(self.configs.iter().find(|(n, _)| n == name))
            .with_context(|| format!("no instance {name}"))?;
        let cmd = EnvoyCommand {
            binary: self.options.envoy.clone(),
            config: config.1.clone(),
            base_id: u32::from(instance.sidecar.admin_port),
            concurrency: self.options.concurrency,
            log_path: self.options.run_dir.join(format!("{name}.envoy.log")),
            discard_access_log: false,
            drain_time: drain::drain_time(&self.mesh),
            wrapper: Vec::new(),
        };
        let envoy =
            EnvoyProcess::spawn(name, admin_addr(&instance), &cmd, self.access_log.clone())?;
        self.envoys.push(envoy);
        Ok(())
    }

    /// Starts instance `name` again after [`LocalMesh::stop_instance`]: its app (the demo app,
    /// or the user's command; nothing for an external app), then its sidecar, each ready.
    pub async fn start_instance(&mut self, name: &str) -> anyhow::Result<()> {
        let i = instances(&self.mesh)
            .into_iter()
            .find(|i| i.name == name)
            .with_context(|| format!("no instance {name}"))?;
        let timeout = self.options.ready_timeout;
        let service = i.spec.name.clone();
        if self.options.app_commands.iter().any(|(s, _)| *s == service) {
            self.spawn_app_process(&i).await?;
            if let Some(app) = self.app_processes.iter_mut().find(|a| a.instance == name) {
                app.wait_listening(timeout).await?;
            }
        } else if !self.options.external_apps.contains(&service) {
            let listener =
                bind(i.spec.app.address, i.spec.app.port, &format!("{name} app")).await?;
            let app = DemoApp::start(listener, demo_app_config(&i.spec, name))?;
            self.apps.push((service, name.to_string(), app));
        }
        self.spawn_sidecar(name)?;
        if let Some(envoy) = self.envoys.iter_mut().find(|e| e.service == name) {
            envoy.wait_ready(timeout).await?;
        }
        Ok(())
    }

    /// Restarts every instance of `service`, one at a time, without failing a request of a
    /// caller that health-checks it: each is drained (see [`drain`]) and stopped, started again,
    /// and seen healthy by every such caller before the next one goes. `progress` hears each
    /// step.
    pub async fn rolling_restart(
        &mut self,
        service: &str,
        progress: impl Fn(&str),
    ) -> anyhow::Result<()> {
        let s = self
            .mesh
            .service(service)
            .with_context(|| format!("no service {service:?} in the mesh"))?
            .clone();
        let watchers = drain::watchers(&self.mesh, service);
        if watchers.is_empty() {
            progress(&format!(
                "no caller health-checks {service}: its callers cannot be told to stop sending \
                 it requests, so a request may fail while an instance restarts"
            ));
        }
        let instances: Vec<String> = s.instances().map(|(name, _)| name).collect();
        for name in instances {
            let host = self
                .inbound(&name)
                .with_context(|| format!("no address for {name}"))?;
            let admin = self
                .admin(&name)
                .with_context(|| format!("no admin for {name}"))?;
            progress(&format!("{name}: leaving its callers' rotation, draining"));
            let drain_time = drain::drain_time(&self.mesh);
            drain::drain(admin, &watchers, service, host, drain_time).await?;
            progress(&format!("{name}: stopping"));
            self.stop_instance(&name).await;
            progress(&format!("{name}: starting"));
            self.start_instance(&name).await?;
            drain::wait_back(&watchers, service, host).await?;
            progress(&format!("{name}: back in rotation"));
        }
        Ok(())
    }

    /// Changes the running mesh to `mesh` without a restart (ADS only): validated and
    /// rendered, pushed to every sidecar, and returned once each has acknowledged it. The
    /// instances (names and ports) must stay as they are.
    pub async fn update(&mut self, mesh: Mesh) -> anyhow::Result<()> {
        let Some(cp) = &self.control_plane else {
            bail!("this mesh runs on static bootstraps: restart it to change its config");
        };
        let same_instances = |m: &Mesh| {
            m.instances()
                .map(|(name, s)| (name, s.sidecar.inbound_port, s.sidecar.admin_port))
                .collect::<Vec<_>>()
        };
        if same_instances(&mesh) != same_instances(&self.mesh) {
            bail!("a live update cannot add, remove or move an instance: restart the mesh");
        }
        cp.push(&mesh)?;
        self.mesh = mesh;
        cp.wait_acked(self.options.ready_timeout).await
    }

    /// The inbound listener of instance `name`'s sidecar (a service's name: its first
    /// instance): where its callers connect.
    pub fn inbound(&self, name: &str) -> Option<SocketAddr> {
        let s = self.mesh.instance(name)?;
        let ip: IpAddr = s.sidecar.address.parse().ok()?;
        Some(SocketAddr::new(ip, s.sidecar.inbound_port))
    }

    /// The admin address of instance `name`'s sidecar.
    pub fn admin(&self, name: &str) -> Option<SocketAddr> {
        self.mesh.instance(name).as_ref().map(admin_addr)
    }

    /// Stops the app of every instance of `service` (listener and connections), leaving the
    /// sidecars running.
    pub fn stop_app(&mut self, service: &str) -> bool {
        let before = self.apps.len();
        self.apps.retain(|(s, _, _)| s != service);
        before != self.apps.len()
    }

    /// Stops every instance of `service`, sidecars and apps: the whole service is gone, so its
    /// callers' sidecars fail to connect (`UF`).
    pub async fn stop_service(&mut self, service: &str) -> bool {
        let names: Vec<String> = self
            .mesh
            .service(service)
            .map(|s| s.instances().map(|(name, _)| name).collect())
            .unwrap_or_default();
        let mut found = false;
        for name in names {
            found |= self.stop_instance(&name).await;
        }
        found
    }

    /// Stops one instance, its sidecar (SIGTERM) and its app.
    pub async fn stop_instance(&mut self, name: &str) -> bool {
        let before = self.apps.len();
        self.apps.retain(|(_, instance, _)| instance != name);
        let mut found = before != self.apps.len();
        for app in self.app_processes.iter_mut().filter(|a| a.instance == name) {
            app.stop(Duration::from_secs(5)).await;
            found = true;
        }
        self.app_processes.retain(|a| a.instance != name);
        for envoy in self.envoys.iter_mut().filter(|e| e.service == name) {
            envoy.stop(Duration::from_secs(5)).await;
            found = true;
        }
        self.envoys.retain(|e| e.service != name);
        found
    }

    /// Stops every sidecar (SIGTERM, so access logs are flushed) and app.
    pub async fn shutdown(&mut self) {
        for envoy in &mut self.envoys {
            envoy.stop(Duration::from_secs(5)).await;
        }
        self.envoys.clear();
        self.apps.clear();
        for app in &mut self.app_processes {
            app.stop(Duration::from_secs(5)).await;
        }
        self.app_processes.clear();
        // Every sidecar's last lines are in: let stdout take them (a blocking wait, off the
        // runtime's threads).
        let log = self.access_log.clone();
        let _ = tokio::task::spawn_blocking(move || log.finish(Duration::from_secs(2))).await;
    }

    /// Instances whose sidecar is running.
    pub fn running_sidecars(&self) -> Vec<String> {
        self.envoys.iter().map(|e| e.service.clone()).collect()
    }
}

fn admin_addr(s: &Service) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.sidecar.admin_port))
}

fn demo_app_config(service: &Service, instance: &str) -> DemoAppConfig {
    let via = SocketAddr::from(([127, 0, 0, 1], service.sidecar.outbound_port));
    let calls = service
        .demo_calls()
        .into_iter()
        .map(|c| UpstreamCall {
            via,
            path: c.path,
            grpc: c.grpc,
        })
        .collect();
    DemoAppConfig {
        name: service.name.clone(),
        instance: instance.to_string(),
        calls,
    }
}

/// Binds every demo app port (kept: the demo apps serve on them) and checks every sidecar port
/// is free (released again for Envoy to bind), before any process starts.
async fn claim_ports(
    mesh: &Mesh,
    external: &[String],
) -> anyhow::Result<Vec<(Instance, TcpListener)>> {
    let mut apps = Vec::new();
    let all = instances(mesh);
    for i in &all {
        let s = &i.spec;
        let Ok(ip) = s.sidecar.address.parse::<IpAddr>() else {
            bail!(
                "{}: sidecar address {:?} must be an IP address to run the mesh locally",
                i.name,
                s.sidecar.address
            );
        };
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for (ip, port, what) in [
            (ip, s.sidecar.inbound_port, "inbound listener"),
            (loopback, s.sidecar.outbound_port, "outbound listener"),
            (loopback, s.sidecar.admin_port, "admin"),
        ] {
            drop(bind(ip, port, &format!("{} sidecar {what}", i.name)).await?);
        }
    }
    for i in all.into_iter().filter(|i| !external.contains(&i.spec.name)) {
        let owner = format!("{} app", i.name);
        let listener = bind(i.spec.app.address, i.spec.app.port, &owner).await?;
        apps.push((i, listener));
    }
    Ok(apps)
}

async fn bind(ip: IpAddr, port: u16, owner: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((ip, port)).await.map_err(|error| {
        PortInUse {
            ip,
            port,
            owner: owner.to_string(),
            error,
        }
        .into()
    })
}
