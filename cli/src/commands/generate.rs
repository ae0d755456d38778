//! `meshkit generate SPEC -o DIR`: one bootstrap per sidecar, into a directory meshkit owns
//! (see `meshkit_sdk::output`); `--dashboards DIR`: the mesh's dashboard, scrape configuration
//! and alert rules; `--compose DIR`: a Compose project. Each directory is written the same way.

use std::net::SocketAddr;
use std::path::PathBuf;

use meshkit_cli::locate;
use meshkit_sdk::compose::{containerize, generate_compose, ComposeOptions};
use meshkit_sdk::observability::{generate_observability, ObservabilityOptions};
use meshkit_sdk::{
    generate, generate_ads, write_owned, GeneratedFile, OutputFormat, RenderOptions,
};

use super::{load, load_with, Exit, Failure, OrExit};

pub struct GenerateArgs {
    pub spec: PathBuf,
    pub out: Option<PathBuf>,
    pub dashboards: Option<PathBuf>,
    pub compose: Option<PathBuf>,
    pub prometheus_url: String,
    pub wasm: String,
    pub format: OutputFormat,
    /// The address of `meshkit serve`, for bootstraps that get everything else from it.
    pub ads: Option<SocketAddr>,
}

pub fn run(args: GenerateArgs) -> Result<(), Failure> {
    // The spec as written, for the outputs that run it as written (read once, if needed).
    let mesh = if args.out.is_some() || args.dashboards.is_some() {
        Some(load(&args.spec)?)
    } else {
        None
    };
    // Everything is rendered before anything is written.
    let mut outputs: Vec<(PathBuf, Vec<GeneratedFile>)> = Vec::new();
    if let (Some(out), Some(mesh)) = (args.out, &mesh) {
        let options = RenderOptions {
            wasm_path: args.wasm,
            format: args.format,
            bare: false,
        };
        let files = match args.ads {
            Some(server) => generate_ads(mesh, &options, server),
            None => generate(mesh, &options),
        }
        .exit(Exit::Invalid)?;
        outputs.push((out, files));
    }
    if let (Some(dir), Some(mesh)) = (args.dashboards, &mesh) {
        let options = ObservabilityOptions {
            prometheus_url: args.prometheus_url,
            ..ObservabilityOptions::default()
        };
        let files = generate_observability(mesh, &options).exit(Exit::Invalid)?;
        outputs.push((dir, files));
    }
    if let Some(dir) = args.compose {
        // Each instance is its own host in Compose: the spec is read that way.
        let mesh = load_with(&args.spec, containerize)?;
        // The module on this host (the compose file's default for ${MESHKIT_WASM}).
        let wasm = locate::wasm()
            .ok()
            .and_then(|p| std::path::absolute(p).ok())
            .map_or_else(
                || locate::WASM_RELATIVE.to_string(),
                |p| p.display().to_string(),
            );
        let options = ComposeOptions {
            wasm,
            concurrency: 2,
        };
        let files = generate_compose(&mesh, &options).exit(Exit::Invalid)?;
        outputs.push((dir, files));
    }
    for (dir, files) in outputs {
        let written = write_owned(&dir, &files, &[&args.spec]).exit(Exit::Output)?;
        for path in &written.written {
            println!("{}", path.display());
        }
        for path in &written.removed {
            eprintln!("removed {} (no longer generated)", path.display());
        }
    }
    Ok(())
}
