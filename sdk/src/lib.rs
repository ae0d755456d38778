//! meshkit SDK: a declarative mesh spec, validated with precise errors and rendered into Envoy v3
//! bootstrap config that wires the meshkit filter into every listener.
//!
//! Data flows one way: [`load`] (the file) → [`spec`] → [`validate`] → [`model`] (validated) →
//! [`envoy`] (typed Envoy messages) → [`render`] (proto3 JSON / YAML files).

pub mod compose;
pub mod duration;
pub mod envoy;
pub mod generate;
pub mod load;
pub mod model;
pub mod observability;
pub mod output;
pub mod problems;
pub mod render;
pub mod spec;
pub mod validate;

pub use generate::{
    generate, generate_ads, sidecars, write_files, GeneratedFile, OutputFormat, RenderOptions,
    Sidecar,
};
pub use load::{load_file, load_str, Format, LoadError};
pub use output::{write_owned, OutputError, Written, MANIFEST};
pub use problems::{Problem, Problems};

/// The example spec (`envoy/mesh.yaml`), for unit tests.
#[cfg(test)]
pub(crate) const EXAMPLE_SPEC: &str = include_str!("../../envoy/mesh.yaml");
