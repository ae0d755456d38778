//! From a validated mesh to the files a deployment needs: one bootstrap per sidecar.

use std::path::Path;

use crate::envoy::{bootstrap, BootstrapOptions};
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

/// Renders every sidecar's bootstrap, in spec order (a service's replicas after its first
/// instance). All or nothing: an error leaves no file.
pub fn generate(mesh: &Mesh, options: &RenderOptions) -> Result<Vec<GeneratedFile>, RenderError> {
    let bootstrap_options = BootstrapOptions {
        wasm_path: (!options.bare).then(|| options.wasm_path.clone()),
    };
    let mut files = Vec::new();
    for service in &mesh.services {
        for (index, (name, instance)) in service.instances().enumerate() {
            let b = bootstrap(mesh, &instance, &name, &bootstrap_options);
            let (contents, ext) = match options.format {
                OutputFormat::Json => (bootstrap_json(&b)?, "json"),
                OutputFormat::Yaml => (bootstrap_yaml(&b)?, "yaml"),
            };
            files.push(GeneratedFile {
                service: service.name.clone(),
                instance: index,
                file_name: format!("{name}.{ext}"),
                contents,
            });
        }
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
