//! `grpc-status-details-bin`: a base64 `google.rpc.Status` whose `details` may carry the app's
//! error code, either as a `google.rpc.ErrorInfo` (`reason`) or as the team's own application
//! message with a string `code` in field 1 (`ApplicationError{code=1, message=2}`).
//!
//! The messages are declared here with prost's derive (only the fields we read), rather than
//! pulling in a crate of Google protos: this runs inside every sidecar's VM.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use prost::Message;

/// Header values above this are not decoded: a details header is a few hundred bytes.
pub const MAX_DETAILS_HEADER_LEN: usize = 16 * 1024;

/// gRPC mandates accepting padded and unpadded base64 and emitting unpadded.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ErrorInfo {
    #[prost(string, tag = "1")]
    pub reason: String,
    #[prost(string, tag = "2")]
    pub domain: String,
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The `ApplicationError{code=1, message=2}` shape teams pack into status details.
#[derive(Clone, PartialEq, Message)]
pub struct ApplicationError {
    #[prost(string, tag = "1")]
    pub code: String,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub const ERROR_INFO_TYPE: &str = "google.rpc.ErrorInfo";

/// What a details header yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailsCode {
    /// A code, and which detail type carried it.
    Found {
        code: String,
        detail_type: String,
    },
    /// A valid status with no detail we understand.
    NoCode,
    Malformed(String),
}

/// Reads the code from a `grpc-status-details-bin` value. Envoy joins repeated headers with
/// `,`, so each comma-separated part is tried in turn; the first code found wins.
pub fn code_from_details(value: &[u8], app_detail_type: Option<&str>) -> DetailsCode {
    if value.len() > MAX_DETAILS_HEADER_LEN {
        return DetailsCode::Malformed(format!(
            "grpc-status-details-bin is {} bytes (limit {MAX_DETAILS_HEADER_LEN})",
            value.len()
        ));
    }
    let mut malformed = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let status = match BASE64
            .decode(part)
            .map_err(|e| format!("bad base64: {e}"))
            .and_then(|bytes| {
                RpcStatus::decode(bytes.as_slice())
                    .map_err(|e| format!("bad google.rpc.Status: {e}"))
            }) {
            Ok(s) => s,
            Err(e) => {
                malformed.get_or_insert(e);
                continue;
            }
        };
        match code_from_status(&status, app_detail_type) {
            DetailsCode::Found { code, detail_type } => {
                return DetailsCode::Found { code, detail_type }
            }
            DetailsCode::Malformed(e) => {
                malformed.get_or_insert(e);
            }
            DetailsCode::NoCode => {}
        }
    }
    malformed.map_or(DetailsCode::NoCode, DetailsCode::Malformed)
}

fn code_from_status(status: &RpcStatus, app_detail_type: Option<&str>) -> DetailsCode {
    for detail in &status.details {
        // type.googleapis.com/<full name>, or any prefix ending in '/'.
        let name = detail.type_url.rsplit('/').next().unwrap_or_default();
        let code = if name == ERROR_INFO_TYPE {
            ErrorInfo::decode(detail.value.as_slice())
                .map(|info| info.reason)
                .map_err(|e| format!("bad {ERROR_INFO_TYPE}: {e}"))
        } else if Some(name) == app_detail_type {
            ApplicationError::decode(detail.value.as_slice())
                .map(|app| app.code)
                .map_err(|e| format!("bad {name}: {e}"))
        } else {
            continue;
        };
        return match code {
            Ok(code) if super::error_code::is_valid_code(code.as_bytes()) => DetailsCode::Found {
                code,
                detail_type: name.to_string(),
            },
            Ok(code) => DetailsCode::Malformed(format!("{name} carries an invalid code {code:?}")),
            Err(e) => DetailsCode::Malformed(e),
        };
    }
    DetailsCode::NoCode
}

/// The `grpc-status-details-bin` value for an error meshkit reports itself: a
/// `google.rpc.Status` with one `ErrorInfo` (domain `meshkit`, reason = the code).
pub fn encode_details(
    grpc_code: i32,
    message: &str,
    code: &str,
    metadata: &[(&str, &str)],
) -> String {
    let info = ErrorInfo {
        reason: code.to_string(),
        domain: "meshkit".into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let status = RpcStatus {
        code: grpc_code,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: format!("type.googleapis.com/{ERROR_INFO_TYPE}"),
            value: info.encode_to_vec(),
        }],
    };
    BASE64.encode(status.encode_to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub(crate) fn details_with(type_url: &str, value: Vec<u8>) -> Vec<u8> {
        let status = RpcStatus {
            code: 14,
            message: "unavailable".into(),
            details: vec![ProtoAny {
                type_url: type_url.into(),
                value,
            }],
        };
        base64::engine::general_purpose::STANDARD
            .encode(status.encode_to_vec())
            .into_bytes()
    }

    fn app_error(code: &str) -> Vec<u8> {
        ApplicationError {
            code: code.into(),
            message: "m".into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_error_info_reason() {
        let info = ErrorInfo {
            reason: "CM503001".into(),
            domain: "acme".into(),
            ..Default::default()
        };
        let v = details_with(
            "type.googleapis.com/google.rpc.ErrorInfo",
            info.encode_to_vec(),
        );
        assert_eq!(
            code_from_details(&v, None),
            DetailsCode::Found {
                code: "CM503001".into(),
                detail_type: ERROR_INFO_TYPE.into()
            }
        );
    }

    #[test]
    fn reads_the_configured_application_message() {
        let v = details_with(
            "type.googleapis.com/acme.ApplicationError",
            app_error("CM500003"),
        );
        assert!(matches!(
            code_from_details(&v, Some("acme.ApplicationError")),
            DetailsCode::Found { code, .. } if code == "CM500003"
        ));
        assert_eq!(
            code_from_details(&v, None),
            DetailsCode::NoCode,
            "type not configured"
        );
        assert_eq!(
            code_from_details(&v, Some("other.Type")),
            DetailsCode::NoCode
        );
    }

    #[test]
    fn accepts_unpadded_and_comma_joined_values() {
        let v = details_with("type.googleapis.com/acme.E", app_error("A1"));
        let unpadded: Vec<u8> = v.iter().copied().filter(|&b| b != b'=').collect();
        assert!(matches!(
            code_from_details(&unpadded, Some("acme.E")),
            DetailsCode::Found { .. }
        ));
        let mut joined = b"!!!notbase64, ".to_vec();
        joined.extend_from_slice(&v);
        assert!(matches!(
            code_from_details(&joined, Some("acme.E")),
            DetailsCode::Found { .. }
        ));
    }

    #[test]
    fn malformed_inputs_are_reported_not_panicked_on() {
        let truncated = {
            let mut v = base64::engine::general_purpose::STANDARD
                .decode(details_with("type.googleapis.com/acme.E", app_error("A1")))
                .unwrap();
            v.truncate(v.len() - 3);
            base64::engine::general_purpose::STANDARD
                .encode(v)
                .into_bytes()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"@@@@".to_vec(), "bad base64"),
            (b"////".to_vec(), "bad google.rpc.Status"),
            (truncated, "bad google.rpc.Status"),
            (
                details_with("type.googleapis.com/acme.E", vec![0xff; 8]),
                "bad acme.E",
            ),
            (
                details_with("type.googleapis.com/acme.E", app_error("has space")),
                "invalid code",
            ),
            (
                details_with("type.googleapis.com/acme.E", {
                    // field 1 as bytes that are not UTF-8
                    vec![0x0a, 0x02, 0xff, 0xfe]
                }),
                "bad acme.E",
            ),
            (vec![b'A'; 1 << 20], "limit"),
            (vec![0xff, 0x00, 0x80], "bad base64"),
        ];
        for (value, expected) in cases {
            match code_from_details(&value, Some("acme.E")) {
                DetailsCode::Malformed(e) => assert!(e.contains(expected), "{e} !~ {expected}"),
                other => panic!("expected malformed ({expected}), got {other:?}"),
            }
        }
        assert_eq!(code_from_details(b"", None), DetailsCode::NoCode);
    }

    #[test]
    fn encoded_details_decode_back() {
        let v = encode_details(
            14,
            "Upstream connection failed",
            "MESH_UPSTREAM_CONNECT_FAILURE",
            &[("origin", "users")],
        );
        assert!(!v.contains('='), "unpadded");
        let status = RpcStatus::decode(BASE64.decode(&v).unwrap().as_slice()).unwrap();
        assert_eq!(status.code, 14);
        let info = ErrorInfo::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(info.reason, "MESH_UPSTREAM_CONNECT_FAILURE");
        assert_eq!(info.domain, "meshkit");
        assert_eq!(
            info.metadata.get("origin").map(String::as_str),
            Some("users")
        );
    }
}
