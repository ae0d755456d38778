//! W3C Trace Context (`traceparent`) parsing, <https://www.w3.org/TR/trace-context/#traceparent-header>.
//!
//! The header is untrusted: anything that is not exactly the specified shape yields `None`
//! (the request is logged without trace ids), never a panic and never a partial id.

/// The ids carried by a valid `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span: 16 lower-case hex digits, not all zero.
    pub parent_span_id: String,
    /// Bit 0 of trace-flags.
    pub sampled: bool,
}

/// `version "-" trace-id "-" parent-id "-" trace-flags` = 2 + 1 + 32 + 1 + 16 + 1 + 2.
const VERSION_00_LEN: usize = 55;

/// Parses a `traceparent` value. Version `00` must be exactly 55 bytes; a higher version may
/// append fields after a `-` (forward compatibility rule of the spec); version `ff` is invalid.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceContext> {
    let head = value.get(..VERSION_00_LEN)?;
    let version = &head[0..2];
    if !is_lower_hex(version) || version == b"ff" {
        return None;
    }
    let rest_ok = if version == b"00" {
        value.len() == VERSION_00_LEN
    } else {
        value.len() == VERSION_00_LEN || value.get(VERSION_00_LEN) == Some(&b'-')
    };
    if !rest_ok || head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let (trace_id, parent, flags) = (&head[3..35], &head[36..52], &head[53..55]);
    if !is_lower_hex(trace_id) || !is_lower_hex(parent) || !is_lower_hex(flags) {
        return None;
    }
    if all_zero(trace_id) || all_zero(parent) {
        return None;
    }
    Some(TraceContext {
        trace_id: ascii(trace_id),
        parent_span_id: ascii(parent),
        sampled: hex_value(flags[1]) & 1 == 1,
    })
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'0')
}

/// Only called on bytes already checked to be lower-case hex, hence ASCII.
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tc = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(tc.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.parent_span_id, "00f067aa0ba902b7");
        assert!(tc.sampled);
    }

    #[test]
    fn unsampled_flag() {
        let v = VALID.replace("-01", "-00");
        assert!(!parse_traceparent(v.as_bytes()).unwrap().sampled);
    }

    #[test]
    fn rejects_malformed_values() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"00".to_vec(),
            VALID.as_bytes()[..54].to_vec(),              // truncated
            format!("{VALID}-extra").into_bytes(),        // v00 must be exact
            VALID.replace("00-4b", "ff-4b").into_bytes(), // forbidden version
            VALID.to_uppercase().into_bytes(),            // upper-case hex
            VALID.replace('-', "_").into_bytes(),         // wrong separators
            VALID
                .replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32))
                .into_bytes(),
            VALID
                .replace("00f067aa0ba902b7", &"0".repeat(16))
                .into_bytes(),
            VALID.replace("4bf9", "4bg9").into_bytes(), // non-hex
            {
                let mut v = VALID.as_bytes().to_vec();
                v[10] = 0xff; // non-UTF-8
                v
            },
            vec![b'0'; 1 << 20], // 1 MiB header
        ];
        for case in cases {
            assert_eq!(
                parse_traceparent(&case),
                None,
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn future_versions_may_append_fields() {
        let v = VALID.replacen("00", "01", 1);
        assert!(parse_traceparent(v.as_bytes()).is_some());
        assert!(parse_traceparent(format!("{v}-what-comes-next").as_bytes()).is_some());
        assert!(parse_traceparent(format!("{v}x").as_bytes()).is_none());
    }
}
