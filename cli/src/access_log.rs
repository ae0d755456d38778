//! The access log lines of every sidecar in a running mesh, collected as they arrive.
//!
//! Envoy's stdout carries exactly the JSON access log (its own log goes to stderr), so each
//! stdout line is one record. Waiting for lines is by notification, never by sleeping.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

/// One line from one sidecar's stdout.
#[derive(Debug, Clone)]
pub struct AccessLine {
    /// The instance whose sidecar wrote the line (a service's name for its first instance).
    pub sidecar: String,
    pub raw: String,
    /// `None` if the line is not JSON (which would be a bug worth seeing in a test).
    pub json: Option<Value>,
}

impl AccessLine {
    /// A string field of the record (`None` when absent or null).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }

    /// A numeric field of the record.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.json.as_ref()?.get(key)?.as_f64()
    }
}

#[derive(Debug, Default)]
pub struct AccessLog {
    lines: Mutex<Vec<AccessLine>>,
    changed: Notify,
    /// Print each line to stdout as it arrives (`meshkit up`).
    echo: bool,
}

impl AccessLog {
    pub fn new(echo: bool) -> Self {
        AccessLog {
            echo,
            ..Default::default()
        }
    }

    pub fn push(&self, sidecar: &str, raw: String) {
        if self.echo {
            // Not println!: it panics when stdout is a closed pipe (`meshkit up | head`).
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{raw}").and_then(|_| out.flush());
        }
        let json = serde_json::from_str(&raw).ok();
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(AccessLine {
                sidecar: sidecar.to_string(),
                raw,
                json,
            });
        }
        self.changed.notify_waiters();
    }

    pub fn snapshot(&self) -> Vec<AccessLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Lines whose `request_id` is `id`.
    pub fn for_request(&self, id: &str) -> Vec<AccessLine> {
        with_request_id(&self.snapshot(), id)
    }

    /// Waits until `done` holds for the lines collected so far; `Err` with the lines seen if
    /// `timeout` passes first.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[AccessLine]) -> bool,
    ) -> Result<Vec<AccessLine>, Vec<AccessLine>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a push between check and wait is not lost.
            let notified = self.changed.notified();
            let lines = self.snapshot();
            if done(&lines) {
                return Ok(lines);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.snapshot());
            }
        }
    }

    /// Waits until at least `n` lines carry request id `id`.
    pub async fn wait_for_request(
        &self,
        id: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<AccessLine>, Vec<AccessLine>> {
        self.wait_for(timeout, |lines| with_request_id(lines, id).len() >= n)
            .await
            .map(|lines| with_request_id(&lines, id))
            .map_err(|lines| with_request_id(&lines, id))
    }
}

fn with_request_id(lines: &[AccessLine], id: &str) -> Vec<AccessLine> {
    lines
        .iter()
        .filter(|l| l.str("request_id") == Some(id))
        .cloned()
        .collect()
}
