//! From a validated mesh to the files a deployment needs: one bootstrap per sidecar.

use std::net::SocketAddr;
use std::path::Path;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;

use crate::envoy::{ads_bootstrap, bootstrap, node_id, BootstrapOptions};
use crate::model::Mesh;
use crate::render::{bootstrap_json, bootstrap_yaml, RenderError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Json,
    Yaml,
}

#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub wasm_path: String,
    pub format: OutputFormat,
    /// Leave the meshkit filter out of every listener: the same config as bare Envoy, the
    /// benchmark's baseline. Never for a real mesh.
    pub bare: bool,
}

/// One rendered file, named relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub service: String,
    /// Which instance of the service (0 is the first; see `Service::instance_name`).
    pub instance: usize,
    pub file_name: String,
    pub contents: String,
}

/// One sidecar of the mesh and its complete static config.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub service: String,
    /// Which instance of the service (0 is the first; see `Service::instance_name`).
    pub instance: usize,
    /// The instance's name (`users`, `users-1`, …).
    pub name: String,
    pub node_id: String,
    pub bootstrap: Bootstrap,
}

/// Every sidecar's static bootstrap, in spec order (a service's replicas after its first
/// instance).
pub fn sidecars(mesh: &Mesh, options: &RenderOptions) -> Vec<Sidecar> {
    let bootstrap_options = BootstrapOptions {
        wasm_path: (!options.bare).then(|| options.wasm_path.clone()),
    };
    let mut out = Vec::new();
    for service in &mesh.services {
        for (index, (name, instance)) in service.instances().enumerate() {
            out.push(Sidecar {
                service: service.name.clone(),
                instance: index,
                node_id: node_id(&name),
                bootstrap: bootstrap(mesh, &instance, &name, &bootstrap_options),
                name,
            });
        }
    }
    out
}

/// Renders every sidecar's bootstrap, in spec order. All or nothing: an error leaves no file.
pub fn generate(mesh: &Mesh, options: &RenderOptions) -> Result<Vec<GeneratedFile>, RenderError> {
    render_files(sidecars(mesh, options), options.format)
}

/// Like [`generate`], for sidecars that get everything else from meshkit's ADS server at
/// `server`: each bootstrap holds only the node's identity, admin and the way to the server.
pub fn generate_ads(
    mesh: &Mesh,
    options: &RenderOptions,
    server: SocketAddr,
) -> Result<Vec<GeneratedFile>, RenderError> {
    let mut all = sidecars(mesh, options);
    for s in &mut all {
        s.bootstrap = ads_bootstrap(&s.bootstrap, server);
    }
    render_files(all, options.format)
}

fn render_files(
    sidecars: Vec<Sidecar>,
    format: OutputFormat,
) -> Result<Vec<GeneratedFile>, RenderError> {
    let mut files = Vec::new();
    for s in sidecars {
        let (contents, ext) = match format {
            OutputFormat::Json => (bootstrap_json(&s.bootstrap)?, "json"),
            OutputFormat::Yaml => (bootstrap_yaml(&s.bootstrap)?, "yaml"),
        };
        files.push(GeneratedFile {
            service: s.service,
            instance: s.instance,
            file_name: format!("{}.{ext}", s.name),
            contents,
        });
    }
    Ok(files)
}

/// Writes rendered files into `dir` (created if needed). Each file is written to a temporary
/// name and renamed, so a reader never sees half a file.
pub fn write_files(dir: &Path, files: &[GeneratedFile]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for f in files {
        let tmp = dir.join(format!(".{}.tmp", f.file_name));
        std::fs::write(&tmp, &f.contents)?;
        std::fs::rename(&tmp, dir.join(&f.file_name))?;
    }
    Ok(())
}
