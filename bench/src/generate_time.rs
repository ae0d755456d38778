//! How long `meshkit generate` takes on a big spec: `n` services, each calling the next two,
//! validated and rendered to one JSON bootstrap per sidecar (the work of `meshkit generate`,
//! without the disk).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use meshkit_sdk::{generate, OutputFormat, RenderOptions};

/// The spec text: ports from 20000 up, four per service.
pub fn spec(n: usize) -> String {
    let mut spec = String::from(
        "version: 1\nmesh: big\nerrors:\n  catalog:\n    - { code: CM503001, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: unavailable }\nservices:\n",
    );
    let port = |i: usize, k: usize| 10_000 + i * 4 + k;
    for i in 0..n {
        let _ = write!(
            spec,
            "  - name: s{i}\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
            port(i, 0),
            port(i, 1),
            port(i, 2),
            port(i, 3)
        );
        let next: Vec<usize> = [i + 1, i + 2].into_iter().filter(|&j| j < n).collect();
        if !next.is_empty() {
            spec.push_str("    upstreams:\n");
            for j in next {
                let _ = writeln!(
                    spec,
                    "      - {{ service: s{j}, routes: [ {{ match: {{ prefix: /s{j} }}, retry: {{ num_retries: 2 }} }} ] }}"
                );
            }
        }
    }
    spec
}

/// (services, time to load and render them all).
pub fn measure(n: usize) -> anyhow::Result<(usize, Duration)> {
    // Ports must stay below 65536: at most ~13,000 services.
    let n = n.min(13_000);
    let text = spec(n);
    let start = Instant::now();
    let mesh = meshkit_sdk::load_str(&text, meshkit_sdk::Format::Yaml)
        .map_err(|p| anyhow::anyhow!("generated spec is invalid: {p:?}"))?;
    let files = generate(
        &mesh,
        &RenderOptions {
            wasm_path: "/opt/meshkit/meshkit_filter.wasm".into(),
            format: OutputFormat::Json,
            bare: false,
        },
    )?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        files.len() == n,
        "rendered {} of {n} bootstraps",
        files.len()
    );
    Ok((n, elapsed))
}
