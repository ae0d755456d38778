//! `meshkit generate SPEC -o DIR`: one bootstrap per sidecar, into a directory meshkit owns
//! (see `meshkit_sdk::output`).

use std::net::SocketAddr;
use std::path::Path;

use meshkit_sdk::{generate, generate_ads, write_owned, OutputFormat, RenderOptions};

use super::{load, Exit, Failure, OrExit};

/// `ads`: the address of `meshkit serve`, for bootstraps that get everything else from it.
pub fn run(
    spec: &Path,
    out: &Path,
    wasm: String,
    format: OutputFormat,
    ads: Option<SocketAddr>,
) -> Result<(), Failure> {
    let mesh = load(spec)?;
    let options = RenderOptions {
        wasm_path: wasm,
        format,
        bare: false,
    };
    let files = match ads {
        Some(server) => generate_ads(&mesh, &options, server),
        None => generate(&mesh, &options),
    }
    .exit(Exit::Invalid)?;
    let written = write_owned(out, &files, &[spec]).exit(Exit::Output)?;
    for path in &written.written {
        println!("{}", path.display());
    }
    for path in &written.removed {
        eprintln!("removed {} (no longer generated)", path.display());
    }
    Ok(())
}
