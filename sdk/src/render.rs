//! Rendering typed Envoy messages as canonical proto3 JSON (or YAML), through a descriptor pool.
//!
//! The pool is compiled from envoy-types' own .proto files at build time (see `build.rs`), so
//! `Any` fields are expanded with their `@type` and the field names are exactly Envoy's.

use std::sync::OnceLock;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

static DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor_set.bin"));

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("embedded Envoy descriptor set is unusable: {0}")]
    Descriptors(String),
    #[error("{0} is not in the descriptor pool (add its .proto to sdk/build.rs)")]
    UnknownMessage(String),
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
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| RenderError::Encode {
            message: name,
            reason: e.to_string(),
        })
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
