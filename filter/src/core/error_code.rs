//! Error codes: the syntax of application codes, gRPC status names, and meshkit's built-in mesh
//! codes for failures Envoy itself produces (keyed off Envoy's response flags).

use serde::{Deserialize, Serialize};

/// Longest application code carried. Codes are metric label values and header values, so they
/// are short identifiers, never free text.
pub const MAX_CODE_LEN: usize = 64;

/// `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most [`MAX_CODE_LEN`] bytes. Anything else read from
/// traffic is "malformed", never carried.
pub fn is_valid_code(code: &[u8]) -> bool {
    matches!(code.first(), Some(b) if b.is_ascii_alphanumeric())
        && code.len() <= MAX_CODE_LEN
        && code
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// gRPC status codes (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>), named as in
/// the spec (`UNAVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrpcStatus {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcStatus {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The name as written in the spec, e.g. `UNAVAILABLE`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Envoy response flag bits as exposed by the `response.flags` property (Envoy's
/// `StreamInfo::CoreResponseFlag` order).
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4; // UT
    pub const LOCAL_RESET: u64 = 0x8; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 0x80; // UO
    pub const NO_ROUTE_FOUND: u64 = 0x100; // NR
    pub const RATE_LIMITED: u64 = 0x800; // RL
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000; // URX
    pub const NO_CLUSTER_FOUND: u64 = 0x0100_0000; // NC
}

/// Failures the mesh itself reports, with stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshCode {
    NoRoute,
    RateLimited,
    UpstreamOverflow,
    NoHealthyUpstream,
    UpstreamTimeout,
    UpstreamConnectFailure,
    UpstreamReset,
    RetryLimitExceeded,
    RetryBudgetExhausted,
}

/// Who a mesh failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The upstream that could not be reached or answered too slowly.
    Upstream,
    /// The sidecar that refused the request itself (no route, rate limit).
    Sidecar,
}

impl MeshCode {
    pub const ALL: [MeshCode; 9] = [
        MeshCode::NoRoute,
        MeshCode::RateLimited,
        MeshCode::UpstreamOverflow,
        MeshCode::NoHealthyUpstream,
        MeshCode::UpstreamTimeout,
        MeshCode::UpstreamConnectFailure,
        MeshCode::UpstreamReset,
        MeshCode::RetryLimitExceeded,
        MeshCode::RetryBudgetExhausted,
    ];

    /// The stable name, as carried in headers, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            MeshCode::NoRoute => "MESH_NO_ROUTE",
            MeshCode::RateLimited => "MESH_RATE_LIMITED",
            MeshCode::UpstreamOverflow => "MESH_UPSTREAM_OVERFLOW",
            MeshCode::NoHealthyUpstream => "MESH_NO_HEALTHY_UPSTREAM",
            MeshCode::UpstreamTimeout => "MESH_UPSTREAM_TIMEOUT",
            MeshCode::UpstreamConnectFailure => "MESH_UPSTREAM_CONNECT_FAILURE",
            MeshCode::UpstreamReset => "MESH_UPSTREAM_RESET",
            MeshCode::RetryLimitExceeded => "MESH_RETRY_LIMIT_EXCEEDED",
            MeshCode::RetryBudgetExhausted => "MESH_RETRY_BUDGET_EXHAUSTED",
        }
    }

    pub fn from_name(name: &str) -> Option<MeshCode> {
        MeshCode::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            MeshCode::NoRoute => "No route to an upstream",
            MeshCode::RateLimited => "Rate limited by the mesh",
            MeshCode::UpstreamOverflow => "Upstream circuit open (overflow)",
            MeshCode::NoHealthyUpstream => "No healthy upstream",
            MeshCode::UpstreamTimeout => "Upstream timed out",
            MeshCode::UpstreamConnectFailure => "Upstream connection failed",
            MeshCode::UpstreamReset => "Upstream connection reset",
            MeshCode::RetryLimitExceeded => "Retry limit exceeded",
            MeshCode::RetryBudgetExhausted => "Retry budget exhausted",
        }
    }

    /// The Envoy response flags that map to this code (documentation, `meshkit explain`).
    pub fn envoy_flags(self) -> &'static str {
        match self {
            MeshCode::NoRoute => "NR, NC",
            MeshCode::RateLimited => "RL",
            MeshCode::UpstreamOverflow => "UO",
            MeshCode::NoHealthyUpstream => "UH",
            MeshCode::UpstreamTimeout => "UT",
            MeshCode::UpstreamConnectFailure => "UF",
            MeshCode::UpstreamReset => "UR, UC, LR",
            MeshCode::RetryLimitExceeded => "URX",
            MeshCode::RetryBudgetExhausted => "(meshkit retry budget)",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            MeshCode::NoRoute => 404,
            MeshCode::RateLimited => 429,
            MeshCode::UpstreamTimeout => 504,
            _ => 503,
        }
    }

    pub fn grpc_status(self) -> GrpcStatus {
        match self {
            MeshCode::NoRoute => GrpcStatus::Unimplemented,
            MeshCode::RateLimited | MeshCode::RetryBudgetExhausted => GrpcStatus::ResourceExhausted,
            MeshCode::UpstreamTimeout => GrpcStatus::DeadlineExceeded,
            _ => GrpcStatus::Unavailable,
        }
    }

    /// Whether a caller may retry. Overload signals (circuit open, rate limit, exhausted
    /// budget) are not retryable: retrying them is what turns overload into an outage.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            MeshCode::UpstreamConnectFailure
                | MeshCode::UpstreamReset
                | MeshCode::NoHealthyUpstream
                | MeshCode::UpstreamTimeout
        )
    }

    pub fn blame(self) -> Blame {
        match self {
            MeshCode::NoRoute | MeshCode::RateLimited | MeshCode::RetryBudgetExhausted => {
                Blame::Sidecar
            }
            _ => Blame::Upstream,
        }
    }

    /// The mesh code for a response Envoy generated, from its response flags. The most specific
    /// cause wins: with `UF,URX` the connect failure is reported, not the exhausted retries.
    pub fn from_response_flags(bits: u64) -> Option<MeshCode> {
        use flags::*;
        const ORDER: [(u64, MeshCode); 11] = [
            (NO_ROUTE_FOUND, MeshCode::NoRoute),
            (NO_CLUSTER_FOUND, MeshCode::NoRoute),
            (RATE_LIMITED, MeshCode::RateLimited),
            (UPSTREAM_OVERFLOW, MeshCode::UpstreamOverflow),
            (NO_HEALTHY_UPSTREAM, MeshCode::NoHealthyUpstream),
            (UPSTREAM_REQUEST_TIMEOUT, MeshCode::UpstreamTimeout),
            (
                UPSTREAM_CONNECTION_FAILURE,
                MeshCode::UpstreamConnectFailure,
            ),
            (UPSTREAM_REMOTE_RESET, MeshCode::UpstreamReset),
            (UPSTREAM_CONNECTION_TERMINATION, MeshCode::UpstreamReset),
            (LOCAL_RESET, MeshCode::UpstreamReset),
            (UPSTREAM_RETRY_LIMIT_EXCEEDED, MeshCode::RetryLimitExceeded),
        ];
        ORDER
            .iter()
            .find(|(bit, _)| bits & bit != 0)
            .map(|(_, code)| *code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn code_syntax() {
        assert!(is_valid_code(b"CM503001"));
        assert!(is_valid_code(b"orders.not-found_1"));
        for bad in [
            &b""[..],
            b"-x",
            b"has space",
            b"\xff\xfe",
            b"a\nb",
            &[b'A'; 65],
        ] {
            assert!(!is_valid_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn flags_map_to_the_most_specific_code() {
        use flags::*;
        let f = MeshCode::from_response_flags;
        assert_eq!(
            f(UPSTREAM_CONNECTION_FAILURE),
            Some(MeshCode::UpstreamConnectFailure)
        );
        assert_eq!(
            f(UPSTREAM_CONNECTION_FAILURE | UPSTREAM_RETRY_LIMIT_EXCEEDED),
            Some(MeshCode::UpstreamConnectFailure)
        );
        assert_eq!(
            f(UPSTREAM_RETRY_LIMIT_EXCEEDED),
            Some(MeshCode::RetryLimitExceeded)
        );
        assert_eq!(f(UPSTREAM_REQUEST_TIMEOUT), Some(MeshCode::UpstreamTimeout));
        assert_eq!(f(NO_ROUTE_FOUND), Some(MeshCode::NoRoute));
        assert_eq!(f(UPSTREAM_OVERFLOW), Some(MeshCode::UpstreamOverflow));
        assert_eq!(f(LOCAL_RESET), Some(MeshCode::UpstreamReset));
        assert_eq!(f(0), None);
        assert_eq!(f(0x200), None, "DI (delay injected) is not a failure");
        assert_eq!(f(u64::MAX), Some(MeshCode::NoRoute));
    }

    #[test]
    fn names_are_stable_valid_codes_and_round_trip() {
        for c in MeshCode::ALL {
            assert!(is_valid_code(c.name().as_bytes()));
            assert_eq!(MeshCode::from_name(c.name()), Some(c));
        }
        assert_eq!(
            MeshCode::UpstreamConnectFailure.name(),
            "MESH_UPSTREAM_CONNECT_FAILURE"
        );
        assert_eq!(
            MeshCode::RetryBudgetExhausted.name(),
            "MESH_RETRY_BUDGET_EXHAUSTED"
        );
    }

    #[test]
    fn grpc_status_names() {
        let s: GrpcStatus = serde_json::from_str("\"UNAVAILABLE\"").unwrap();
        assert_eq!(s.code(), 14);
        assert_eq!(s.name(), "UNAVAILABLE");
        assert!(serde_json::from_str::<GrpcStatus>("\"unavailable\"").is_err());
    }
}
