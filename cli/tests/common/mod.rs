//! Running the `meshkit` binary as a user does, shared by the CLI test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use meshkit_tests::scratch_dir;

pub fn meshkit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshkit"))
}

pub fn run(args: &[&str]) -> Output {
    meshkit().args(args).output().expect("run meshkit")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn write_spec(text: &str) -> PathBuf {
    let path = scratch_dir("spec").join("mesh.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The port at `key: ` for the service block starting at `name: service` in the spec text.
pub fn port_of(spec: &str, service: &str, key: &str) -> u16 {
    let block = spec
        .split("- name: ")
        .find(|b| b.starts_with(service))
        .unwrap();
    let rest = &block[block.find(&format!("{key}: ")).unwrap() + key.len() + 2..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

pub fn refuses_connections(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_err()
}

/// Starts `meshkit` with stderr read line by line on a thread. Its stdout is piped and
/// unread: a test that makes it print more than a pipe holds uses [`spawn_discarding_stdout`].
pub fn spawn_with_stderr(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    spawn_reading_stderr(cmd.stdout(Stdio::piped()))
}

/// Like [`spawn_with_stderr`], with stdout (`meshkit up`'s access log) discarded.
pub fn spawn_discarding_stdout(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    spawn_reading_stderr(cmd.stdout(Stdio::null()))
}

fn spawn_reading_stderr(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Reads stderr lines until one contains `needle`; returns every line read so far.
pub fn wait_for_line(child: &mut Child, rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => {
                seen.push(line);
                return seen;
            }
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no stderr line with {needle:?}:\n{}", seen.join("\n"));
            }
        }
    }
}

/// Kills the child when dropped: a process a failing test started must not outlive it (the
/// Envoys `meshkit up` starts die with it).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

pub fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshkit did not exit in time");
        }
        // Polling a child's exit status; nothing to be notified by in std.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `meshkit up SPEC --concurrency 1 --run-dir RUN_DIR`, for the caller to add to and run.
pub fn up(spec: &std::path::Path, run_dir: &std::path::Path) -> Command {
    let mut cmd = meshkit();
    cmd.arg("up")
        .arg(spec)
        .args(["--concurrency", "1", "--run-dir"])
        .arg(run_dir);
    cmd
}

/// `meshkit up SPEC --demo` with one worker per sidecar, run to completion.
pub fn up_demo(spec_text: &str) -> Output {
    let spec = write_spec(spec_text);
    up(&spec, &spec.parent().unwrap().join("run"))
        .arg("--demo")
        .output()
        .unwrap()
}
