//! `meshkit generate SPEC -o DIR`: one bootstrap per sidecar, into a directory meshkit owns
//! (see `meshkit_sdk::output`); `--dashboards DIR`: the mesh's dashboard, scrape configuration
//! and alert rules; `--compose DIR`: a Compose project. Each directory is written the same way.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

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
    refuse_shared_directories(&args)?;
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
            wasm_path: args.wasm.clone(),
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
        // The module on this host (the compose file's default for ${MESHKIT_WASM}): `--wasm`
        // if given, else the built one. Absolute, since Compose reads a bare relative path as
        // a volume's name and resolves the rest against the compose file's directory.
        let wasm = if args.wasm == locate::WASM_RELATIVE {
            locate::wasm().unwrap_or_else(|_| PathBuf::from(locate::WASM_RELATIVE))
        } else {
            PathBuf::from(&args.wasm)
        };
        let wasm = std::path::absolute(&wasm).exit(Exit::Environment)?;
        if !wasm.is_file() {
            // Compose still starts: Docker creates a missing bind source as a directory.
            eprintln!(
                "warning: {} does not exist yet: build it before `docker compose up` (or set \
                 MESHKIT_WASM)",
                wasm.display()
            );
        }
        let wasm = wasm.display().to_string();
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

/// Each output owns its directory (it removes files it no longer generates there), so two
/// outputs in one directory would remove each other's files.
fn refuse_shared_directories(args: &GenerateArgs) -> Result<(), Failure> {
    let outputs = [
        ("-o", &args.out),
        ("--dashboards", &args.dashboards),
        ("--compose", &args.compose),
    ];
    let outputs: Vec<(&str, PathBuf)> = outputs
        .into_iter()
        .filter_map(|(flag, dir)| Some((flag, resolved(dir.as_ref()?))))
        .collect();
    for (i, (flag, dir)) in outputs.iter().enumerate() {
        if let Some((other, _)) = outputs[..i].iter().find(|(_, d)| d == dir) {
            return Err(Failure::new(
                Exit::Usage,
                format!(
                    "{flag}: {} is also {other}'s directory; each output needs its own",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `dir` as the file system resolves it, whether it exists yet or not: its longest existing
/// ancestor canonicalized (symlinks and `..` followed), then the rest (`.` and `..` taken
/// as written).
fn resolved(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for component in rest.into_iter().rev() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
