//! `meshkit top` on a running `meshkit up` mesh: driven in a real terminal (tmux, 80 columns),
//! its screen shows each service and edge and the errors' code and origin after scripted
//! traffic; with stdout not a terminal it prints plain lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    meshkit, port_of, signal, spawn_discarding_stdout, up, wait_for_line, wait_with_deadline,
    write_spec, KillOnDrop,
};

/// A GET into `port`, with `x-demo` directives if given; the status line.
fn get(port: u16, demo: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let demo = demo.map(|d| format!("x-demo: {d}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET /recipes/1 HTTP/1.1\r\nHost: m\r\n{demo}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux(String);

impl Tmux {
    fn new() -> Tmux {
        Tmux(format!("meshkit-top-test-{}", std::process::id()))
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

#[test]
fn top_shows_services_edges_and_error_origins_in_an_80_column_terminal() {
    let spec_text = meshkit_tests::example_spec_text();
    let spec = write_spec(&spec_text);
    let run_dir = spec.parent().unwrap().join("run");
    // (Its access log is not read here.)
    let (mesh, lines) = spawn_discarding_stdout(&mut up(&spec, &run_dir));
    let mut mesh = KillOnDrop(mesh);
    wait_for_line(&mut mesh.0, &lines, "streaming access logs");

    let tmux = Tmux::new();
    let command = format!(
        "{} top {} --interval 1s --window 60s",
        env!("CARGO_BIN_EXE_meshkit"),
        spec.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "40",
        &command,
    ]);

    // The first screen compares two scrapes: traffic sent after it is all counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tmux.screen().contains("meshkit top") {
        assert!(Instant::now() < deadline, "top never drew a screen");
        // Polling a terminal's screen: nothing to be notified by.
        std::thread::sleep(Duration::from_millis(100));
    }
    let frontend = port_of(&spec_text, "frontend", "inbound_port");
    for _ in 0..20 {
        let status = get(frontend, None);
        assert!(status.contains(" 200 "), "{status}");
    }
    for _ in 0..10 {
        let status = get(frontend, Some("users.status=404;users.code=CM404001"));
        assert!(!status.contains(" 200 "), "{status}");
    }

    // The screen refreshes every second; wait for one that counted all of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let screen = loop {
        let screen = tmux.screen();
        let errors_counted = screen.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols == ["frontend", "CM404001", "users", "10"]
        });
        if errors_counted || Instant::now() > deadline {
            break screen;
        }
        // Polling a terminal's screen: nothing to be notified by.
        std::thread::sleep(Duration::from_millis(200));
    };
    let rows: Vec<Vec<&str>> = screen
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |first: &str| {
        rows.iter()
            .find(|r| r.first() == Some(&first))
            .unwrap_or_else(|| panic!("no {first} row:\n{screen}"))
    };
    for service in ["frontend", "recipes", "users"] {
        row(service);
    }
    for (caller, upstream) in [("frontend", "recipes"), ("recipes", "users")] {
        assert!(
            rows.iter()
                .any(|r| r.len() >= 3 && r[0] == caller && r[1] == "->" && r[2] == upstream),
            "no {caller} -> {upstream} edge:\n{screen}"
        );
    }
    for (service, code, origin) in [
        ("frontend", "CM404001", "users"),
        ("recipes", "CM404001", "users"),
        ("users", "CM404001", "users"),
    ] {
        assert!(
            rows.iter().any(|r| r[..] == [service, code, origin, "10"]),
            "no {service} {code} {origin} 10 row:\n{screen}"
        );
    }
    // users' 404 reaches frontend's caller as a 500: 20 of frontend's 30 succeeded.
    assert_eq!(row("frontend")[2], "66.7%", "{screen}");
    assert!(screen.lines().all(|l| l.len() <= 80), "{screen}");

    // Not a terminal: plain lines, no escape codes, one screen per refresh.
    let out = meshkit()
        .arg("top")
        .arg(&spec)
        .args(["--interval", "1s", "--count", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text:?}");
    assert_eq!(text.matches("\nSERVICE ").count(), 2, "{text}");
    assert!(text.contains("4/4 sidecars up"), "{text}");

    drop(tmux);
    signal(&mesh.0, libc::SIGTERM);
    assert_eq!(
        wait_with_deadline(&mut mesh.0, Duration::from_secs(30)).code(),
        Some(0)
    );
}

#[test]
fn top_refuses_a_window_it_would_have_to_keep_too_many_scrapes_for() {
    let spec = write_spec(&meshkit_tests::example_spec_text());
    let out = meshkit()
        .arg("top")
        .arg(&spec)
        .args(["--interval", "100ms", "--window", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--window: at most 1000 times --interval"),
        "{stderr}"
    );
}
