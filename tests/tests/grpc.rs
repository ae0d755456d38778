//! Error-code propagation over gRPC on real Envoy: a real tonic server behind the `recipes`
//! sidecar (HTTP/2 upstream) and a real tonic client calling through `web`'s outbound sidecar.

mod common;

use std::time::Duration;

use meshkit_filter::core::grpc_status::{ApplicationError, ErrorInfo, ProtoAny, RpcStatus};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

pub mod demo {
    tonic::include_proto!("meshkit.demo");
}
use demo::recipes_client::RecipesClient;
use demo::recipes_server::{Recipes, RecipesServer};
use demo::{GetRecipe, Recipe};

const LOG_WAIT: Duration = Duration::from_secs(30);

/// Answers by recipe id: `error-info` fails with a `google.rpc.ErrorInfo`, `app-error` with the
/// team's `ApplicationError`, anything else succeeds.
struct RecipesApp;

fn status_with_detail(code: Code, type_url: &str, value: Vec<u8>) -> Status {
    let details = RpcStatus {
        code: code as i32,
        message: "failed".into(),
        details: vec![ProtoAny {
            type_url: type_url.into(),
            value,
        }],
    };
    Status::with_details(code, "failed", details.encode_to_vec().into())
}

#[tonic::async_trait]
impl Recipes for RecipesApp {
    type ListStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Recipe, Status>> + Send>>;
    type WatchStream = Self::ListStream;

    async fn watch(
        &self,
        _request: Request<GetRecipe>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }

    async fn list(
        &self,
        request: Request<GetRecipe>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let id = request.into_inner().id;
        let first = Ok(Recipe {
            id: id.clone(),
            name: "soup".into(),
        });
        let then = Err(status_with_detail(
            Code::Unavailable,
            "type.googleapis.com/meshkit.demo.ApplicationError",
            ApplicationError {
                code: "CM503001".into(),
                message: "gone".into(),
            }
            .encode_to_vec(),
        ));
        Ok(Response::new(Box::pin(tokio_stream::iter([first, then]))))
    }

    async fn get(&self, request: Request<GetRecipe>) -> Result<Response<Recipe>, Status> {
        match request.into_inner().id.as_str() {
            "error-info" => Err(status_with_detail(
                Code::Unavailable,
                "type.googleapis.com/google.rpc.ErrorInfo",
                ErrorInfo {
                    reason: "CM503001".into(),
                    domain: "recipes".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )),
            "app-error" => Err(status_with_detail(
                Code::Internal,
                "type.googleapis.com/meshkit.demo.ApplicationError",
                ApplicationError {
                    code: "CM500003".into(),
                    message: "boom".into(),
                }
                .encode_to_vec(),
            )),
            id => Ok(Response::new(Recipe {
                id: id.into(),
                name: "soup".into(),
            })),
        }
    }
}

const SPEC: &str = r#"
version: 1
mesh: grpc-test
errors:
  grpc_detail_type: meshkit.demo.ApplicationError
  catalog:
    - { code: CM500003, http_status: 500, grpc_status: INTERNAL, retryable: false, message: unknown error }
    - { code: CM503001, http_status: 503, grpc_status: UNAVAILABLE, retryable: true, message: unavailable }
services:
  - name: web
    app: { port: P1 }
    sidecar: { inbound_port: P2, outbound_port: P3, admin_port: P4 }
    upstreams:
      - service: recipes
        routes:
          - match: { prefix: /meshkit.demo.Recipes/ }
            timeout: 5s
  - name: recipes
    app: { port: P5, protocol: http2 }
    sidecar: { inbound_port: P6, outbound_port: P7, admin_port: P8 }
"#;

async fn call(
    client: &mut RecipesClient<tonic::transport::Channel>,
    id: &str,
    request_id: &str,
) -> Result<Recipe, Status> {
    let mut request = Request::new(GetRecipe { id: id.into() });
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    client.get(request).await.map(Response::into_inner)
}

fn meta<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
    status.metadata().get(key).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_extracts_codes_from_grpc_status_details() {
    let mut spec = SPEC.to_string();
    for (i, port) in meshkit_tests::free_ports(8).into_iter().enumerate() {
        spec = spec.replace(&format!("P{}", i + 1), &port.to_string());
    }
    let mesh_spec = meshkit_sdk::load_str(&spec, meshkit_sdk::Format::Yaml).unwrap();
    let app_port = mesh_spec.service("recipes").unwrap().app.port;
    let web_outbound = mesh_spec.service("web").unwrap().sidecar.outbound_port;

    // The real gRPC server, on the port the recipes sidecar forwards to.
    let listener = TcpListener::bind(("127.0.0.1", app_port)).await.unwrap();
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RecipesServer::new(RecipesApp))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let mut mesh = common::start_with_external_apps(mesh_spec, "grpc", &["recipes"]).await;
    let mut client = RecipesClient::connect(format!("http://127.0.0.1:{web_outbound}"))
        .await
        .unwrap();

    let ok = call(&mut client, "soup-1", "g-ok").await.unwrap();
    assert_eq!(ok.name, "soup");

    // ErrorInfo in the details: code CM503001, origin recipes, seen by the gRPC client.
    let s = call(&mut client, "error-info", "g-info").await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(meta(&s, "x-meshkit-error-code"), Some("CM503001"), "{s:?}");
    assert_eq!(meta(&s, "x-meshkit-error-origin"), Some("recipes"));
    assert_eq!(meta(&s, "x-meshkit-error-retryable"), Some("true"));
    let lines = mesh
        .access_log
        .wait_for_request("g-info", 2, LOG_WAIT)
        .await
        .unwrap();
    let inbound = lines
        .iter()
        .find(|l| l.str("meshkit.direction") == Some("inbound"))
        .unwrap();
    assert_eq!(inbound.str("service.name"), Some("recipes"));
    assert_eq!(
        inbound.str("meshkit.error.code"),
        Some("CM503001"),
        "{}",
        inbound.raw
    );
    assert_eq!(inbound.str("meshkit.error.source"), Some("grpc_details"));
    assert_eq!(inbound.num("rpc.grpc.status_code"), Some(14.0));
    assert_eq!(inbound.str("envoy.protocol"), Some("HTTP/2"));
    let outbound = lines
        .iter()
        .find(|l| l.str("meshkit.direction") == Some("outbound"))
        .unwrap();
    assert_eq!(
        outbound.str("meshkit.error.code"),
        Some("CM503001"),
        "{}",
        outbound.raw
    );
    assert_eq!(outbound.str("meshkit.error.origin"), Some("recipes"));

    // The team's ApplicationError message (configured as grpc_detail_type).
    let s = call(&mut client, "app-error", "g-app").await.unwrap_err();
    assert_eq!(s.code(), Code::Internal);
    assert_eq!(meta(&s, "x-meshkit-error-code"), Some("CM500003"));
    assert_eq!(meta(&s, "x-meshkit-error-retryable"), Some("false"));

    // A failure after a message: the status and its details come in real trailers.
    let mut request = Request::new(GetRecipe {
        id: "stream-1".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "g-stream".parse().unwrap());
    let mut stream = client.list(request).await.unwrap().into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().name, "soup");
    let s = stream.message().await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(meta(&s, "x-meshkit-error-code"), Some("CM503001"), "{s:?}");
    assert_eq!(meta(&s, "x-meshkit-error-origin"), Some("recipes"));
    let lines = mesh
        .access_log
        .wait_for_request("g-stream", 2, LOG_WAIT)
        .await
        .unwrap();
    for l in &lines {
        assert_eq!(l.str("meshkit.error.code"), Some("CM503001"), "{}", l.raw);
    }

    // The server goes away: the recipes sidecar's connect failure reaches the gRPC client as a
    // proper status with meshkit's ErrorInfo.
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
    let s = call(&mut client, "soup-2", "g-uf").await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert_eq!(
        meta(&s, "x-meshkit-error-code"),
        Some("MESH_UPSTREAM_CONNECT_FAILURE")
    );
    assert_eq!(meta(&s, "x-meshkit-error-origin"), Some("recipes"));
    let details = RpcStatus::decode(s.details()).unwrap();
    let info = ErrorInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(info.reason, "MESH_UPSTREAM_CONNECT_FAILURE");
    assert_eq!(info.domain, "meshkit");
    assert_eq!(
        info.metadata.get("origin").map(String::as_str),
        Some("recipes")
    );

    mesh.shutdown().await;
}
