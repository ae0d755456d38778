//! The retry budget's promise, counted where retries land: in the upstream app itself. For
//! every scenario of the issue (fast failures starting mid-slot, upstreams slow for 1 s and
//! 3 s before failing, a POST/GET mix, long server-streaming gRPC calls), with 2 Envoy workers
//! sharing the budget, the most retries that reached the upstream in any `ttl`-long window stay
//! within 10 % of `retry_ratio × requests + min_retries_per_second × ttl` (default budget:
//! 0.2, 10/s, 10 s). Each test prints its figures.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::upstream::{self, Arrivals, Behaviour, RetryCount};
use hyper::Method;
use meshkit_cli::http_client;
use meshkit_cli::local_mesh::LocalMesh;
use meshkit_sdk::model::Mesh;

const TTL: Duration = Duration::from_secs(10);
const RATIO: f64 = 0.2;
const MIN_PER_SECOND: f64 = 10.0;

/// `load → target`, target's app left to the test; 3 retries per request on `/target` for
/// the route's default (idempotent) methods, or for `methods`.
fn load_target(protocol: &str, methods: Option<&str>) -> (Mesh, u16) {
    let p = meshkit_tests::free_ports(8);
    let methods = methods.map_or(String::new(), |m| format!(", methods: [{m}]"));
    let spec = format!(
        "version: 1\nmesh: bound\n\
         errors:\n  grpc_detail_type: meshkit.demo.ApplicationError\n  catalog:\n    - {{ code: CM503001, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: unavailable }}\n\
         services:\n\
         \x20 - name: load\n    app: {{ port: {} }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n\
         \x20   upstreams:\n      - {{ service: target, routes: [ {{ match: {{ prefix: / }}, timeout: 30s, retry: {{ num_retries: 3{methods} }} }} ] }}\n\
         \x20 - name: target\n    app: {{ port: {}, protocol: {protocol}, timeout: 30s }}\n    sidecar: {{ inbound_port: {}, outbound_port: {}, admin_port: {} }}\n",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    );
    let mesh = meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap();
    (mesh, p[4])
}

fn outbound(mesh: &LocalMesh) -> SocketAddr {
    let port = mesh.mesh.service("load").unwrap().sidecar.outbound_port;
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The offset from now to the middle of a wall-clock second at least `after` from now: the
/// budget's slots are aligned to wall-clock seconds, so this is mid-slot.
fn mid_slot_after(after: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let target = now + after.as_millis() as u64;
    let mid = (target / 1000 + 1) * 1000 + 500;
    Duration::from_millis(mid - now)
}

/// Sends `rate` requests per second for `duration` through load's outbound listener, request
/// `i` with method `method(i)`, and waits for every answer (so every attempt has arrived).
async fn open_loop(
    via: SocketAddr,
    prefix: &str,
    rate: u32,
    duration: Duration,
    method: impl Fn(usize) -> Method,
) -> usize {
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let headers = vec![("x-request-id".to_string(), format!("{prefix}-{i}"))];
        let m = method(i);
        tasks.spawn(async move {
            http_client::send(via, m, "/target", &headers, Duration::from_secs(60))
                .await
                .map(|r| r.status)
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().expect("every request is answered");
    }
    total
}

/// Checks and prints the bound for one run.
async fn check(name: &str, mesh: &LocalMesh, arrivals: &Arrivals) -> RetryCount {
    let count = RetryCount::of(&arrivals.snapshot(), TTL, RATIO, MIN_PER_SECOND);
    let envoy_retries = common::envoy_stat(mesh, "load", "cluster.target.upstream_rq_retry").await;
    let overflow =
        common::envoy_stat(mesh, "load", "cluster.target.upstream_rq_retry_overflow").await;
    println!(
        "retry bound at the upstream, {name}: {} requests, {} retries; worst {}s window: {} \
         retries for {} requests, bound {:.0} ({:.2}× the bound); Envoy counted {envoy_retries} \
         retries, {overflow} refused by its circuit breaker",
        count.requests,
        count.retries,
        TTL.as_secs(),
        count.worst_window,
        count.requests_per_window,
        count.bound,
        count.worst_window as f64 / count.bound,
    );
    assert_eq!(
        envoy_retries as usize, count.retries,
        "{name}: every retry Envoy made arrived"
    );
    assert_eq!(
        overflow, 0,
        "{name}: the circuit breaker never capped the budget's retries"
    );
    assert!(
        count.worst_window as f64 <= 1.1 * count.bound,
        "{name}: {} retries in one ttl, over the bound {:.0} (+10 %)",
        count.worst_window,
        count.bound
    );
    count
}

/// One HTTP scenario: the upstream takes `latency` per attempt, healthy until `fail_after`
/// (from the app's start), failing after; load runs for `duration`.
async fn http_scenario(
    name: &str,
    rate: u32,
    latency: Duration,
    fail_after: impl Fn() -> Duration,
    duration: Duration,
    methods: Option<&str>,
    method: impl Fn(usize) -> Method,
) -> (RetryCount, LocalMesh) {
    let (mesh, app_port) = load_target("http1", methods);
    let fail_after = fail_after();
    let (arrivals, _) = upstream::start_http(app_port, move |since| Behaviour {
        latency,
        fail: since >= fail_after,
    })
    .await;
    let mesh = common::start_with(mesh, name, &["target"], 2).await;
    open_loop(outbound(&mesh), name, rate, duration, method).await;
    let count = check(name, &mesh, &arrivals).await;
    (count, mesh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fast_failures_starting_mid_slot() {
    let (count, mut mesh) = http_scenario(
        "fast-mid-slot",
        100,
        Duration::ZERO,
        || mid_slot_after(Duration::from_secs(5)),
        Duration::from_secs(25),
        None,
        |_| Method::GET,
    )
    .await;
    assert!(
        count.worst_window as f64 >= 0.8 * count.bound,
        "the budget was used: {} of {:.0}",
        count.worst_window,
        count.bound
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_slow_for_1s_then_failing() {
    let (count, mut mesh) = http_scenario(
        "slow-1s",
        60,
        Duration::from_secs(1),
        || Duration::from_secs(10),
        Duration::from_secs(25),
        None,
        |_| Method::GET,
    )
    .await;
    assert!(count.worst_window as f64 >= 0.6 * count.bound, "{count:?}");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_slow_for_3s_then_failing() {
    let (count, mut mesh) = http_scenario(
        "slow-3s",
        60,
        Duration::from_secs(3),
        || Duration::from_secs(10),
        Duration::from_secs(25),
        None,
        |_| Method::GET,
    )
    .await;
    assert!(count.worst_window as f64 >= 0.6 * count.bound, "{count:?}");
    mesh.shutdown().await;
}

/// Half POST (never retried on an idempotent-only route), half GET: POSTs hold nothing, are
/// never logged as denied, and GETs get the whole budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mix_of_post_and_get() {
    let (count, mut mesh) = http_scenario(
        "post-get",
        100,
        Duration::from_millis(20),
        || Duration::from_secs(3),
        Duration::from_secs(20),
        None,
        |i| {
            if i % 2 == 0 {
                Method::POST
            } else {
                Method::GET
            }
        },
    )
    .await;
    assert!(count.worst_window as f64 >= 0.8 * count.bound, "{count:?}");
    mesh.access_log
        .wait_for(Duration::from_secs(60), |lines| {
            lines
                .iter()
                .filter(|l| l.str("service.name") == Some("load"))
                .count()
                >= count.requests
        })
        .await
        .expect("every request logged by load");
    let lines = mesh.access_log.snapshot();
    let posts: Vec<_> = lines
        .iter()
        .filter(|l| {
            l.str("service.name") == Some("load") && l.str("http.request.method") == Some("POST")
        })
        .collect();
    assert!(!posts.is_empty());
    for l in &posts {
        assert_eq!(
            l.str("meshkit.retry.budget"),
            Some("not_retriable"),
            "{}",
            l.raw
        );
    }
    let denied = lines
        .iter()
        .filter(|l| l.str("meshkit.retry.budget") == Some("denied"))
        .collect::<Vec<_>>();
    assert!(!denied.is_empty(), "GETs ran out of budget");
    for l in denied {
        // The error is the upstream's, as the app got it; the budget field says why it was
        // not retried; the app is told not to retry on top.
        assert_eq!(l.str("http.request.method"), Some("GET"));
        assert_eq!(l.str("meshkit.error.code"), Some("CM503001"), "{}", l.raw);
        assert_eq!(l.str("meshkit.error.origin"), Some("target"), "{}", l.raw);
        assert_eq!(l.str("meshkit.error.retryable"), Some("false"), "{}", l.raw);
    }
    mesh.shutdown().await;
}

pub mod demo {
    tonic::include_proto!("meshkit.demo");
}

/// Long server-streaming calls (2 s each) while healthy, then calls that fail at once with a
/// retryable code: reservations are released at response headers, so the streams in flight do
/// not keep the budget from the failing calls, and the bound holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_server_streaming_grpc_calls() {
    use demo::recipes_client::RecipesClient;
    use demo::recipes_server::RecipesServer;

    let (mesh, app_port) = load_target("http2", Some("POST"));
    let arrivals = Arrivals::default();
    let app = grpc_app::StreamingApp {
        arrivals: arrivals.clone(),
        started: Instant::now(),
        fail_after: Duration::from_secs(8),
        stream_for: Duration::from_secs(2),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RecipesServer::new(app))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut mesh = common::start_with(mesh, "grpc-streams", &["target"], 2).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", outbound(&mesh)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let rate = 60;
    let total = rate * 22;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut tasks = tokio::task::JoinSet::new();
    let client = Arc::new(RecipesClient::new(channel));
    let mut streams_read = 0usize;
    for i in 0..total {
        tick.tick().await;
        let mut client = (*client).clone();
        tasks.spawn(async move {
            let mut request = tonic::Request::new(demo::GetRecipe { id: i.to_string() });
            request
                .metadata_mut()
                .insert("x-request-id", format!("stream-{i}").parse().unwrap());
            match client.watch(request).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    let mut n = 0;
                    while let Ok(Some(_)) = stream.message().await {
                        n += 1;
                    }
                    n
                }
                Err(_) => 0,
            }
        });
    }
    while let Some(n) = tasks.join_next().await {
        streams_read += n.unwrap();
    }
    assert!(streams_read > 0, "streams delivered messages");
    let count = check("grpc-streaming", &mesh, &arrivals).await;
    assert!(count.worst_window as f64 >= 0.6 * count.bound, "{count:?}");
    mesh.shutdown().await;
}

mod grpc_app {
    use std::time::{Duration, Instant};

    use meshkit_filter::core::grpc_status::{ApplicationError, ProtoAny, RpcStatus};
    use prost::Message;
    use tonic::{Code, Request, Response, Status};

    use super::demo::recipes_server::Recipes;
    use super::demo::{GetRecipe, Recipe};
    use super::Arrivals;

    pub struct StreamingApp {
        pub arrivals: Arrivals,
        pub started: Instant,
        pub fail_after: Duration,
        pub stream_for: Duration,
    }

    type Stream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Recipe, Status>> + Send>>;

    #[tonic::async_trait]
    impl Recipes for StreamingApp {
        type ListStream = Stream;
        type WatchStream = Stream;

        async fn get(&self, _: Request<GetRecipe>) -> Result<Response<Recipe>, Status> {
            Err(Status::unimplemented("get"))
        }

        async fn list(&self, _: Request<GetRecipe>) -> Result<Response<Stream>, Status> {
            Err(Status::unimplemented("list"))
        }

        /// Healthy: one message every 100 ms for `stream_for`, then OK. Failing: an immediate
        /// (trailers-only) UNAVAILABLE with the retryable app code.
        async fn watch(&self, request: Request<GetRecipe>) -> Result<Response<Stream>, Status> {
            let id = request
                .metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            self.arrivals.record(id);
            if self.started.elapsed() >= self.fail_after {
                let details = RpcStatus {
                    code: Code::Unavailable as i32,
                    message: "down".into(),
                    details: vec![ProtoAny {
                        type_url: "type.googleapis.com/meshkit.demo.ApplicationError".into(),
                        value: ApplicationError {
                            code: "CM503001".into(),
                            message: "down".into(),
                        }
                        .encode_to_vec(),
                    }],
                };
                return Err(Status::with_details(
                    Code::Unavailable,
                    "down",
                    details.encode_to_vec().into(),
                ));
            }
            let messages = (self.stream_for.as_millis() / 100) as u64;
            let id = request.into_inner().id;
            let stream = async_stream(id, messages);
            Ok(Response::new(Box::pin(stream)))
        }
    }

    fn async_stream(
        id: String,
        messages: u64,
    ) -> impl tokio_stream::Stream<Item = Result<Recipe, Status>> + Send {
        use tokio_stream::StreamExt;
        let interval = tokio::time::interval(Duration::from_millis(100));
        tokio_stream::wrappers::IntervalStream::new(interval)
            .take(messages as usize)
            .map(move |_| {
                Ok(Recipe {
                    id: id.clone(),
                    name: "soup".into(),
                })
            })
    }
}
