//! The plugin configuration: the JSON string the SDK puts in the Wasm filter's `configuration`.
//!
//! Strict on purpose: unknown fields, wrong types and out-of-range values are errors naming the
//! field, and the filter refuses to start on them. A silently ignored typo in a resilience
//! setting is worse than a sidecar that does not come up.

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The mesh service this sidecar belongs to (`[a-z0-9-]`, 1–63 bytes, as in the mesh spec).
    pub service: String,
    pub direction: Direction,
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
