//! The plugin configuration: the JSON string the SDK puts in the Wasm filter's `configuration`.
//!
//! Strict on purpose: unknown fields, wrong types and out-of-range values are errors naming the
//! field, and the filter refuses to start on them. A silently ignored typo in a resilience
//! setting is worse than a sidecar that does not come up.

use serde::{Deserialize, Serialize};

use super::catalog::{catalog_problems, CatalogEntry};
use super::cause_table::{MAX_BUCKETS, MIN_BUCKETS};
use super::local_reply::LocalReplies;
use super::retry_budget::MAX_HOLD_MS;
use super::retry_control::{RetryLayers, RetrySettings};

/// Which side of the sidecar a listener is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Callers → this sidecar → the local app.
    Inbound,
    /// The local app → this sidecar → upstream services.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One listener's filter configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The mesh service this sidecar belongs to (`[a-z0-9-]`, 1–63 bytes, as in the mesh spec).
    pub service: String,
    pub direction: Direction,
    /// How Envoy-made failures are rewritten on this listener.
    #[serde(default)]
    pub local_replies: LocalReplies,
    /// Mesh-wide error settings (the same on every listener).
    #[serde(default)]
    pub errors: ErrorSettings,
    /// Outbound: the routes whose retries the filter controls, and the upstream budgets.
    #[serde(default)]
    pub retries: RetrySettings,
    /// Inbound: which layer of a call chain may retry a failure.
    #[serde(default)]
    pub retry_layers: RetryLayers,
    /// The cause table both listeners of the sidecar share (the same on both).
    #[serde(default)]
    pub cause_table: CauseTableSettings,
}

/// The shape of the cause table ([`super::cause_table`]). The SDK sizes it from the requests
/// the app's circuit breaker admits, and sets the age from the inbound route timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CauseTableSettings {
    /// Number of shared-data keys of [`super::cause_table::WAYS`] entries each (a power of two).
    pub buckets: u32,
    /// How long a cause can still be needed: the longest a request lives inside the service.
    pub max_age_ms: u64,
}

impl Default for CauseTableSettings {
    fn default() -> Self {
        CauseTableSettings {
            buckets: 512,
            max_age_ms: 15_000,
        }
    }
}

/// How apps report error codes, and the catalog of codes. Mesh-wide: the SDK copies the
/// spec's `errors` section into every listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSettings {
    /// Response header apps put their error code in.
    #[serde(default = "default_app_header")]
    pub app_header: String,
    /// Full name of the team's application error message in gRPC status details (a message
    /// whose field 1 is the string `code`), e.g. `acme.common.ApplicationError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_detail_type: Option<String>,
    /// Read the `code` member of `application/problem+json` error bodies up to this size;
    /// absent = do not read bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_json_max_body_bytes: Option<u32>,
    /// Distinct codes (and origins) each VM admits as metric labels before counting `other`.
    #[serde(default = "default_max_metric_codes")]
    pub max_metric_codes: u32,
    #[serde(default)]
    pub catalog: Vec<CatalogEntry>,
}

impl Default for ErrorSettings {
    fn default() -> Self {
        ErrorSettings {
            app_header: default_app_header(),
            grpc_detail_type: None,
            problem_json_max_body_bytes: None,
            max_metric_codes: default_max_metric_codes(),
            catalog: Vec::new(),
        }
    }
}

fn default_app_header() -> String {
    "x-app-error-code".into()
}

fn default_max_metric_codes() -> u32 {
    32
}

/// Upper bounds for the error settings.
pub const MAX_PROBLEM_JSON_BODY: u32 = 1024 * 1024;
pub const MAX_METRIC_CODES: u32 = 1000;

impl ErrorSettings {
    /// Every problem, as `(path relative to the settings, message)`; shared with the SDK.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let h = self.app_header.as_bytes();
        if h.is_empty()
            || h.len() > 64
            || !h
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            p.push((
                "app_header".into(),
                format!("{:?} is not a lower-case header name", self.app_header),
            ));
        } else if self.app_header.starts_with("x-meshkit-") || self.app_header.starts_with("grpc-")
        {
            p.push((
                "app_header".into(),
                format!("{:?} is reserved (x-meshkit-*, grpc-*)", self.app_header),
            ));
        }
        if let Some(t) = &self.grpc_detail_type {
            let ok = !t.is_empty()
                && t.len() <= 256
                && !t.starts_with('.')
                && !t.ends_with('.')
                && t.split('.').all(|part| {
                    part.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if !ok {
                p.push((
                    "grpc_detail_type".into(),
                    format!(
                        "{t:?} is not a protobuf message full name (e.g. acme.ApplicationError)"
                    ),
                ));
            }
        }
        if let Some(n) = self.problem_json_max_body_bytes {
            if n == 0 || n > MAX_PROBLEM_JSON_BODY {
                p.push((
                    "problem_json_max_body_bytes".into(),
                    format!("must be between 1 and {MAX_PROBLEM_JSON_BODY}, got {n}"),
                ));
            }
        }
        if self.max_metric_codes == 0 || self.max_metric_codes > MAX_METRIC_CODES {
            p.push((
                "max_metric_codes".into(),
                format!(
                    "must be between 1 and {MAX_METRIC_CODES}, got {}",
                    self.max_metric_codes
                ),
            ));
        }
        for (path, message) in catalog_problems(&self.catalog) {
            p.push((format!("catalog{path}"), message));
        }
        p
    }
}

/// Longest service name: a DNS label, which is also what keeps metric names bounded.
pub const MAX_SERVICE_NAME_LEN: usize = 63;

/// A configuration problem, located by its JSON path (`service`, `retry_budget.ratio`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plugin configuration: {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl PluginConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config: PluginConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError {
                path: if path == "." { "(root)".into() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError {
            path: "(root)".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !is_service_name(&self.service) {
            return Err(ConfigError {
                path: "service".into(),
                message: format!(
                    "must be 1-{MAX_SERVICE_NAME_LEN} characters of a-z, 0-9 and '-', \
                     starting with a letter, got {:?}",
                    self.service
                ),
            });
        }
        if let Some((path, message)) = self.errors.problems().into_iter().next() {
            return Err(ConfigError {
                path: format!("errors.{path}"),
                message,
            });
        }
        let t = self.cause_table;
        if !t.buckets.is_power_of_two() || !(MIN_BUCKETS..=MAX_BUCKETS).contains(&t.buckets) {
            return Err(ConfigError {
                path: "cause_table.buckets".into(),
                message: format!(
                    "must be a power of two between {MIN_BUCKETS} and {MAX_BUCKETS}, got {}",
                    t.buckets
                ),
            });
        }
        if t.max_age_ms == 0 || t.max_age_ms > MAX_HOLD_MS {
            return Err(ConfigError {
                path: "cause_table.max_age_ms".into(),
                message: format!("must be between 1 and {MAX_HOLD_MS}, got {}", t.max_age_ms),
            });
        }
        if let Some((path, message)) = self.retries.problems().into_iter().next() {
            return Err(ConfigError {
                path: format!("retries.{path}"),
                message,
            });
        }
        Ok(())
    }

    /// The exact JSON the filter expects: what the SDK embeds in generated Envoy config.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and unit enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A DNS-label-like name: `[a-z][a-z0-9-]*`, not ending in `-`, at most 63 bytes.
pub fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= MAX_SERVICE_NAME_LEN
        && bytes.last() != Some(&b'-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn err(json: &str) -> ConfigError {
        PluginConfig::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_a_valid_config_and_round_trips() {
        let c = PluginConfig::parse(br#"{"service":"recipes","direction":"outbound"}"#).unwrap();
        assert_eq!(c.service, "recipes");
        assert_eq!(c.direction, Direction::Outbound);
        assert_eq!(c.local_replies, LocalReplies::HeadersAndBody);
        assert_eq!(c.errors, ErrorSettings::default());
        assert_eq!(PluginConfig::parse(c.to_json().as_bytes()).unwrap(), c);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = err(r#"{"service":"a","direction":"inbound","servic":"x"}"#);
        assert!(e.message.contains("unknown field `servic`"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(r#"{"service":"a"}"#);
        assert!(e.message.contains("missing field `direction`"), "{e}");
    }

    #[test]
    fn wrong_enum_value_points_at_the_field() {
        let e = err(r#"{"service":"a","direction":"sideways"}"#);
        assert_eq!(e.path, "direction");
        assert!(e
            .to_string()
            .starts_with("invalid plugin configuration: direction: "));
    }

    #[test]
    fn bad_service_name_points_at_the_field() {
        for bad in ["", "Recipes", "-a", "a-", "a_b", &"a".repeat(64)] {
            let json = format!(r#"{{"service":{bad:?},"direction":"inbound"}}"#);
            assert_eq!(err(&json).path, "service", "{bad:?}");
        }
    }

    #[test]
    fn error_settings_problems_name_the_field() {
        let e = err(r#"{"service":"a","direction":"inbound","errors":{"app_header":"X Bad"}}"#);
        assert_eq!(e.path, "errors.app_header");
        let e = err(r#"{"service":"a","direction":"inbound","errors":{"max_metric_codes":0}}"#);
        assert_eq!(e.path, "errors.max_metric_codes");
        let e =
            err(r#"{"service":"a","direction":"inbound","errors":{"grpc_detail_type":"a..b"}}"#);
        assert_eq!(e.path, "errors.grpc_detail_type");
        let e = err(
            r#"{"service":"a","direction":"inbound","errors":{"catalog":[
                {"code":"CM1","http_status":503,"grpc_status":"UNAVAILABLE","retryable":true,"message":"m"},
                {"code":"CM1","http_status":503,"grpc_status":"UNAVAILABLE","retryable":true,"message":"m"}]}}"#,
        );
        assert_eq!(e.path, "errors.catalog[1].code");
        let e =
            err(r#"{"service":"a","direction":"inbound","errors":{"catalog":[{"code":"CM1"}]}}"#);
        assert!(e.path.starts_with("errors.catalog[0]"), "{e}");
        let e = err(
            r#"{"service":"a","direction":"inbound","cause_table":{"buckets":100,"max_age_ms":1}}"#,
        );
        assert_eq!(e.path, "cause_table.buckets");
        let e = err(
            r#"{"service":"a","direction":"inbound","cause_table":{"buckets":64,"max_age_ms":0}}"#,
        );
        assert_eq!(e.path, "cause_table.max_age_ms");
        let e = err(r#"{"service":"a","direction":"inbound","local_replies":"sometimes"}"#);
        assert_eq!(e.path, "local_replies");
        let e = err(
            r#"{"service":"a","direction":"outbound","retries":{"budgets":{"b":{"retry_ratio":0.2,"min_retries_per_second":10,"ttl_ms":100}}}}"#,
        );
        assert_eq!(e.path, "retries.budgets.b.ttl");
        let e = err(
            r#"{"service":"a","direction":"outbound","retries":{"budgets":{"b":{"retry_ratio":0.2}}}}"#,
        );
        assert!(e.message.contains("missing field"), "{e}");
    }

    #[test]
    fn not_json_or_trailing_garbage_is_an_error() {
        assert_eq!(err("").path, "(root)");
        assert_eq!(err("\u{0}\u{ff}").path, "(root)");
        assert_eq!(
            err(r#"{"service":"a","direction":"inbound"} x"#).path,
            "(root)"
        );
        assert!(PluginConfig::parse(&[0xff, 0xfe]).is_err());
    }
}
