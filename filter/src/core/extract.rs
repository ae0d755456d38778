//! Extracting the app's error code from its response, in a fixed order of preference:
//! (a) the configured response header, (b) gRPC `grpc-status-details-bin` (trailers or a
//! trailers-only response), (c) an `application/problem+json` body's `code` member.
//!
//! Everything read here is untrusted: sizes are bounded and every decoding failure becomes
//! [`Extracted::Malformed`], never a panic.

use super::config::ErrorSettings;
use super::error_code::is_valid_code;
use super::grpc_status::{code_from_details, DetailsCode};
use super::headers::HeaderSource;

/// Where a code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The app's error-code response header.
    Header,
    /// gRPC status details.
    GrpcDetails,
    /// An RFC 9457 problem+json body.
    ProblemJson,
    /// meshkit headers stamped by the upstream's sidecar (outbound side).
    Upstream,
    /// A remembered upstream failure attached to an app error that carried no code.
    Cause,
    /// A failure Envoy generated (connect failure, timeout, …).
    LocalReply,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::GrpcDetails => "grpc_details",
            Source::ProblemJson => "problem_json",
            Source::Upstream => "upstream",
            Source::Cause => "cause",
            Source::LocalReply => "local_reply",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    Code { code: String, source: Source },
    Malformed { source: Source, reason: String },
    Absent,
}

impl Extracted {
    /// `self` if it found something, else `next()`: the order of preference.
    pub fn or_else(self, next: impl FnOnce() -> Extracted) -> Extracted {
        match self {
            Extracted::Absent => next(),
            found => found,
        }
    }
}

/// (a) then (b): what a header map (response headers, or trailers) shows of the app's code.
pub fn from_app(headers: &impl HeaderSource, settings: &ErrorSettings) -> Extracted {
    from_header(headers, &settings.app_header)
        .or_else(|| from_grpc(headers, settings.grpc_detail_type.as_deref()))
}

/// (a) The app's error-code header.
pub fn from_header(headers: &impl HeaderSource, name: &str) -> Extracted {
    match headers.header(name) {
        None => Extracted::Absent,
        Some(v) if is_valid_code(v.trim_ascii()) => Extracted::Code {
            code: String::from_utf8_lossy(v.trim_ascii()).into_owned(),
            source: Source::Header,
        },
        Some(v) => Extracted::Malformed {
            source: Source::Header,
            reason: format!("{name} is not a valid code ({} bytes)", v.len()),
        },
    }
}

/// (b) `grpc-status-details-bin` in `headers` (trailers, or a trailers-only response).
pub fn from_grpc(headers: &impl HeaderSource, app_detail_type: Option<&str>) -> Extracted {
    let Some(v) = headers.header("grpc-status-details-bin") else {
        return Extracted::Absent;
    };
    match code_from_details(&v, app_detail_type) {
        DetailsCode::Found { code, .. } => Extracted::Code {
            code,
            source: Source::GrpcDetails,
        },
        DetailsCode::NoCode => Extracted::Absent,
        DetailsCode::Malformed(reason) => Extracted::Malformed {
            source: Source::GrpcDetails,
            reason,
        },
    }
}

/// Whether a `content-type` is `application/problem+json` (parameters ignored).
pub fn is_problem_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/problem+json")
}

/// (c) The `code` extension member of a problem+json body of at most `max_len` bytes.
pub fn from_problem_json(body: &[u8], max_len: usize) -> Extracted {
    let malformed = |reason: String| Extracted::Malformed {
        source: Source::ProblemJson,
        reason,
    };
    if body.len() > max_len {
        return malformed(format!("body is {} bytes (limit {max_len})", body.len()));
    }
    // Only the `code` member is read: serde skips every other member while parsing, so a big
    // body never becomes a DOM in the VM's memory (which never shrinks). serde_json bounds
    // nesting depth (128), so hostile bodies cannot exhaust the stack.
    let problem: ProblemCode = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return malformed(format!("not a problem+json object: {e}")),
    };
    match problem.code {
        None => Extracted::Absent,
        Some(CodeMember::Text(code)) if is_valid_code(code.as_bytes()) => Extracted::Code {
            code: code.into_owned(),
            source: Source::ProblemJson,
        },
        Some(_) => malformed("`code` is not a valid code string".into()),
    }
}

/// The one member of a problem+json body meshkit reads.
#[derive(serde::Deserialize)]
struct ProblemCode<'a> {
    #[serde(borrow, default)]
    code: Option<CodeMember<'a>>,
}

/// The `code` member: a string, or anything else (skipped without being built in memory).
enum CodeMember<'a> {
    Text(std::borrow::Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for CodeMember<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CodeVisitor)
    }
}

struct CodeVisitor;

impl<'de> serde::de::Visitor<'de> for CodeVisitor {
    type Value = CodeMember<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a code string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(CodeMember::Text(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(CodeMember::Text(std::borrow::Cow::Owned(v.to_string())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(CodeMember::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(CodeMember::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(CodeMember::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(CodeMember::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(CodeMember::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(CodeMember::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(CodeMember::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::headers::StaticHeaders;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn header_source() {
        let h = StaticHeaders::default().with("x-app-error-code", " CM503001 ");
        assert_eq!(
            from_header(&h, "x-app-error-code"),
            Extracted::Code {
                code: "CM503001".into(),
                source: Source::Header
            }
        );
        assert_eq!(from_header(&h, "x-other"), Extracted::Absent);
        for bad in [
            vec![0xffu8, 0xfe],
            vec![b'A'; 1 << 20],
            b"two words".to_vec(),
        ] {
            let h = StaticHeaders::default().with("x-app-error-code", bad);
            assert!(matches!(
                from_header(&h, "x-app-error-code"),
                Extracted::Malformed { .. }
            ));
        }
    }

    #[test]
    fn grpc_source() {
        let info = super::super::grpc_status::ErrorInfo {
            reason: "CM503001".into(),
            ..Default::default()
        };
        let v = crate::core::grpc_status::tests::details_with(
            "type.googleapis.com/google.rpc.ErrorInfo",
            prost::Message::encode_to_vec(&info),
        );
        let h = StaticHeaders::default().with("grpc-status-details-bin", v);
        assert!(
            matches!(from_grpc(&h, None), Extracted::Code { code, source: Source::GrpcDetails } if code == "CM503001")
        );
        let bad = StaticHeaders::default().with("grpc-status-details-bin", "%%%");
        assert!(matches!(from_grpc(&bad, None), Extracted::Malformed { .. }));
        assert_eq!(
            from_grpc(&StaticHeaders::default(), None),
            Extracted::Absent
        );
    }

    #[test]
    fn problem_json_source() {
        assert!(is_problem_json(b"application/problem+json; charset=utf-8"));
        assert!(is_problem_json(b"Application/Problem+JSON"));
        assert!(!is_problem_json(b"application/json"));
        let body = br#"{"type":"about:blank","status":503,"code":"CM503001"}"#;
        assert_eq!(
            from_problem_json(body, 1024),
            Extracted::Code {
                code: "CM503001".into(),
                source: Source::ProblemJson
            }
        );
        assert_eq!(
            from_problem_json(br#"{"status":500}"#, 1024),
            Extracted::Absent
        );
        for bad in [
            &br#"{"code":5}"#[..],
            br#"{"code":{"nested":[1,2,{"deep":"x"}]}}"#,
            br#"{"code":[1,2]}"#,
            b"{not json",
            b"\xff\xfe",
            br#"{"code":"a b"}"#,
        ] {
            assert!(
                matches!(from_problem_json(bad, 1024), Extracted::Malformed { .. }),
                "{bad:?}"
            );
        }
        assert!(
            matches!(from_problem_json(body, 10), Extracted::Malformed { .. }),
            "over the limit"
        );
        let deep = "[".repeat(100_000);
        assert!(matches!(
            from_problem_json(deep.as_bytes(), 1 << 20),
            Extracted::Malformed { .. }
        ));
    }

    #[test]
    fn the_header_wins_over_grpc_details() {
        let settings = ErrorSettings::default();
        let both = StaticHeaders::default()
            .with("x-app-error-code", "FROM_HEADER")
            .with("grpc-status-details-bin", "%%%");
        assert_eq!(
            from_app(&both, &settings),
            Extracted::Code {
                code: "FROM_HEADER".into(),
                source: Source::Header
            }
        );
        let grpc_only = StaticHeaders::default().with("grpc-status-details-bin", "%%%");
        assert!(matches!(
            from_app(&grpc_only, &settings),
            Extracted::Malformed {
                source: Source::GrpcDetails,
                ..
            }
        ));
    }

    #[test]
    fn order_of_preference() {
        let header = Extracted::Code {
            code: "A".into(),
            source: Source::Header,
        };
        assert_eq!(header.clone().or_else(|| Extracted::Absent), header);
        assert_eq!(Extracted::Absent.or_else(|| header.clone()), header);
    }
}
