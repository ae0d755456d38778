//! Validation: a parsed [`MeshSpec`] → the validated [`Mesh`], reporting every problem at once
//! as `path.to.field: message`.
//!
//! One file per part of the spec, so each rule has one obvious place:
//! - [`service`]: a service, its app and its sidecar (addresses);
//! - [`routes`]: route matches, and routes an earlier route makes unreachable;
//! - [`retry`]: route retry policies and upstream retry budgets;
//! - [`circuit_breaker`]: circuit-breaker thresholds;
//! - [`upstream_policy`]: load balancing, outlier detection, health checks, timeouts;
//! - [`topology`]: what spans services: sockets shared on a host, and call cycles;
//! - [`values`]: ports, durations, host names.

mod circuit_breaker;
mod retry;
mod routes;
mod service;
mod topology;
mod upstream_policy;
mod values;

use std::collections::HashMap;
use std::time::Duration;

use meshkit_filter::core::config::{is_service_name, MAX_SERVICE_NAME_LEN};

use crate::model::Mesh;
use crate::problems::{Collector, Problems};
use crate::spec::{MeshSpec, SPEC_VERSION};

pub use circuit_breaker::MAX_BREAKER;
pub use retry::{DEFAULT_RETRY_ON, IDEMPOTENT_METHODS, MAX_RETRIES, RETRY_ON};

/// Default inbound (app) and route timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Checks every value and reference in a parsed spec.
pub fn validate(spec: &MeshSpec) -> Result<Mesh, Problems> {
    let mut c = Collector::default();
    if spec.version != SPEC_VERSION {
        c.push(
            "version",
            format!(
                "unsupported version {}, expected {SPEC_VERSION}",
                spec.version
            ),
        );
    }
    if spec.mesh.trim().is_empty() {
        c.push("mesh", "must not be empty");
    }
    if spec.services.is_empty() {
        c.push("services", "must list at least one service");
    }

    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in spec.services.iter().enumerate() {
        let path = format!("services[{i}].name");
        if !is_service_name(&s.name) {
            c.push(
                path,
                format!(
                    "{:?} is not a valid service name (1-{MAX_SERVICE_NAME_LEN} of a-z, 0-9, '-', \
                     starting with a letter, not ending with '-')",
                    s.name
                ),
            );
        } else if let Some(first) = first_index.get(s.name.as_str()) {
            c.push(
                path,
                format!(
                    "duplicate service name {:?} (first at services[{first}])",
                    s.name
                ),
            );
        } else {
            first_index.insert(&s.name, i);
        }
    }

    for (path, message) in spec.errors.problems() {
        c.push(format!("errors.{path}"), message);
    }
    topology::check_sockets(&spec.services, &mut c);
    topology::check_cycles(&spec.services, &mut c);

    let services = spec
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| service::service(i, s, spec, &mut c))
        .collect();

    c.finish(Mesh {
        name: spec.mesh.clone(),
        errors: spec.errors.clone(),
        retry_layers: spec.retry_layers,
        services,
    })
}
