//! Test helpers shared by the integration tests here and the CLI tests in `cli/tests`: free
//! ports, the example spec on free ports, scratch directories.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use meshkit_sdk::model::Mesh;
use meshkit_sdk::{load_str, Format};

pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/mesh.yaml");

/// The ports the example spec uses, in the order they appear.
const EXAMPLE_PORTS: [u16; 16] = [
    18081, 18001, 18101, 19001, 18082, 18002, 18102, 19002, 18083, 18003, 18103, 19003, 18084,
    18004, 18104, 19004,
];

/// `n` distinct ports that were free a moment ago. They are held open together while choosing
/// (so the kernel cannot hand out one twice), and never handed out twice in one test process
/// (so parallel tests do not collide once the ports are released).
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// The example spec's text with every port replaced by a free one.
pub fn example_spec_text() -> String {
    let mut text = std::fs::read_to_string(EXAMPLE).expect("read envoy/mesh.yaml");
    for (old, new) in EXAMPLE_PORTS.iter().zip(free_ports(EXAMPLE_PORTS.len())) {
        assert!(
            text.contains(&format!(" {old}")),
            "example no longer uses port {old}"
        );
        text = text.replace(&format!(" {old}"), &format!(" {new}"));
    }
    text
}

pub fn example_mesh() -> Mesh {
    load_str(&example_spec_text(), Format::Yaml).expect("example spec with free ports is valid")
}

/// A fresh, unique scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshkit-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The example spec, with recipes balancing round robin over users' replicas (so each gets
/// traffic) and health-checking them with `check` (a YAML flow mapping).
pub fn example_round_robin_checked(check: &str) -> String {
    let text = with_users_policy(&example_spec_text(), "load_balancing", "round_robin");
    with_users_policy(&text, "health_check", check)
}

/// The example spec `text` with `key:` of recipes' upstream `users` (the only upstream that
/// sets it) set to `value`, a YAML flow value, in place of the example's own line.
pub fn with_users_policy(text: &str, key: &str, value: &str) -> String {
    let line = format!("\n        {key}: ");
    let start = text
        .find(&line)
        .unwrap_or_else(|| panic!("the example sets {key} on recipes → users"))
        + 1;
    let end = start + text[start..].find('\n').expect("a line end");
    format!("{}        {key}: {value}{}", &text[..start], &text[end..])
}
