//! `meshkit check SPEC`: every generated bootstrap through the real Envoy's
//! `--mode validate`.
//!
//! The bootstraps go to a temporary directory that is removed however `check` ends: success,
//! rejection, an Envoy that cannot run, Ctrl-C or SIGTERM (a signal drops the running
//! validation, which kills its Envoy). Only the pinned Envoy counts: a binary that merely exits
//! 0 would make everything pass.

use std::path::Path;

use meshkit_cli::locate;
use meshkit_cli::process::tie_to_parent;
use meshkit_sdk::{generate, write_files, OutputFormat, RenderOptions};

use super::{load, stop_signal, Exit, Failure, OrExit};

pub async fn run(spec: &Path) -> Result<(), Failure> {
    let mesh = load(spec)?;
    let envoy = locate::pinned_envoy()?;
    let wasm = std::path::absolute(locate::wasm()?).exit(Exit::Environment)?;
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: wasm.display().to_string(),
            format: OutputFormat::Json,
            bare: false,
        },
    )
    .exit(Exit::Invalid)?;
    let dir = tempfile::Builder::new()
        .prefix("meshkit-check-")
        .tempdir()
        .exit(Exit::Environment)?;
    write_files(dir.path(), &files).exit(Exit::Environment)?;

    let validate_all = async {
        let mut rejected = Vec::new();
        for f in &files {
            let name = mesh
                .service(&f.service)
                .map_or_else(|| f.service.clone(), |s| s.instance_name(f.instance));
            let mut command = tokio::process::Command::new(&envoy);
            command
                .args(["--mode", "validate", "--disable-hot-restart", "-c"])
                .arg(dir.path().join(&f.file_name))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            tie_to_parent(&mut command);
            let out = command.output().await.map_err(|e| {
                Failure::new(Exit::Environment, format!("run {}: {e}", envoy.display()))
            })?;
            if out.status.success() {
                println!("{name}: OK (envoy --mode validate)");
            } else {
                let log = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                println!(
                    "{name}: REJECTED\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
                rejected.push(name);
            }
        }
        Ok::<_, Failure>(rejected)
    };
    let rejected = tokio::select! {
        r = validate_all => r?,
        stop = stop_signal() => return Err(stop.failure("while Envoy validated the config")),
    };
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Invalid,
            format!("Envoy rejected config for: {}", rejected.join(", ")),
        ))
    }
}
