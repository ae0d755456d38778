//! `meshkit explain [CODE]`: a built-in mesh code, or a catalog entry.
//!
//! Mesh codes are built in and need no spec, so they are explained anywhere, even next to an
//! invalid spec. Catalog codes come from `--spec`, by default `envoy/mesh.yaml` when it exists.

use std::path::{Path, PathBuf};

use meshkit_filter::core::catalog::CatalogEntry;
use meshkit_filter::core::error_code::{is_valid_code, Blame, MeshCode};

use super::{load, Exit, Failure};

const DEFAULT_SPEC: &str = "envoy/mesh.yaml";

pub fn run(code: Option<&str>, spec: Option<&Path>) -> Result<(), Failure> {
    match code {
        None => {
            for m in MeshCode::ALL {
                println!("{}\n", describe_mesh(m));
            }
            match catalog_spec(spec) {
                Some(spec) => {
                    let mesh = load(&spec)?;
                    for e in &mesh.errors.catalog {
                        println!("{}\n", describe_entry(e, &spec));
                    }
                }
                None => eprintln!(
                    "(no catalog listed: {DEFAULT_SPEC} not found; pass --spec SPEC for its codes)"
                ),
            }
            Ok(())
        }
        Some(code) if code.trim().is_empty() => {
            Err(Failure::new(Exit::Usage, "the code to explain is empty"))
        }
        Some(code) => {
            if let Some(m) = MeshCode::from_name(code) {
                println!("{}", describe_mesh(m));
                return Ok(());
            }
            if !is_valid_code(code.as_bytes()) {
                return Err(Failure::new(
                    Exit::Invalid,
                    format!(
                        "{code:?} is not a valid code (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 \
                         bytes): meshkit never carries it; an app that reports it is logged as \
                         \"malformed\""
                    ),
                ));
            }
            let Some(spec) = catalog_spec(spec) else {
                return Err(Failure::new(
                    Exit::Invalid,
                    format!(
                        "{code} is not a mesh code, and there is no catalog to look it up in \
                         ({DEFAULT_SPEC} not found; pass --spec SPEC)"
                    ),
                ));
            };
            let mesh = load(&spec)?;
            match mesh.errors.catalog.iter().find(|e| e.code == code) {
                Some(e) => {
                    println!("{}", describe_entry(e, &spec));
                    Ok(())
                }
                None => Err(Failure::new(
                    Exit::Invalid,
                    format!(
                        "{code} is not in the catalog of {} nor a mesh code: meshkit carries it \
                         as-is, classified \"unknown\", and never retries it",
                        spec.display()
                    ),
                )),
            }
        }
    }
}

/// `--spec` if given, else the default spec if it exists.
fn catalog_spec(spec: Option<&Path>) -> Option<PathBuf> {
    match spec {
        Some(s) => Some(s.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_SPEC)).filter(|p| p.exists()),
    }
}

fn describe_mesh(m: MeshCode) -> String {
    format!(
        "{}  (mesh code, built in)\n  title:       {}\n  envoy flags: {}\n  HTTP status: {}\n  \
         gRPC status: {} ({})\n  retryable:   {}\n  blamed on:   {}",
        m.name(),
        m.title(),
        m.envoy_flags(),
        m.http_status(),
        m.grpc_status().name(),
        m.grpc_status().code(),
        if m.retryable() { "yes" } else { "no" },
        match m.blame() {
            Blame::Upstream => "the upstream (or, inbound, the service's own app)",
            Blame::Sidecar => "the sidecar that refused the request",
        }
    )
}

fn describe_entry(e: &CatalogEntry, spec: &Path) -> String {
    format!(
        "{}  (catalog, {})\n  message:     {}\n  HTTP status: {}\n  gRPC status: {} ({})\n  \
         retryable:   {}",
        e.code,
        spec.display(),
        e.message,
        e.http_status,
        e.grpc_status.name(),
        e.grpc_status.code(),
        if e.retryable { "yes" } else { "no" }
    )
}
