//! A user's own app in the local mesh: a shell command started per service instance, in place
//! of the demo app.
//!
//! The command learns where to listen and where its sidecar is from the environment:
//! `MESHKIT_SERVICE`, `MESHKIT_INSTANCE`, `MESHKIT_APP_ADDRESS`, `MESHKIT_APP_PORT` (listen
//! here) and `MESHKIT_OUTBOUND` (`127.0.0.1:<port>`, the sidecar's outbound listener: call
//! upstreams through it). Its stdout and stderr go to `<run_dir>/<instance>.app.log`, never to
//! meshkit's stdout (that is the access log). It is tied to meshkit like the sidecars are, and
//! is ready once its port accepts connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

use crate::process::{log_tail, terminate, tie_to_parent};

/// A running app command.
pub struct AppProcess {
    pub instance: String,
    pub listen: SocketAddr,
    pub log_path: PathBuf,
    child: Child,
}

/// What the app command is told.
pub struct AppEnv<'a> {
    pub service: &'a str,
    pub instance: &'a str,
    pub listen: SocketAddr,
    pub outbound: SocketAddr,
}

impl AppProcess {
    pub fn spawn(command: &str, env: &AppEnv<'_>, run_dir: &Path) -> anyhow::Result<AppProcess> {
        let log_path = run_dir.join(format!("{}.app.log", env.instance));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env("MESHKIT_SERVICE", env.service)
            .env("MESHKIT_INSTANCE", env.instance)
            .env("MESHKIT_APP_ADDRESS", env.listen.ip().to_string())
            .env("MESHKIT_APP_PORT", env.listen.port().to_string())
            .env("MESHKIT_OUTBOUND", env.outbound.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        tie_to_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: start app command {command:?}", env.instance))?;
        Ok(AppProcess {
            instance: env.instance.to_string(),
            listen: env.listen,
            log_path,
            child,
        })
    }

    /// Polls the app's port until it accepts a connection; fails early, with the app's log, if
    /// the command exits.
    pub async fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} app exited before listening on {} ({status}); its log {}:\n{}",
                    self.instance,
                    self.listen,
                    self.log_path.display(),
                    log_tail(&self.log_path, 10)
                );
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} app not listening on {} after {timeout:?}; its log {}:\n{}",
                    self.instance,
                    self.listen,
                    self.log_path.display(),
                    log_tail(&self.log_path, 10)
                );
            }
            // Polling a port, the app's readiness signal.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        terminate(&mut self.child, grace).await;
    }
}
