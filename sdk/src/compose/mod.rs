//! A Compose project for a mesh: per instance, an app container and a sidecar container that
//! shares the app's network namespace (as a pod's containers do); services reach each other by
//! DNS name on one network; the generated bootstraps and the `.wasm` are mounted read-only.
//!
//! Start order follows the spec: a sidecar starts once its app is up (healthy, for the demo
//! app), and an app once its upstreams' sidecars are ready (admin `/ready`), so a caller's
//! first DNS lookup finds them. Stopping a sidecar drains it: `/healthcheck/fail` (callers that
//! health-check it stop picking it at their next check), a wait of two health check rounds,
//! `/drain_listeners?graceful&inboundonly`, one more round, then until no inbound request is
//! in flight (at most the app's timeout), then SIGTERM to Envoy; the stop grace period covers
//! it all.
//!
//! Images: the official Envoy image by default, the spec's `app.image` for each app (meshkit's
//! demo app where there is none); each is a `${VARIABLE:-default}`, so the same file runs on
//! locally built images (`scripts/compose-images.sh`).

pub mod file;
mod sidecar;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::generate::{sidecars, GeneratedFile, OutputFormat, RenderOptions};
use crate::model::{DrainTiming, Mesh, Service};
use crate::render::{bootstrap_json, RenderError};
use crate::spec::MeshSpec;
use file::{
    ComposeFile, Condition, Dependency, Healthcheck, Network, Service as Container, ServiceNetwork,
};

pub const COMPOSE_FILE: &str = "docker-compose.yaml";
/// The official Envoy image of the pinned version.
pub const ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40.0";
/// meshkit's demo app, built locally by `scripts/compose-images.sh`.
pub const DEMO_IMAGE: &str = "meshkit-demo:local";
pub const ENVOY_IMAGE_VAR: &str = "MESHKIT_ENVOY_IMAGE";
pub const DEMO_IMAGE_VAR: &str = "MESHKIT_DEMO_IMAGE";
pub const WASM_VAR: &str = "MESHKIT_WASM";
/// The host port the entry service's inbound listener is published on.
pub const ENTRY_PORT_VAR: &str = "MESHKIT_ENTRY_PORT";
/// Where the containers find meshkit's files.
pub const CONFIG_DIR: &str = "/etc/meshkit";
const NETWORK: &str = "mesh";

#[derive(Debug, Clone)]
pub struct ComposeOptions {
    /// The `.wasm` on the host (default of `${MESHKIT_WASM}`).
    pub wasm: String,
    /// Envoy worker threads per sidecar.
    pub concurrency: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{COMPOSE_FILE}: cannot encode: {0}")]
    Encode(String),
    #[error("{instance}: sidecar address {address:?} is also {other}'s: in Compose each instance is its own host and needs its own name")]
    SharedAddress {
        instance: String,
        other: String,
        address: String,
    },
}

/// The app container's service name for instance `instance`.
pub fn app_container(instance: &str) -> String {
    format!("{instance}-app")
}

/// The sidecar container's service name for instance `instance`.
pub fn sidecar_container(instance: &str) -> String {
    format!("{instance}-sidecar")
}

/// The variable naming service `service`'s app image: `MESHKIT_IMAGE_<SERVICE>`.
pub fn app_image_var(service: &str) -> String {
    format!(
        "MESHKIT_IMAGE_{}",
        service.to_ascii_uppercase().replace('-', "_")
    )
}

/// A spec written for one host (loopback addresses, distinct ports) as a Compose project sees
/// it: each instance is its own host, named after the instance (`users`, `users-1`), its
/// inbound listener on every interface of its network namespace and its app on that
/// namespace's loopback. Addresses that are already host names are kept.
pub fn containerize(spec: &mut MeshSpec) {
    let loopback = |a: &str| a.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    for service in &mut spec.services {
        service.app.address = "127.0.0.1".into();
        let first_loopback = loopback(&service.sidecar.address);
        if first_loopback {
            service.sidecar.address = service.name.clone();
            service.sidecar.listen_address = None;
        }
        for (k, replica) in service.replicas.iter_mut().enumerate() {
            let replica_loopback = replica.address.as_deref().map_or(first_loopback, loopback);
            if replica_loopback {
                replica.address = Some(format!("{}-{}", service.name, k + 1));
                replica.listen_address = None;
            }
        }
    }
}

/// `docker compose stop` waits this long before it kills: the whole drain (see
/// [`sidecar::entrypoint`]) and a margin.
fn grace_period(drain: &DrainTiming, service: &Service) -> Duration {
    drain.listener_drain_time() + service.app.timeout + Duration::from_secs(5)
}

/// `${VAR:-default}`, with `$` in the default escaped for Compose.
fn variable(var: &str, default: &str) -> String {
    format!("${{{var}:-{}}}", escape(default))
}

/// Compose interpolates `$` in every value: a literal one is `$$`.
fn escape(s: &str) -> String {
    s.replace('$', "$$")
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64().ceil() as u64)
}

/// The demo app's command for `instance` (as `meshkit up` runs it).
fn demo_command(service: &Service, instance: &str) -> Vec<String> {
    let mut cmd = vec![
        "demo-app".to_string(),
        "--name".into(),
        service.name.clone(),
        "--instance".into(),
        instance.into(),
        "--listen".into(),
        format!("{}:{}", service.app.address, service.app.port),
    ];
    for call in service.demo_calls() {
        let grpc = if call.grpc { "grpc:" } else { "" };
        cmd.push("--call".into());
        cmd.push(format!(
            "{grpc}127.0.0.1:{}{}",
            service.sidecar.outbound_port, call.path
        ));
    }
    cmd
}

/// The Compose project for `mesh` (see [`containerize`] for a loopback spec): the compose
/// file and one bootstrap per sidecar.
pub fn generate_compose(
    mesh: &Mesh,
    options: &ComposeOptions,
) -> Result<Vec<GeneratedFile>, ComposeError> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let instances: Vec<(String, Service)> = mesh.instances().collect();
    for (name, s) in &instances {
        if let Some(other) = seen.insert(&s.sidecar.address, name.clone()) {
            return Err(ComposeError::SharedAddress {
                instance: name.clone(),
                other,
                address: s.sidecar.address.clone(),
            });
        }
    }
    let render = RenderOptions {
        wasm_path: format!("{CONFIG_DIR}/meshkit_filter.wasm"),
        format: OutputFormat::Json,
        bare: false,
    };
    let mut files = Vec::new();
    for sidecar in sidecars(mesh, &render) {
        files.push(GeneratedFile {
            service: sidecar.service.clone(),
            instance: sidecar.instance,
            file_name: format!("{}.json", sidecar.name),
            contents: bootstrap_json(&sidecar.bootstrap)?,
        });
    }

    let drain = mesh.drain_timing();
    let entry = mesh.entry_service();
    let wasm = variable(WASM_VAR, &options.wasm);
    let mut services = BTreeMap::new();
    for (name, s) in &instances {
        let demo = s.app.image.is_none();
        let app_image = match &s.app.image {
            Some(image) => variable(&app_image_var(&s.name), image),
            None => variable(DEMO_IMAGE_VAR, DEMO_IMAGE),
        };
        // (A valid spec has no call cycles, so neither has this order.)
        let mut depends_on = BTreeMap::new();
        for upstream in &s.upstreams {
            if let Some(u) = mesh.service(&upstream.service) {
                for (instance, _) in u.instances() {
                    depends_on.insert(
                        sidecar_container(&instance),
                        Dependency {
                            condition: Condition::ServiceHealthy,
                        },
                    );
                }
            }
        }
        let ports = if s.name == entry && *name == s.name {
            let port = s.sidecar.inbound_port;
            vec![format!(
                "127.0.0.1:{}:{port}",
                variable(ENTRY_PORT_VAR, &port.to_string())
            )]
        } else {
            Vec::new()
        };
        services.insert(
            app_container(name),
            Container {
                image: app_image,
                command: if demo {
                    demo_command(s, name)
                } else {
                    Vec::new()
                },
                environment: BTreeMap::from([
                    ("MESHKIT_SERVICE".into(), s.name.clone()),
                    ("MESHKIT_INSTANCE".into(), name.clone()),
                    ("MESHKIT_APP_ADDRESS".into(), s.app.address.to_string()),
                    ("MESHKIT_APP_PORT".into(), s.app.port.to_string()),
                    (
                        "MESHKIT_OUTBOUND".into(),
                        format!("127.0.0.1:{}", s.sidecar.outbound_port),
                    ),
                ]),
                networks: BTreeMap::from([(
                    NETWORK.to_string(),
                    ServiceNetwork {
                        aliases: vec![s.sidecar.address.clone()],
                    },
                )]),
                ports,
                depends_on,
                // Only the demo app's image is known to have bash for the check.
                healthcheck: demo.then(|| healthcheck(sidecar::port_open_check(s.app.port))),
                ..Container::default()
            },
        );
        services.insert(
            sidecar_container(name),
            Container {
                image: variable(ENVOY_IMAGE_VAR, ENVOY_IMAGE),
                entrypoint: sidecar::entrypoint(s, options.concurrency, &drain),
                network_mode: Some(format!("service:{}", app_container(name))),
                volumes: vec![
                    format!("./{name}.json:{CONFIG_DIR}/envoy.json:ro"),
                    format!("{wasm}:{CONFIG_DIR}/meshkit_filter.wasm:ro"),
                ],
                depends_on: BTreeMap::from([(
                    app_container(name),
                    Dependency {
                        condition: if demo {
                            Condition::ServiceHealthy
                        } else {
                            Condition::ServiceStarted
                        },
                    },
                )]),
                healthcheck: Some(healthcheck(sidecar::ready_check(s.sidecar.admin_port))),
                stop_grace_period: Some(seconds(grace_period(&drain, s))),
                ..Container::default()
            },
        );
    }
    let compose = ComposeFile {
        services,
        networks: BTreeMap::from([(NETWORK.to_string(), Network::default())]),
    };
    let text =
        serde_yaml_ng::to_string(&compose).map_err(|e| ComposeError::Encode(e.to_string()))?;
    files.push(GeneratedFile {
        service: String::new(),
        instance: 0,
        file_name: COMPOSE_FILE.into(),
        contents: format!(
            "# Generated by `meshkit generate --compose` from mesh {:?}; regenerate rather than edit.\n{text}",
            mesh.name
        ),
    });
    Ok(files)
}

fn healthcheck(test: Vec<String>) -> Healthcheck {
    Healthcheck {
        test,
        interval: "1s".into(),
        timeout: "2s".into(),
        retries: 60,
        start_period: "0s".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse;
    use crate::validate::validate;
    use crate::Format;

    fn example() -> Mesh {
        validate(&example_spec()).expect("valid once containerized")
    }

    /// The example spec as `--compose` reads it.
    fn example_spec() -> MeshSpec {
        let mut spec = parse(crate::EXAMPLE_SPEC, Format::Yaml).expect("parses");
        containerize(&mut spec);
        spec
    }

    fn options() -> ComposeOptions {
        ComposeOptions {
            wasm: "/opt/mesh$kit/meshkit_filter.wasm".into(),
            concurrency: 2,
        }
    }

    fn compose_text(mesh: &Mesh) -> String {
        generate_compose(mesh, &options())
            .expect("generates")
            .into_iter()
            .find(|f| f.file_name == COMPOSE_FILE)
            .expect("a compose file")
            .contents
    }

    #[test]
    fn containerize_names_each_instance_and_keeps_its_ports() {
        let mesh = example();
        let names: Vec<(String, String, u16)> = mesh
            .instances()
            .map(|(n, s)| (n, s.sidecar.address, s.sidecar.inbound_port))
            .collect();
        assert_eq!(names[3], ("users-1".into(), "users-1".into(), 18004));
        assert!(mesh
            .instances()
            .all(|(_, s)| s.sidecar.listen_address.is_unspecified()));
        // Callers reach users' instances by name.
        let recipes = mesh.service("recipes").unwrap();
        assert_eq!(
            recipes.upstreams[0].endpoints,
            vec![("users".to_string(), 18003), ("users-1".to_string(), 18004)]
        );
    }

    #[test]
    fn every_dollar_the_shell_needs_survives_compose_interpolation() {
        let text = compose_text(&example());
        let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let script = file["services"]["users-sidecar"]["entrypoint"][2]
            .as_str()
            .unwrap();
        assert!(script.contains("pid=$$!") && script.contains("kill -TERM \"$$pid\""));
        assert!(!script.replace("$$", "").contains('$'), "{script}");
        // A `$` in the default of a variable is escaped too.
        assert!(text.contains("${MESHKIT_WASM:-/opt/mesh$$kit/meshkit_filter.wasm}"));
        // As Compose hands them to bash, every script parses.
        let sidecar = &file["services"]["users-sidecar"];
        for script in [
            sidecar["entrypoint"][2].as_str().unwrap(),
            sidecar["healthcheck"]["test"][3].as_str().unwrap(),
            file["services"]["users-app"]["healthcheck"]["test"][3]
                .as_str()
                .unwrap(),
        ] {
            let out = std::process::Command::new("bash")
                .args(["-n", "-c", &script.replace("$$", "$")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn apps_start_after_their_upstreams_sidecars_and_sidecars_drain_within_their_grace() {
        let text = compose_text(&example());
        let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let recipes = &file["services"]["recipes-app"]["depends_on"];
        for upstream in ["users-sidecar", "users-1-sidecar"] {
            assert_eq!(recipes[upstream]["condition"], "service_healthy", "{text}");
        }
        let users = &file["services"]["users-1-sidecar"];
        assert_eq!(users["network_mode"], "service:users-1-app");
        // Health checks every 2 s with a 500 ms timeout: 6 s to notice, 3.5 s to settle (Envoy's
        // drain time covers both, rounded up), then up to users' app timeout (15 s, the
        // default) for requests in flight; the grace period covers it all, with 5 s to spare.
        let script = users["entrypoint"][2].as_str().unwrap();
        assert!(
            script.contains("sleep 6\n")
                && script.contains("sleep 3.5\n")
                && script.contains("--drain-time-s 10 ")
                && script.contains("until_s=$$((SECONDS + 15 + 1))"),
            "{script}"
        );
        assert_eq!(users["stop_grace_period"], "30s");
        // Only the entry service is published.
        assert_eq!(
            file["services"]["frontend-app"]["ports"][0],
            "127.0.0.1:${MESHKIT_ENTRY_PORT:-18001}:18001"
        );
        assert!(file["services"]["recipes-app"]["ports"].is_null());
    }

    #[test]
    fn two_instances_on_one_host_name_are_refused() {
        let mut spec = example_spec();
        spec.services[2].replicas[0].address = Some("users".into());
        let mesh = validate(&spec).unwrap();
        let err = generate_compose(&mesh, &options()).unwrap_err().to_string();
        assert!(
            err.contains("users-1: sidecar address \"users\" is also users's"),
            "{err}"
        );
    }
}
