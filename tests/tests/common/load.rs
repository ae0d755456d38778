//! A steady load at a fixed rate into one listener: one request per tick, each on its own
//! connection and with its own request id, never waiting for earlier ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use meshkit_cli::http_client;

/// Each request's id and its status (or why it has none).
pub type Outcome = (String, Result<u16, String>);

pub struct SteadyLoad {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<Outcome>>,
}

impl SteadyLoad {
    /// `GET /` into `entry` every `period`, with ids `<prefix>-<k>` and `headers`.
    pub fn start(
        entry: SocketAddr,
        prefix: &str,
        period: Duration,
        headers: &[(&str, &str)],
    ) -> SteadyLoad {
        let running = Arc::new(AtomicBool::new(true));
        let prefix = prefix.to_string();
        let extra: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sent_count = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let running = running.clone();
            let sent_count = sent_count.clone();
            async move {
                let mut sent = Vec::new();
                let mut tick = tokio::time::interval(period);
                let mut k = 0;
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let id = format!("{prefix}-{k}");
                    k += 1;
                    sent_count.fetch_add(1, Ordering::Relaxed);
                    let mut headers = vec![("x-request-id".to_string(), id.clone())];
                    headers.extend(extra.iter().cloned());
                    sent.push(tokio::spawn(async move {
                        let r = http_client::send(
                            entry,
                            Method::GET,
                            "/",
                            &headers,
                            Duration::from_secs(30),
                        )
                        .await;
                        (id, r.map(|r| r.status).map_err(|e| e.to_string()))
                    }));
                }
                let mut results = Vec::new();
                for s in sent {
                    results.push(s.await.expect("a request task"));
                }
                results
            }
        });
        SteadyLoad {
            running,
            sent: sent_count,
            task,
        }
    }

    /// Waits until at least `n` requests were sent (so a test's events happen under load).
    pub async fn wait_sent(&self, n: usize) {
        while self.sent.load(Ordering::Relaxed) < n {
            // Polling the load's own counter; it advances on its timer.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many requests were sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending, waits for every request in flight, and returns all outcomes.
    pub async fn stop(self) -> Vec<Outcome> {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.expect("the load")
    }
}

/// The outcomes that are not a 200.
pub fn failed(results: &[Outcome]) -> Vec<&Outcome> {
    results
        .iter()
        .filter(|(_, r)| !matches!(r, Ok(200)))
        .collect()
}
