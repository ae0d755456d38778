//! Server pushback on real Envoy: an app that answers a retryable code with `Retry-After` (on
//! 503) or `grpc-retry-pushback-ms` is not retried at once. Attempts are counted where they
//! land: the access log lines of the failing service's own sidecar, one per attempt.

mod common;

use std::time::Duration;

use hyper::Method;
use meshkit_cli::http_client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_and_grpc_pushback_stop_the_immediate_retry() {
    let mut mesh = common::start(common::example_mesh(), "pushback").await;
    let entry = mesh.inbound("frontend").unwrap();
    // recipes → users retries once on a retryable code (the example's route).
    let cases = [
        ("pb-none", "", 2, "true"),
        ("pb-retry-after", ";users.header=retry-after:5", 1, "false"),
        ("pb-retry-after-0", ";users.header=retry-after:0", 2, "true"),
        (
            "pb-grpc",
            ";users.header=grpc-retry-pushback-ms:-1",
            1,
            "false",
        ),
        (
            "pb-grpc-later",
            ";users.header=grpc-retry-pushback-ms:250",
            1,
            "false",
        ),
    ];
    for (id, extra, attempts, retryable) in cases {
        let demo = format!("users.status=503;users.code=CM503001{extra}");
        let headers = vec![
            ("x-request-id".to_string(), id.to_string()),
            ("x-demo".to_string(), demo),
        ];
        let r = http_client::send(entry, Method::GET, "/", &headers, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(r.status, 500, "{id}");
        let lines = common::lines_for(&mesh, id).await;
        let at_users: Vec<_> = lines
            .iter()
            .filter(|l| l.str("service.name") == Some("users"))
            .collect();
        println!("{id}: {} attempt(s) reached users", at_users.len());
        assert_eq!(at_users.len(), attempts, "{id}: {lines:#?}");
        assert!(
            at_users
                .iter()
                .all(|l| l.str("meshkit.error.retryable") == Some(retryable)),
            "{id}: {at_users:#?}"
        );
    }
    mesh.shutdown().await;
}
