//! One sidecar Envoy as a child process: started, probed for readiness, stopped.
//!
//! Children are tied to us twice over: `kill_on_drop` covers every Rust exit path (errors,
//! panics in tests), and `PR_SET_PDEATHSIG` covers our process being killed outright, so no
//! Envoy outlives the `meshkit` (or test) that started it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::access_log::AccessLog;
use crate::http_client;

/// How a sidecar Envoy is started.
#[derive(Debug, Clone)]
pub struct EnvoyCommand {
    pub binary: PathBuf,
    pub config: PathBuf,
    /// Distinct per Envoy on one host (shared-memory region for hot restart).
    pub base_id: u32,
    pub concurrency: u32,
    /// Envoy's own log (stderr).
    pub log_path: PathBuf,
    /// Send the access log (stdout) nowhere instead of to the [`AccessLog`] (benchmarks:
    /// Envoy still formats every line, nothing reads it).
    pub discard_access_log: bool,
    /// Envoy's drain time: how long a draining listener keeps its connections.
    pub drain_time: Duration,
    /// A command that runs Envoy (e.g. `valgrind --tool=callgrind`, for the benchmark's
    /// instruction counts); empty: Envoy itself.
    pub wrapper: Vec<String>,
}

pub struct EnvoyProcess {
    pub service: String,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
    child: Child,
    /// The task moving its stdout into the access log.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl EnvoyProcess {
    /// Starts Envoy; every stdout line goes to `access_log` under `service`'s name.
    pub fn spawn(
        service: &str,
        admin: SocketAddr,
        cmd: &EnvoyCommand,
        access_log: Arc<AccessLog>,
    ) -> anyhow::Result<EnvoyProcess> {
        let stderr = std::fs::File::create(&cmd.log_path)
            .with_context(|| format!("create {}", cmd.log_path.display()))?;
        let mut command = match cmd.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&cmd.binary);
                c
            }
            None => Command::new(&cmd.binary),
        };
        command
            .arg("-c")
            .arg(&cmd.config)
            .args(["--base-id", &cmd.base_id.to_string()])
            .args(["--concurrency", &cmd.concurrency.to_string()])
            .args(["--log-level", "info"])
            // A drain (`/drain_listeners?graceful`, `/healthcheck/fail`) asks every connection to
            // close at its next response, and lasts `drain_time`.
            .args([
                "--drain-time-s",
                &cmd.drain_time.as_secs().max(1).to_string(),
            ])
            .args(["--drain-strategy", "immediate"])
            // Access log lines reach stdout within 100 ms instead of Envoy's 10 s default.
            .args(["--file-flush-interval-msec", "100"])
            .stdin(Stdio::null())
            .stdout(if cmd.discard_access_log {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        tie_to_parent(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", cmd.binary.display()))?;
        let reader = child.stdout.take().map(|stdout| {
            let service = service.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    access_log.push(&service, line);
                }
            })
        });
        Ok(EnvoyProcess {
            service: service.to_string(),
            admin,
            log_path: cmd.log_path.clone(),
            child,
            reader,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Polls the admin `/ready` endpoint until it answers 200, failing early (with the tail of
    /// Envoy's log) if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} sidecar Envoy exited during start-up ({status}):\n{}\n(its whole log: {})",
                    self.service,
                    startup_cause(&self.log_path),
                    self.log_path.display(),
                );
            }
            if let Ok(r) = http_client::get(self.admin, "/ready").await {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} sidecar Envoy not ready after {timeout:?}:\n{}\n(its whole log: {})",
                    self.service,
                    startup_cause(&self.log_path),
                    self.log_path.display(),
                );
            }
            // Poll interval of a readiness probe, not a synchronisation sleep.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself (used when startup is expected to fail).
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .context("Envoy did not exit")?
            .context("wait for Envoy")
    }

    /// SIGTERM (Envoy flushes its access logs and exits), then SIGKILL after `grace`; then
    /// lets its last access log lines reach the log (its stdout closed as it exited, so this
    /// takes moments: within `grace` in all, or one more second if Envoy needed all of it).
    pub async fn stop(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        terminate(&mut self.child, grace).await;
        if let Some(reader) = self.reader.take() {
            let last_lines = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(last_lines, reader).await;
        }
    }
}

/// SIGTERM to a child, then SIGKILL if it has not exited after `grace`.
pub async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Makes the child get SIGTERM if this process dies, however it dies (even SIGKILL).
pub fn tie_to_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Why Envoy did not start, first: its `[critical]` and `[error]` lines (the last few), else
/// the last lines of its log. Envoy logs kilobytes of `[info]` before the cause.
pub fn startup_cause(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let causes: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("[critical]") || l.contains("[error]"))
        .copied()
        .collect();
    let shown = if causes.is_empty() { &lines } else { &causes };
    shown[shown.len().saturating_sub(5)..].join("\n")
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
