//! Error codes: the syntax of application codes, gRPC status names, and meshkit's built-in mesh
//! codes for failures Envoy itself produces (keyed off Envoy's response flags).

use serde::{Deserialize, Serialize};

/// Longest application code carried. Codes are metric label values and header values, so they
/// are short identifiers, never free text.
pub const MAX_CODE_LEN: usize = 64;

/// `[A-Za-z0-9][A-Za-z0-9_.-]*` without empty dot-separated segments, at most [`MAX_CODE_LEN`]
/// bytes. Anything else read from traffic is "malformed", never carried.
pub fn is_valid_code(code: &[u8]) -> bool {
    matches!(code.first(), Some(b) if b.is_ascii_alphanumeric())
        && code.len() <= MAX_CODE_LEN
        && code
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        // Dots separate segments, none empty: the code is kept whole in metric names.
        && !code.ends_with(b".")
        && !code.windows(2).any(|w| w == b"..")
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

/// Envoy response flag bits as exposed by the `response.flags` property: `1 << n` for Envoy's
/// `StreamInfo::CoreResponseFlag` number n (the order of `ResponseFlagFilter` in the API).
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4; // UT
    pub const LOCAL_RESET: u64 = 0x8; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 0x80; // UO
    pub const NO_ROUTE_FOUND: u64 = 0x100; // NR
    pub const FAULT_INJECTED: u64 = 0x400; // FI
    pub const RATE_LIMITED: u64 = 0x800; // RL
    pub const UNAUTHORIZED_EXTERNAL_SERVICE: u64 = 0x1000; // UAEX
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000; // URX
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x1_0000; // SI
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 0x8_0000; // UMSDR
    pub const DURATION_TIMEOUT: u64 = 0x40_0000; // DT
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000; // UPE
    pub const NO_CLUSTER_FOUND: u64 = 0x100_0000; // NC
    pub const OVERLOAD_MANAGER: u64 = 0x200_0000; // OM
    pub const DNS_RESOLUTION_FAILED: u64 = 0x400_0000; // DF
}

/// Failures the mesh itself reports, with stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshCode {
    NoRoute,
    RateLimited,
    Unauthorized,
    Overloaded,
    FaultInjected,
    UpstreamOverflow,
    NoHealthyUpstream,
    DnsResolutionFailed,
    UpstreamTimeout,
    IdleTimeout,
    RequestTimeout,
    UpstreamConnectFailure,
    UpstreamProtocolError,
    UpstreamReset,
    RetryLimitExceeded,
    /// Envoy replied itself for a reason none of the above names.
    LocalReply,
}

/// Who a mesh failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The upstream that could not be reached or answered too slowly.
    Upstream,
    /// The sidecar that refused the request itself (no route, rate limit, overload).
    Sidecar,
}

/// Everything about one mesh code, in one row.
struct Row {
    code: MeshCode,
    name: &'static str,
    title: &'static str,
    flags: &'static str,
    http: u16,
    grpc: GrpcStatus,
    retryable: bool,
    blame: Blame,
}

#[allow(clippy::too_many_arguments)] // one argument per column of the table below
const fn row(
    code: MeshCode,
    name: &'static str,
    title: &'static str,
    flags: &'static str,
    http: u16,
    grpc: GrpcStatus,
    retryable: bool,
    blame: Blame,
) -> Row {
    Row {
        code,
        name,
        title,
        flags,
        http,
        grpc,
        retryable,
        blame,
    }
}

use Blame::{Sidecar, Upstream};
use GrpcStatus as G;

/// Overload signals (circuit open, rate limit, overload) are not retryable: retrying them is
/// what turns overload into an outage.
#[rustfmt::skip]
const ROWS: [Row; 16] = [
    row(MeshCode::NoRoute, "MESH_NO_ROUTE", "No route to an upstream", "NR, NC", 404, G::Unimplemented, false, Sidecar),
    row(MeshCode::RateLimited, "MESH_RATE_LIMITED", "Rate limited by the mesh", "RL", 429, G::ResourceExhausted, false, Sidecar),
    row(MeshCode::Unauthorized, "MESH_UNAUTHORIZED", "Refused by external authorization", "UAEX", 403, G::PermissionDenied, false, Sidecar),
    row(MeshCode::Overloaded, "MESH_OVERLOADED", "Sidecar overloaded", "OM", 503, G::Unavailable, false, Sidecar),
    row(MeshCode::FaultInjected, "MESH_FAULT_INJECTED", "Fault injected", "FI", 503, G::Unavailable, false, Sidecar),
    row(MeshCode::UpstreamOverflow, "MESH_UPSTREAM_OVERFLOW", "Upstream circuit open (overflow)", "UO", 503, G::Unavailable, false, Upstream),
    row(MeshCode::NoHealthyUpstream, "MESH_NO_HEALTHY_UPSTREAM", "No healthy upstream", "UH", 503, G::Unavailable, true, Upstream),
    row(MeshCode::DnsResolutionFailed, "MESH_DNS_RESOLUTION_FAILED", "Upstream name did not resolve", "DF", 503, G::Unavailable, true, Upstream),
    row(MeshCode::UpstreamTimeout, "MESH_UPSTREAM_TIMEOUT", "Upstream timed out", "UT, UMSDR", 504, G::DeadlineExceeded, true, Upstream),
    row(MeshCode::IdleTimeout, "MESH_IDLE_TIMEOUT", "Stream idle timeout", "SI", 504, G::DeadlineExceeded, false, Upstream),
    row(MeshCode::RequestTimeout, "MESH_REQUEST_TIMEOUT", "Request exceeded its maximum duration", "DT", 408, G::DeadlineExceeded, false, Sidecar),
    row(MeshCode::UpstreamConnectFailure, "MESH_UPSTREAM_CONNECT_FAILURE", "Upstream connection failed", "UF", 503, G::Unavailable, true, Upstream),
    row(MeshCode::UpstreamProtocolError, "MESH_UPSTREAM_PROTOCOL_ERROR", "Upstream protocol error", "UPE", 502, G::Unavailable, false, Upstream),
    row(MeshCode::UpstreamReset, "MESH_UPSTREAM_RESET", "Upstream connection reset", "UR, UC, LR", 503, G::Unavailable, true, Upstream),
    row(MeshCode::RetryLimitExceeded, "MESH_RETRY_LIMIT_EXCEEDED", "Retry limit exceeded", "URX", 503, G::Unavailable, false, Upstream),
    row(MeshCode::LocalReply, "MESH_LOCAL_REPLY", "Envoy replied itself", "(none of the above)", 503, G::Unknown, false, Sidecar),
];

impl MeshCode {
    pub const ALL: [MeshCode; 16] = {
        let mut all = [MeshCode::LocalReply; 16];
        let mut i = 0;
        while i < ROWS.len() {
            all[i] = ROWS[i].code;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        // ROWS lists every variant once (tested), so the fallback is never taken.
        ROWS.iter()
            .find(|r| r.code == self)
            .unwrap_or(&ROWS[ROWS.len() - 1])
    }

    /// The stable name, as carried in headers, logs and metrics.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn from_name(name: &str) -> Option<MeshCode> {
        ROWS.iter().find(|r| r.name == name).map(|r| r.code)
    }

    pub fn title(self) -> &'static str {
        self.row().title
    }

    /// The Envoy response flags that map to this code (documentation, `meshkit explain`).
    pub fn envoy_flags(self) -> &'static str {
        self.row().flags
    }

    pub fn http_status(self) -> u16 {
        self.row().http
    }

    pub fn grpc_status(self) -> GrpcStatus {
        self.row().grpc
    }

    /// Whether a caller may retry.
    pub fn retryable(self) -> bool {
        self.row().retryable
    }

    pub fn blame(self) -> Blame {
        self.row().blame
    }

    /// The mesh code for a response Envoy generated, from its response flags. The most specific
    /// cause wins: with `UF,URX` the connect failure is reported, not the exhausted retries.
    pub fn from_response_flags(bits: u64) -> Option<MeshCode> {
        use flags::*;
        const ORDER: [(u64, MeshCode); 19] = [
            (NO_ROUTE_FOUND, MeshCode::NoRoute),
            (NO_CLUSTER_FOUND, MeshCode::NoRoute),
            (RATE_LIMITED, MeshCode::RateLimited),
            (UNAUTHORIZED_EXTERNAL_SERVICE, MeshCode::Unauthorized),
            (OVERLOAD_MANAGER, MeshCode::Overloaded),
            (FAULT_INJECTED, MeshCode::FaultInjected),
            (UPSTREAM_OVERFLOW, MeshCode::UpstreamOverflow),
            (NO_HEALTHY_UPSTREAM, MeshCode::NoHealthyUpstream),
            (DNS_RESOLUTION_FAILED, MeshCode::DnsResolutionFailed),
            (UPSTREAM_REQUEST_TIMEOUT, MeshCode::UpstreamTimeout),
            (
                UPSTREAM_MAX_STREAM_DURATION_REACHED,
                MeshCode::UpstreamTimeout,
            ),
            (STREAM_IDLE_TIMEOUT, MeshCode::IdleTimeout),
            (DURATION_TIMEOUT, MeshCode::RequestTimeout),
            (
                UPSTREAM_CONNECTION_FAILURE,
                MeshCode::UpstreamConnectFailure,
            ),
            (UPSTREAM_PROTOCOL_ERROR, MeshCode::UpstreamProtocolError),
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
            b"a..b",
            b"a.",
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
        let mut names: Vec<&str> = MeshCode::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            MeshCode::ALL.len(),
            "every variant has its own row"
        );
        for c in MeshCode::ALL {
            assert_eq!(c.row().code, c);
        }
    }

    #[test]
    fn every_failure_flag_envoy_sets_has_a_code() {
        use flags::*;
        let f = MeshCode::from_response_flags;
        for (bit, code) in [
            (UPSTREAM_PROTOCOL_ERROR, MeshCode::UpstreamProtocolError),
            (
                UPSTREAM_MAX_STREAM_DURATION_REACHED,
                MeshCode::UpstreamTimeout,
            ),
            (DNS_RESOLUTION_FAILED, MeshCode::DnsResolutionFailed),
            (OVERLOAD_MANAGER, MeshCode::Overloaded),
            (STREAM_IDLE_TIMEOUT, MeshCode::IdleTimeout),
            (DURATION_TIMEOUT, MeshCode::RequestTimeout),
            (UNAUTHORIZED_EXTERNAL_SERVICE, MeshCode::Unauthorized),
            (FAULT_INJECTED, MeshCode::FaultInjected),
        ] {
            assert_eq!(f(bit), Some(code), "{bit:#x}");
        }
        assert!(!MeshCode::Overloaded.retryable());
        assert_eq!(MeshCode::Overloaded.blame(), Blame::Sidecar);
        assert_eq!(MeshCode::LocalReply.grpc_status(), GrpcStatus::Unknown);
    }

    #[test]
    fn grpc_status_names() {
        let s: GrpcStatus = serde_json::from_str("\"UNAVAILABLE\"").unwrap();
        assert_eq!(s.code(), 14);
        assert_eq!(s.name(), "UNAVAILABLE");
        assert!(serde_json::from_str::<GrpcStatus>("\"unavailable\"").is_err());
    }
}
