//! A real Prometheus server (Debian's `prometheus` package, installed by `scripts/test.sh`)
//! for the tests: started on a free port with a generated configuration, queried through its
//! HTTP API, killed when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshkit_cli::http_client;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

pub struct Prometheus {
    pub addr: SocketAddr,
    _child: tokio::process::Child,
    pub log: PathBuf,
}

/// One series of an instant query: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Debian's `prometheus` and `promtool`.
pub fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs Debian's prometheus package)",
        path.display()
    );
    path
}

impl Prometheus {
    /// Starts Prometheus on `config` (its rule files beside it) and waits for `/-/ready`.
    pub async fn start(config: &Path, data: &Path) -> Prometheus {
        let port = meshkit_tests::free_ports(1)[0];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = data.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("prometheus log file");
        let child = tokio::process::Command::new(binary("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            addr,
            _child: child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http_client::get(addr, "/-/ready").await {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never became ready: {}",
                std::fs::read_to_string(&prometheus.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    async fn api(&self, path: &str) -> Value {
        let r = http_client::get(self.addr, path)
            .await
            .expect("prometheus API");
        let v: Value = serde_json::from_str(&r.text()).expect("prometheus API answers JSON");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// An instant query's series (a query error fails the test, naming the query).
    pub async fn query(&self, expr: &str) -> Vec<Sample> {
        let q = utf8_percent_encode(expr, NON_ALPHANUMERIC);
        let data = self.api(&format!("/api/v1/query?query={q}")).await;
        data["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{expr}: not a vector: {data}"))
            .iter()
            .map(|s| Sample {
                labels: string_map(&s["metric"]),
                value: s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            })
            .collect()
    }

    /// Polls `expr` until `done` holds for its series; the last series otherwise, after
    /// `timeout` (the caller's assertion then shows them).
    pub async fn query_until(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(expr).await;
            if done(&samples) || Instant::now() >= deadline {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The alerts Prometheus holds now (pending or firing): `(name, state, labels,
    /// annotations)`.
    pub async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| Alert {
                state: a["state"].as_str().unwrap_or("").to_string(),
                labels: string_map(&a["labels"]),
                annotations: string_map(&a["annotations"]),
            })
            .collect()
    }

    /// Waits until alert `name` fires (with labels that include `labels`); the alert.
    pub async fn wait_firing(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) -> Alert {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.alerts().await;
            if let Some(a) = alerts.iter().find(|a| {
                a.state == "firing"
                    && a.labels.get("alertname").map(String::as_str) == Some(name)
                    && labels
                        .iter()
                        .all(|(k, v)| a.labels.get(*k).map(String::as_str) == Some(*v))
            }) {
                return a.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{name} {labels:?} never fired; alerts now: {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every rule group was evaluated after `after` (Prometheus's clock, which is
    /// this machine's), so alert states reflect the samples scraped by then.
    pub async fn wait_evaluated_after(&self, after: std::time::SystemTime, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let data = self.api("/api/v1/rules").await;
            let groups = data["groups"].as_array().cloned().unwrap_or_default();
            let all_after = !groups.is_empty()
                && groups.iter().all(|g| {
                    g["lastEvaluation"]
                        .as_str()
                        .and_then(parse_rfc3339)
                        .is_some_and(|t| t > after)
                });
            if all_after {
                return;
            }
            assert!(Instant::now() < deadline, "rules never evaluated: {data}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Prometheus's timestamps (RFC 3339, UTC).
fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// A JSON object of strings (Prometheus's labels and annotations) as a map.
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}
