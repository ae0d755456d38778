//! The demo app's gRPC side (h2c): a unary call served at any path, so that each gRPC service
//! of a spec can have its own route prefix, and the client that calls gRPC upstreams.
//!
//! The call's messages are declared here with prost (no `.proto` to compile): a `CallRequest`
//! carries nothing the app needs, and a `CallReply` names the service and what its upstreams
//! answered. Failures follow the same `x-demo` directives as HTTP, read from the call's
//! metadata: `status=` picks the gRPC code (the gRPC spec's HTTP mapping) unless `grpc=` names
//! one (`UNAVAILABLE` or `14`); `code=` reports an app error code the documented way, in
//! `grpc-status-details-bin` (a `google.rpc.Status` with a `google.rpc.ErrorInfo` whose `reason`
//! is the code); `header=` adds trailers (e.g. `grpc-retry-pushback-ms:-1`).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::uri::PathAndQuery;
use hyper::Request;
use meshkit_filter::core::error_code::GrpcStatus;
use meshkit_filter::core::grpc_status::{ErrorInfo, ProtoAny, RpcStatus, ERROR_INFO_TYPE};
use prost::Message;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::{App, Behaviour, DemoResponse, FORWARDED};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Clone, PartialEq, Message)]
pub struct CallRequest {
    #[prost(string, tag = "1")]
    pub path: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CallReply {
    #[prost(string, tag = "1")]
    pub service: String,
    /// Each upstream's answer, as JSON text.
    #[prost(string, repeated, tag = "2")]
    pub upstreams: Vec<String>,
}

/// Whether a request is gRPC, as Envoy (and meshkit's filter) decide it.
pub fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|ct| meshkit_filter::core::stream::is_grpc(ct.as_bytes()))
}

/// Name/value pairs as gRPC metadata (pairs that are not valid metadata are skipped).
fn metadata(pairs: &[(String, String)]) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Serves one gRPC call with tonic's server codec.
pub async fn serve(app: Arc<App>, b: Behaviour, req: Request<Incoming>) -> DemoResponse {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<CallReply, CallRequest>::default());
    let response = grpc.unary(Call { app, b }, req).await;
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

struct Call {
    app: Arc<App>,
    b: Behaviour,
}

impl tonic::server::UnaryService<CallRequest> for Call {
    type Response = CallReply;
    type Future = BoxFuture<Result<tonic::Response<CallReply>, Status>>;

    fn call(&mut self, request: tonic::Request<CallRequest>) -> Self::Future {
        let (app, b) = (self.app.clone(), self.b.clone());
        Box::pin(async move {
            let config = &app.config;
            if b.status.is_some() || b.grpc.is_some() {
                return Err(failure(&config.name, &b));
            }
            let forwarded: Vec<(String, String)> = FORWARDED
                .iter()
                .filter_map(|h| {
                    let v = request.metadata().get(*h)?.to_str().ok()?;
                    Some((h.to_string(), v.to_string()))
                })
                .collect();
            match super::call_upstreams(&app, &forwarded).await {
                Ok(upstreams) => Ok(tonic::Response::new(CallReply {
                    service: config.name.clone(),
                    upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
                })),
                // What an unmodified service does: a plain INTERNAL, no app code.
                Err(e) => Err(Status::internal(format!("upstream failed: {e}"))),
            }
        })
    }
}

/// The status a `status=`/`grpc=` directive asks for, with the app code in its details.
fn failure(service: &str, b: &Behaviour) -> Status {
    let code = b.grpc.unwrap_or_else(|| from_http(b.status.unwrap_or(500)));
    let message = format!("{service}: demo failure");
    let metadata = metadata(&b.headers);
    let Some(app_code) = &b.code else {
        return Status::with_metadata(code, message, metadata);
    };
    let info = ErrorInfo {
        reason: app_code.clone(),
        domain: service.to_string(),
        metadata: Default::default(),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: format!("type.googleapis.com/{ERROR_INFO_TYPE}"),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details_and_metadata(code, message, details.encode_to_vec().into(), metadata)
}

/// A `grpc=` directive: a status name (`UNAVAILABLE`) or number (`14`).
pub fn parse_code(value: &str) -> Option<Code> {
    if let Ok(n) = value.parse::<i32>() {
        return (0..=16).contains(&n).then(|| Code::from_i32(n));
    }
    let status: GrpcStatus = serde_json::from_value(serde_json::json!(value)).ok()?;
    Some(Code::from_i32(status.code()))
}

/// The gRPC spec's mapping of an HTTP status to a gRPC code ("HTTP to gRPC Status Code
/// Mapping").
fn from_http(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Calls a gRPC upstream at `path` through the sidecar's outbound listener.
pub async fn call(
    channel: &Channel,
    path: &str,
    forwarded: &[(String, String)],
) -> Result<serde_json::Value, String> {
    let path = PathAndQuery::from_str(path).map_err(|e| format!("bad path {path}: {e}"))?;
    let mut request = tonic::Request::new(CallRequest {
        path: path.to_string(),
    });
    *request.metadata_mut() = metadata(forwarded);
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| format!("gRPC upstream not ready: {e}"))?;
    let reply = client
        .unary(
            request,
            path,
            ProstCodec::<CallRequest, CallReply>::default(),
        )
        .await
        .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(serde_json::json!({
        "service": reply.service,
        "upstreams": reply
            .upstreams
            .iter()
            .map(|u| serde_json::from_str(u).unwrap_or_else(|_| serde_json::json!(u)))
            .collect::<Vec<_>>(),
    }))
}
