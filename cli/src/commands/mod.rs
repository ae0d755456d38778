//! One module per `meshkit` command, and what they share: exit codes, spec loading, signals.

pub mod check;
pub mod demo_app;
pub mod explain;
pub mod generate;
pub mod serve;
pub mod top;
pub mod up;
pub mod validate;

use std::fmt::Display;
use std::path::Path;

use meshkit_cli::locate::LocateError;
use meshkit_sdk::model::Mesh;
use meshkit_sdk::LoadError;

/// Every exit code is a deliberate choice: errors carry one, and there is no catch-all
/// conversion that would give a new error path a code by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The spec cannot be read or is invalid, a code is unknown, or Envoy rejected the
    /// generated config.
    Invalid = 1,
    /// Bad command line (clap uses 2 as well).
    Usage = 2,
    /// The environment is not ready: no Envoy (or not the pinned one), no filter `.wasm`, a
    /// port in use, a sidecar that did not start.
    Environment = 3,
    /// Output cannot be written, or would overwrite a file meshkit does not own.
    Output = 4,
    /// Stopped by Ctrl-C (128 + SIGINT) before finishing.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + SIGTERM) before finishing.
    Terminated = 143,
}

pub const EXIT_CODES_HELP: &str = "Exit codes: 0 ok, 1 invalid spec / unknown code / config \
    rejected by Envoy, 2 usage, 3 environment (Envoy, .wasm, ports, sidecars), 4 output not \
    written (would overwrite a file meshkit does not own), 130/143 interrupted by Ctrl-C/SIGTERM";

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure(pub Exit, pub anyhow::Error);

impl Failure {
    pub fn new(exit: Exit, message: impl Display) -> Failure {
        Failure(exit, anyhow::anyhow!("{message}"))
    }
}

/// Attaches the exit code a failure maps to: `.exit(Exit::Environment)?`.
pub trait OrExit<T> {
    fn exit(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure(exit, e.into()))
    }
}

impl From<LocateError> for Failure {
    fn from(e: LocateError) -> Self {
        Failure(Exit::Environment, e.into())
    }
}

/// Reads and validates a spec: every problem, one per line.
pub fn load(spec: &Path) -> Result<Mesh, Failure> {
    load_with(spec, |_| {})
}

/// [`load`], with `adjust` applied to the spec before it is validated.
pub fn load_with(
    spec: &Path,
    adjust: impl FnOnce(&mut meshkit_sdk::spec::MeshSpec),
) -> Result<Mesh, Failure> {
    meshkit_sdk::load::load_file_with(spec, adjust).map_err(|e| match e {
        LoadError::Invalid(problems) => Failure::new(
            Exit::Invalid,
            format!(
                "{} is invalid ({} problem{}):\n{problems}",
                spec.display(),
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            ),
        ),
        io @ LoadError::Io { .. } => Failure(Exit::Invalid, io.into()),
    })
}

/// Which signal stopped a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
    Elapsed,
}

impl Stop {
    /// The failure for a command that was stopped before it finished.
    pub fn failure(self, what: &str) -> Failure {
        let (exit, name) = match self {
            Stop::Interrupt => (Exit::Interrupted, "Ctrl-C"),
            _ => (Exit::Terminated, "SIGTERM"),
        };
        Failure::new(exit, format!("interrupted by {name} {what}"))
    }
}

/// Ctrl-C and SIGTERM, listened for from creation on. A loop that waits for them between
/// other work keeps one of these: a signal that arrives while no listener exists is lost
/// (tokio's handler stays installed once it was, and a new listener sees later signals only).
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next Ctrl-C or SIGTERM, including one that came since the last call.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, for a one-shot wait (a loop keeps one [`Signals`] instead).
/// Where the handlers cannot be installed, no signal can be waited for: it waits forever.
pub async fn stop_signal() -> Stop {
    match Signals::new() {
        Ok(mut signals) => signals.next().await,
        Err(_) => std::future::pending().await,
    }
}
