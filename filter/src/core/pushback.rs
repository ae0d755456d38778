//! Server pushback: an app that answers "not now" must not be retried at once.
//!
//! Two signals: `Retry-After` on a 429 or 503 (RFC 9110 §10.2.3; seconds or an HTTP date), and
//! gRPC's `grpc-retry-pushback-ms` (gRFC A6: a delay in milliseconds; negative or unreadable
//! means "do not retry"). meshkit's routers retry app errors only when the failing service's
//! sidecar marks them retryable, and Envoy has no field for the gRPC signal, so the app's own
//! sidecar honours both: a failure that asks for a delay is marked not retryable. The caller's
//! router then does not retry it, and no app up the chain is told it may. (meshkit cannot
//! delay a retry; it stops it. A delay of 0 allows the retry.)

use super::headers::HeaderSource;

pub const RETRY_AFTER: &str = "retry-after";
pub const GRPC_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Whether the response in `headers` (headers or trailers) asks callers to wait before
/// retrying. `status`: the HTTP status (`Retry-After` only counts on 429 and 503).
pub fn asks_to_wait(headers: &impl HeaderSource, status: u16) -> bool {
    if let Some(ms) = headers.header(GRPC_PUSHBACK) {
        let ms = std::str::from_utf8(&ms)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        if ms != Some(0) {
            return true;
        }
    }
    matches!(status, 429 | 503)
        && headers
            .header(RETRY_AFTER)
            .is_some_and(|v| v.trim_ascii() != b"0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::headers::StaticHeaders;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn h(name: &str, value: &str) -> StaticHeaders {
        StaticHeaders::default().with(name, value)
    }

    #[test]
    fn grpc_pushback_negative_or_garbage_is_do_not_retry_and_zero_allows() {
        for wait in ["-1", "250", "abc", "", "99999999999999999999"] {
            assert!(asks_to_wait(&h(GRPC_PUSHBACK, wait), 200), "{wait:?}");
        }
        assert!(!asks_to_wait(&h(GRPC_PUSHBACK, "0"), 200));
        assert!(!asks_to_wait(&StaticHeaders::default(), 503));
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        for value in ["5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"] {
            assert!(asks_to_wait(&h(RETRY_AFTER, value), 503), "{value}");
            assert!(asks_to_wait(&h(RETRY_AFTER, value), 429), "{value}");
            assert!(!asks_to_wait(&h(RETRY_AFTER, value), 500), "{value}");
        }
        assert!(!asks_to_wait(&h(RETRY_AFTER, " 0 "), 503));
    }
}
