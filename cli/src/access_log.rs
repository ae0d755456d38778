//! The access log lines of every sidecar in a running mesh, collected as they arrive.
//!
//! Envoy's stdout carries exactly the JSON access log (its own log goes to stderr), so each
//! stdout line is one record. Waiting for lines is by notification, never by sleeping.
//!
//! Bounded both ways: the most recent [`RETAINED`] lines are kept, and echoing to stdout
//! (`meshkit up`) goes through a writer thread with a bounded queue, so a reader that stops
//! reading (a full pipe) loses lines, counted on stderr, instead of stalling the mesh.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
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

/// Lines kept for [`AccessLog::snapshot`] and the waits: the most recent ones.
pub const RETAINED: usize = 100_000;
/// Lines queued for stdout before further ones are dropped.
const ECHO_QUEUE: usize = 16_384;

#[derive(Debug, Default)]
pub struct AccessLog {
    lines: Mutex<VecDeque<AccessLine>>,
    changed: Notify,
    /// To the thread that prints each line to stdout as it arrives (`meshkit up`), and how it
    /// says it is done (see [`AccessLog::finish`]).
    echo: Mutex<Option<(SyncSender<String>, Receiver<()>)>>,
    /// Lines stdout did not take in time.
    dropped: AtomicU64,
}

impl AccessLog {
    pub fn new(echo: bool) -> Self {
        AccessLog {
            echo: Mutex::new(echo.then(spawn_writer)),
            ..Default::default()
        }
    }

    pub fn push(&self, sidecar: &str, raw: String) {
        let echo = self
            .echo
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(|(tx, _)| tx.clone()));
        if let Some(echo) = echo {
            match echo.try_send(raw.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        eprintln!(
                            "meshkit: stdout is not keeping up: {n} access log lines not printed"
                        );
                    }
                }
            }
        }
        let json = serde_json::from_str(&raw).ok();
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == RETAINED {
                lines.pop_front();
            }
            lines.push_back(AccessLine {
                sidecar: sidecar.to_string(),
                raw,
                json,
            });
        }
        self.changed.notify_waiters();
    }

    /// No more lines will come: lets stdout take what is queued (for up to `timeout`, a reader
    /// may never read), then stops echoing.
    pub fn finish(&self, timeout: Duration) {
        let echo = self.echo.lock().ok().and_then(|mut e| e.take());
        if let Some((tx, done)) = echo {
            drop(tx);
            let _ = done.recv_timeout(timeout);
        }
    }

    pub fn snapshot(&self) -> Vec<AccessLine> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
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

/// The stdout writer: blocking on a slow stdout stalls only this thread. It says when it is
/// done (its queue closed and emptied, or stdout gone).
fn spawn_writer() -> (SyncSender<String>, Receiver<()>) {
    let (tx, rx) = sync_channel::<String>(ECHO_QUEUE);
    let (done_tx, done) = sync_channel::<()>(1);
    std::thread::spawn(move || {
        for line in rx {
            // Not println!: it panics when stdout is a closed pipe (`meshkit up | head`).
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    (tx, done)
}

fn with_request_id(lines: &[AccessLine], id: &str) -> Vec<AccessLine> {
    lines
        .iter()
        .filter(|l| l.str("request_id") == Some(id))
        .cloned()
        .collect()
}
