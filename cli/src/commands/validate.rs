//! `meshkit validate SPEC`.

use std::path::Path;

use super::{load, Failure};

pub fn run(spec: &Path) -> Result<(), Failure> {
    let mesh = load(spec)?;
    let names: Vec<&str> = mesh.services.iter().map(|s| s.name.as_str()).collect();
    println!(
        "{}: valid: mesh {:?}, {} services ({})",
        spec.display(),
        mesh.name,
        names.len(),
        names.join(", ")
    );
    Ok(())
}
