//! `meshkit generate SPEC -o DIR`: one bootstrap per sidecar, into a directory meshkit owns
//! (see `meshkit_sdk::output`).

use std::path::Path;

use meshkit_sdk::{generate, write_owned, OutputFormat, RenderOptions};

use super::{load, Exit, Failure, OrExit};

pub fn run(spec: &Path, out: &Path, wasm: String, format: OutputFormat) -> Result<(), Failure> {
    let mesh = load(spec)?;
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: wasm,
            format,
            bare: false,
        },
    )
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
