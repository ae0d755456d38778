//! The structured access log: one JSON object per request per listener, written by Envoy's
//! native stdout logger, with the meshkit filter's fields read from filter state.
//!
//! [`FIELDS`] *is* the schema (README "Access log schema" documents it; a test keeps the two in
//! sync). Keys follow OpenTelemetry semantic conventions where one exists; Envoy-specific values
//! are under `envoy.*`, meshkit's own under `meshkit.*`. Bump [`SCHEMA_VERSION`] when a key's
//! meaning changes or a key is removed; adding keys is compatible.

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, AccessLog, AccessLogFilter, NotHealthCheckFilter,
};
use envoy_types::pb::envoy::config::core::v3::{
    substitution_format_string, SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StdoutAccessLog,
};
use envoy_types::pb::google::protobuf::{value, Struct, Value};
use meshkit_filter::core::access_log::FilterField;
use meshkit_filter::core::config::Direction;

use super::any::pack;

pub const SCHEMA_VERSION: u32 = 1;

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An Envoy substitution command such as `%RESPONSE_CODE%`.
    Envoy(&'static str),
    /// Set by the meshkit filter in filter state.
    Filter(FilterField),
    /// The same number on every line.
    Constant(u32),
    /// The same on every line of one listener, written into its log format by the generator
    /// (not set per request: every filter-state write is paid on every request).
    Listener(ListenerValue),
}

/// What the generator knows about a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerValue {
    Service,
    /// Which instance of the service (`<service>` for the first, `<service>-<k>` for replicas).
    Instance,
    Direction,
}

/// The schema, in the order it is documented.
pub const FIELDS: &[(&str, Source)] = &[
    (
        "timestamp",
        Source::Envoy("%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"),
    ),
    ("meshkit.schema_version", Source::Constant(SCHEMA_VERSION)),
    ("service.name", Source::Listener(ListenerValue::Service)),
    (
        "service.instance.id",
        Source::Listener(ListenerValue::Instance),
    ),
    (
        "meshkit.direction",
        Source::Listener(ListenerValue::Direction),
    ),
    ("request_id", Source::Envoy("%REQ(X-REQUEST-ID)%")),
    ("trace_id", Source::Filter(FilterField::TraceId)),
    ("span_id", Source::Filter(FilterField::SpanId)),
    ("http.request.method", Source::Envoy("%REQ(:METHOD)%")),
    ("url.path", Source::Envoy("%PATH(NQ)%")),
    ("server.address", Source::Envoy("%REQ(:AUTHORITY)%")),
    ("envoy.protocol", Source::Envoy("%PROTOCOL%")),
    (
        "http.response.status_code",
        Source::Envoy("%RESPONSE_CODE%"),
    ),
    (
        "rpc.grpc.status_code",
        Source::Envoy("%GRPC_STATUS_NUMBER%"),
    ),
    ("envoy.response_flags", Source::Envoy("%RESPONSE_FLAGS%")),
    (
        "envoy.response_code_details",
        Source::Envoy("%RESPONSE_CODE_DETAILS%"),
    ),
    (
        "envoy.upstream_cluster",
        Source::Envoy("%UPSTREAM_CLUSTER%"),
    ),
    ("envoy.upstream_host", Source::Envoy("%UPSTREAM_HOST%")),
    ("duration_ms", Source::Envoy("%DURATION%")),
    (
        "envoy.upstream_service_time_ms",
        Source::Envoy("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ),
    ("http.request.body.size", Source::Envoy("%BYTES_RECEIVED%")),
    ("http.response.body.size", Source::Envoy("%BYTES_SENT%")),
    (
        "envoy.attempt_count",
        Source::Envoy("%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
    ),
    ("user_agent.original", Source::Envoy("%REQ(USER-AGENT)%")),
    (
        "client.address",
        Source::Envoy("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
    ),
    ("client.port", Source::Envoy("%DOWNSTREAM_REMOTE_PORT%")),
    ("meshkit.error.code", Source::Filter(FilterField::ErrorCode)),
    (
        "meshkit.error.origin",
        Source::Filter(FilterField::ErrorOrigin),
    ),
    (
        "meshkit.error.cause",
        Source::Filter(FilterField::ErrorCause),
    ),
    (
        "meshkit.error.retryable",
        Source::Filter(FilterField::ErrorRetryable),
    ),
    (
        "meshkit.error.classification",
        Source::Filter(FilterField::ErrorClassification),
    ),
    (
        "meshkit.error.source",
        Source::Filter(FilterField::ErrorSource),
    ),
    (
        "meshkit.retry.allowed",
        Source::Filter(FilterField::RetryAllowed),
    ),
    (
        "meshkit.retry.budget",
        Source::Filter(FilterField::RetryBudget),
    ),
];

/// The stdout access log with the JSON format above, for the `direction` listener of
/// `service`'s sidecar `instance`.
pub fn stdout_json_access_log(service: &str, instance: &str, direction: Direction) -> AccessLog {
    let fields = FIELDS
        .iter()
        .map(|(key, source)| {
            let value = match source {
                Source::Listener(ListenerValue::Service) => string(service),
                Source::Listener(ListenerValue::Instance) => string(instance),
                Source::Listener(ListenerValue::Direction) => string(direction.as_str()),
                other => field_value(*other),
            };
            ((*key).to_string(), value)
        })
        .collect();
    let format = SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(Struct {
            fields,
        })),
        ..Default::default()
    };
    let logger = StdoutAccessLog {
        access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(format)),
    };
    AccessLog {
        name: "envoy.access_loggers.stdout".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(pack(&logger))),
        // Callers' active health checks (marked by the inbound health check filter) would be
        // a line every interval from every caller: noise, not traffic.
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::NotHealthCheckFilter(
                NotHealthCheckFilter {},
            )),
        }),
    }
}

fn field_value(source: Source) -> Value {
    match source {
        Source::Envoy(command) => string(command),
        Source::Filter(field) => {
            string(&format!("%FILTER_STATE(wasm.{}:PLAIN)%", field.property()))
        }
        Source::Constant(n) => Value {
            kind: Some(value::Kind::NumberValue(f64::from(n))),
        },
        // Filled in per listener by `stdout_json_access_log`.
        Source::Listener(_) => string("-"),
    }
}

/// A string in the format. Envoy reads `%…%` in it as a command; service names and
/// directions (`[a-z0-9-]`) never contain `%`.
fn string(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_field_is_logged_under_its_key() {
        for field in FilterField::ALL {
            assert!(
                FIELDS.contains(&(field.log_key(), Source::Filter(field))),
                "{field:?} missing from the access log schema"
            );
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = FIELDS.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIELDS.len());
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md at the repository root");
        for (key, _) in FIELDS {
            assert!(
                readme.contains(&format!("`{key}`")),
                "README does not document `{key}`"
            );
        }
    }
}
