//! A Compose project on the real Docker engine (`docker-compose`), for the tests: images built
//! locally by `scripts/compose-images.sh`, the project taken down (containers, networks,
//! volumes) when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use meshkit_cli::access_log::AccessLine;

pub const ENVOY_IMAGE: &str = "meshkit-envoy:1.40.0";
pub const DEMO_IMAGE: &str = "meshkit-demo:local";

/// Whether this machine has a Docker engine and Compose; if not, why (the tests then say
/// they are skipped).
pub fn unavailable() -> Option<String> {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match engine {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "no Docker engine: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("no docker command: {e}")),
    }
    match Command::new("docker-compose").arg("version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no docker-compose".into()),
    }
}

fn check(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the local images (idempotent).
pub fn build_images() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/compose-images.sh");
    check(
        "scripts/compose-images.sh",
        Command::new(script)
            .env("MESHKIT_ENVOY_IMAGE", ENVOY_IMAGE)
            .env("MESHKIT_DEMO_IMAGE", DEMO_IMAGE)
            .output(),
    );
}

pub struct Project {
    pub dir: PathBuf,
    pub name: String,
    env: BTreeMap<String, String>,
}

impl Project {
    /// A project for the compose file in `dir`, on the local images, with `env` added.
    pub fn new(dir: &Path, name: &str, env: &[(&str, String)]) -> Project {
        let mut all = BTreeMap::from([
            ("MESHKIT_ENVOY_IMAGE".to_string(), ENVOY_IMAGE.to_string()),
            ("MESHKIT_DEMO_IMAGE".to_string(), DEMO_IMAGE.to_string()),
        ]);
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Project {
            dir: dir.to_path_buf(),
            name: format!("{name}-{}", std::process::id()),
            env: all,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(&self.dir)
            .args(["--ansi", "never", "-p", &self.name])
            .args(args)
            .envs(&self.env);
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        check(
            &format!("docker-compose {args:?}"),
            self.command(args).output(),
        )
    }

    /// The container id of service `service`.
    pub fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service]).trim().to_string()
    }

    /// Each container's health, by service.
    pub fn health(&self, services: &[String]) -> BTreeMap<String, String> {
        services
            .iter()
            .map(|s| {
                let id = self.container(s);
                let health = Command::new("docker")
                    .args(["inspect", "--format", "{{.State.Health.Status}}", &id])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_default();
                (s.clone(), health)
            })
            .collect()
    }

    /// Waits until every service in `services` is healthy.
    pub fn wait_healthy(&self, services: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let health = self.health(services);
            if health.values().all(|h| h == "healthy") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy: {health:?}\n{}",
                self.command(&["logs", "--tail", "30"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            );
            // Polling Docker's health state: nothing to be notified by.
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every JSON access log line the containers printed so far.
    pub fn access_lines(&self) -> Vec<AccessLine> {
        // `<service>_<n>  | <line>`: the sidecars' stdout lines that are JSON.
        self.run(&["logs", "--no-color"])
            .lines()
            .filter_map(|l| {
                let (container, raw) = l.split_once(" | ")?;
                let line = AccessLine::new(container.trim(), raw.trim());
                line.json().is_some().then_some(line)
            })
            .collect()
    }

    /// Polls the logs until `done` holds for the lines of request `id`; those lines.
    pub fn lines_for(&self, id: &str, done: impl Fn(&[AccessLine]) -> bool) -> Vec<AccessLine> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines: Vec<AccessLine> = self
                .access_lines()
                .into_iter()
                .filter(|l| l.str("request_id") == Some(id))
                .collect();
            if done(&lines) || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What of this project the engine still has: containers, networks, volumes.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut left = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-a", "-q", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
        ] {
            let out = check("docker", Command::new("docker").args(&args).output());
            left.extend(out.lines().map(|id| format!("{kind} {id}")));
        }
        left
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "--volumes", "--remove-orphans", "--timeout", "30"])
            .output();
    }
}
