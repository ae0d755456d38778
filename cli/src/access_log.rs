//! The access log lines of every sidecar in a running mesh, collected as they arrive.
//!
//! Envoy's stdout carries exactly the JSON access log (its own log goes to stderr), so each
//! stdout line is one record. Waiting for lines is by notification, never by sleeping.
//!
//! Bounded both ways. The most recent lines are kept, at most [`RETAINED`] lines and
//! [`RETAINED_BYTES`]; a line's JSON is parsed only when a field is asked for, and then kept
//! with it (`meshkit up`'s own waits look lines up by request id only, so its lines stay
//! text). Echoing to stdout (`meshkit up`) goes through a writer thread with a bounded queue,
//! so a reader that stops reading (a full pipe) loses lines, counted on stderr, instead of
//! stalling the mesh.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

/// One line from one sidecar's stdout. Clones share the text and its parsed form.
#[derive(Debug, Clone)]
pub struct AccessLine {
    /// The instance whose sidecar wrote the line (a service's name for its first instance).
    pub sidecar: String,
    pub raw: Arc<str>,
    /// The line parsed, once a field is asked for (`None`: not JSON, a bug worth seeing).
    json: Arc<OnceLock<Option<Value>>>,
    /// Read when the line arrives: waits look lines up by it.
    request_id: Option<Arc<str>>,
}

impl AccessLine {
    pub fn new(sidecar: &str, raw: &str) -> AccessLine {
        /// Only the field a wait needs (serde skips the rest without building it).
        #[derive(serde::Deserialize)]
        struct Id {
            request_id: Option<String>,
        }
        let request_id = serde_json::from_str::<Id>(raw)
            .ok()
            .and_then(|id| id.request_id)
            .map(Arc::from);
        AccessLine {
            sidecar: sidecar.to_string(),
            raw: Arc::from(raw),
            json: Arc::default(),
            request_id,
        }
    }

    /// The whole record (`None` if the line is not JSON).
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_str(&self.raw).ok())
            .as_ref()
    }

    /// A string field of the record (`None` when absent or null).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json()?.get(key)?.as_str()
    }

    /// A numeric field of the record.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.json()?.get(key)?.as_f64()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// Lines kept for [`AccessLog::snapshot`] and the waits: the most recent ones, at most this
/// many and [`RETAINED_BYTES`] (text and [`LINE_OVERHEAD`] each).
pub const RETAINED: usize = 100_000;
pub const RETAINED_BYTES: usize = 64 << 20;
/// What a retained line costs besides its text: its sidecar name, request id and the
/// allocations' headers, rounded up.
const LINE_OVERHEAD: usize = 256;
/// Lines queued for stdout before further ones are dropped.
const ECHO_QUEUE: usize = 16_384;

#[derive(Debug, Default)]
pub struct AccessLog {
    lines: Mutex<Retained>,
    changed: Notify,
    /// To the thread that prints each line to stdout as it arrives (`meshkit up`), and how it
    /// says it is done (see [`AccessLog::finish`]).
    echo: Mutex<Option<(SyncSender<String>, Receiver<()>)>>,
    /// Lines stdout did not take in time.
    dropped: AtomicU64,
}

impl AccessLog {
    /// Echoing each line to stdout if `echo`.
    pub fn new(echo: bool) -> Self {
        if echo {
            Self::echoing_to(std::io::stdout())
        } else {
            Self::default()
        }
    }

    /// Echoing each line to `out` (stdout, but for tests).
    fn echoing_to(out: impl Write + Send + 'static) -> Self {
        AccessLog {
            echo: Mutex::new(Some(spawn_writer(out))),
            ..Default::default()
        }
    }

    /// Lines the echo dropped because its reader did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
        if let Ok(mut retained) = self.lines.lock() {
            retained.push(AccessLine::new(sidecar, &raw));
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
            .map(|r| r.lines.iter().cloned().collect())
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
fn spawn_writer(mut out: impl Write + Send + 'static) -> (SyncSender<String>, Receiver<()>) {
    let (tx, rx) = sync_channel::<String>(ECHO_QUEUE);
    let (done_tx, done) = sync_channel::<()>(1);
    std::thread::spawn(move || {
        for line in rx {
            // Not println!: it panics when stdout is a closed pipe (`meshkit up | head`).
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
        .filter(|l| l.request_id() == Some(id))
        .cloned()
        .collect()
}

/// The most recent lines, within [`RETAINED`] lines and [`RETAINED_BYTES`] (see [`cost`]).
#[derive(Debug, Default)]
struct Retained {
    lines: VecDeque<AccessLine>,
    bytes: usize,
}

impl Retained {
    fn push(&mut self, line: AccessLine) {
        self.bytes += cost(&line);
        self.lines.push_back(line);
        while self.lines.len() > RETAINED || self.bytes > RETAINED_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= cost(&old),
                None => break,
            }
        }
    }
}

/// What a retained line counts against [`RETAINED_BYTES`]: its text and a fixed overhead
/// (a parsed form, if a consumer asked for one, is not counted).
fn cost(line: &AccessLine) -> usize {
    line.raw.len() + LINE_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_lines_are_kept_within_both_bounds() {
        let log = AccessLog::new(false);
        let line = format!("{{\"request_id\":\"r\",\"pad\":\"{}\"}}", "x".repeat(1000));
        let per_line = line.len() + LINE_OVERHEAD;
        for _ in 0..RETAINED_BYTES / per_line + 10 {
            log.push("a", line.clone());
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), RETAINED_BYTES / per_line);
        log.push("b", "{\"request_id\":\"last\"}".into());
        let kept = log.snapshot();
        assert_eq!(kept.last().map(|l| l.sidecar.as_str()), Some("b"));
        assert!(kept.iter().map(cost).sum::<usize>() <= RETAINED_BYTES);
        assert_eq!(log.for_request("last").len(), 1);
        assert_eq!(kept[0].str("request_id"), Some("r"));

        let small = AccessLog::new(false);
        for _ in 0..RETAINED + 5 {
            small.push("a", "{}".into());
        }
        assert_eq!(small.snapshot().len(), RETAINED);
    }

    /// A stdout nobody reads: every write waits until the test lets it through.
    struct Stuck(
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<String>,
    );

    impl std::io::Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            let _ = self.1.send(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stdout_that_does_not_keep_up_loses_lines_counted_and_never_blocks_a_push() {
        let (unblock, blocked) = std::sync::mpsc::channel();
        let (written_tx, written) = std::sync::mpsc::channel();
        let log = AccessLog::echoing_to(Stuck(blocked, written_tx));
        // The writer takes the first line and waits in `write`; the queue then fills.
        let extra = 100;
        for k in 0..ECHO_QUEUE + 1 + extra {
            log.push("a", format!("{{\"request_id\":\"{k}\"}}"));
        }
        assert!(
            (extra as u64..=extra as u64 + 1).contains(&log.dropped()),
            "dropped {}",
            log.dropped()
        );
        // Every line is retained whatever stdout does.
        assert_eq!(log.snapshot().len(), ECHO_QUEUE + 1 + extra);
        // Once stdout reads again, what was queued reaches it, in order, the first line first.
        drop(unblock);
        log.finish(Duration::from_secs(10));
        let text: String = written.try_iter().collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first().copied(), Some("{\"request_id\":\"0\"}"));
        assert_eq!(
            lines.len() as u64 + log.dropped(),
            (ECHO_QUEUE + 1 + extra) as u64
        );
    }

    #[test]
    fn a_line_that_is_not_json_has_no_fields_and_no_request_id() {
        let line = AccessLine::new("a", "not json");
        assert!(line.json().is_none() && line.str("request_id").is_none());
        assert_eq!(line.request_id(), None);
    }
}
