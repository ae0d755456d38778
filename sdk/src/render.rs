//! Rendering typed Envoy messages as canonical proto3 JSON (or YAML), through a descriptor pool.
//!
//! The pool is compiled at build time from the .proto files vendored out of envoy-types (see
//! `build.rs`), so `Any` fields are expanded with their `@type` and the field names are exactly
//! Envoy's. A field the pool does not know would vanish from the output without a trace, so
//! rendering refuses it ([`check_known`]).

use std::sync::OnceLock;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, SerializeOptions, Value};

static DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor_set.bin"));

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("embedded Envoy descriptor set is unusable: {0}")]
    Descriptors(String),
    #[error("{0} is not in the descriptor pool (add its .proto to sdk/proto/entry_files.txt)")]
    UnknownMessage(String),
    #[error("{message} sets field {field} that the vendored protos do not know (run scripts/vendor-envoy-protos.py)")]
    UnknownField { message: String, field: u32 },
    #[error("cannot render {message}: {reason}")]
    Encode { message: String, reason: String },
}

fn pool() -> Result<&'static DescriptorPool, RenderError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| RenderError::Descriptors(e.clone()))
}

/// `message` as a JSON value: proto field names (as in Envoy's docs), default values omitted,
/// `Any` expanded. Object keys come out sorted, so the same message always renders the same
/// bytes even though protobuf maps are unordered.
pub fn to_json_value<M: Message + Name>(message: &M) -> Result<serde_json::Value, RenderError> {
    let name = M::full_name();
    let descriptor = pool()?
        .get_message_by_name(&name)
        .ok_or_else(|| RenderError::UnknownMessage(name.clone()))?;
    let dynamic =
        DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(|e| {
            RenderError::Encode {
                message: name.clone(),
                reason: e.to_string(),
            }
        })?;
    check_known(&dynamic)?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| RenderError::Encode {
            message: name,
            reason: e.to_string(),
        })
}

/// Fails on the first field, at any depth (inside `Any` payloads too), that the descriptor pool
/// does not know: protobuf keeps such fields as unknown, and JSON output would drop them.
pub fn check_known(message: &DynamicMessage) -> Result<(), RenderError> {
    let descriptor = message.descriptor();
    if let Some(unknown) = message.unknown_fields().next() {
        return Err(RenderError::UnknownField {
            message: descriptor.full_name().to_string(),
            field: unknown.number(),
        });
    }
    if descriptor.full_name() == "google.protobuf.Any" {
        let url = message.get_field_by_name("type_url");
        let value = message.get_field_by_name("value");
        let (Some(url), Some(value)) = (url, value) else {
            return Ok(());
        };
        let (Some(url), Some(bytes)) = (url.as_str(), value.as_bytes()) else {
            return Ok(());
        };
        let name = url.rsplit('/').next().unwrap_or(url);
        let inner = pool()?
            .get_message_by_name(name)
            .ok_or_else(|| RenderError::UnknownMessage(name.to_string()))?;
        let inner =
            DynamicMessage::decode(inner, bytes.as_ref()).map_err(|e| RenderError::Encode {
                message: name.to_string(),
                reason: e.to_string(),
            })?;
        return check_known(&inner);
    }
    for (_, value) in message.fields() {
        check_value(value)?;
    }
    Ok(())
}

fn check_value(value: &Value) -> Result<(), RenderError> {
    match value {
        Value::Message(m) => check_known(m),
        Value::List(items) => items.iter().try_for_each(check_value),
        Value::Map(entries) => entries.values().try_for_each(check_value),
        _ => Ok(()),
    }
}

/// A bootstrap as pretty-printed JSON with a trailing newline.
pub fn bootstrap_json(bootstrap: &Bootstrap) -> Result<String, RenderError> {
    let value = to_json_value(bootstrap)?;
    let mut text = serde_json::to_string_pretty(&value).map_err(|e| RenderError::Encode {
        message: Bootstrap::full_name(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

/// A bootstrap as YAML.
pub fn bootstrap_yaml(bootstrap: &Bootstrap) -> Result<String, RenderError> {
    let value = to_json_value(bootstrap)?;
    serde_yaml_ng::to_string(&value).map_err(|e| RenderError::Encode {
        message: Bootstrap::full_name(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;

    fn with_unknown_field(mut bytes: Vec<u8>) -> Vec<u8> {
        // Field 9999, varint 1: a field a newer envoy-types could set and old protos lack.
        prost::encoding::encode_key(9999, prost::encoding::WireType::Varint, &mut bytes);
        prost::encoding::encode_varint(1, &mut bytes);
        bytes
    }

    fn decode(name: &str, bytes: &[u8]) -> DynamicMessage {
        let descriptor = pool().unwrap().get_message_by_name(name).unwrap();
        DynamicMessage::decode(descriptor, bytes).unwrap()
    }

    #[test]
    fn fields_the_vendored_protos_lack_are_refused_at_any_depth() {
        let name = "envoy.config.bootstrap.v3.Bootstrap";
        let known = decode(name, &Bootstrap::default().encode_to_vec());
        assert!(check_known(&known).is_ok());
        let top = decode(name, &with_unknown_field(Vec::new()));
        assert!(matches!(
            check_known(&top),
            Err(RenderError::UnknownField { field: 9999, .. })
        ));
        // Inside an Any payload, where JSON output would expand and silently drop it.
        let any = Any {
            type_url: format!("type.googleapis.com/{name}"),
            value: with_unknown_field(Vec::new()),
        };
        let err = check_known(&decode("google.protobuf.Any", &any.encode_to_vec()));
        assert!(
            matches!(err, Err(RenderError::UnknownField { .. })),
            "{err:?}"
        );
    }
}
