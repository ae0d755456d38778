//! The decision: given what a response showed, which error (if any) this sidecar reports, and
//! on whose behalf.
//!
//! request → extract → classify → **decide** → record (headers, cause table, log, metrics).

use super::catalog::{Catalog, Classification};
use super::cause_table::Cause;
use super::config::Direction;
use super::error_code::{Blame, MeshCode};
use super::extract::{Extracted, Source};

/// The error a sidecar reports for one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// `None` only for a malformed report with no cause to fall back on.
    pub code: Option<String>,
    /// The service that first returned the error.
    pub origin: String,
    pub retryable: bool,
    pub classification: Classification,
    pub source: Source,
    /// The upstream failure this service saw while handling the request, if any.
    pub cause: Option<Cause>,
    /// Why extraction failed, for malformed reports.
    pub malformed: Option<String>,
}

/// meshkit headers an upstream's sidecar stamped on its response (outbound side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagated {
    pub code: String,
    pub origin: String,
    /// As the upstream's sidecar decided it (which layer retries is its call, see
    /// `RetryLayers`), not recomputed from this sidecar's catalog.
    pub retryable: bool,
    pub cause: Option<Cause>,
}

/// What the host observed about one response.
#[derive(Debug, Clone)]
pub struct ResponseFacts {
    pub direction: Direction,
    /// This sidecar's service.
    pub service: String,
    /// The upstream service on the outbound side (the cluster the router used).
    pub upstream: Option<String>,
    /// Set when Envoy generated the response itself.
    pub local_reply: Option<MeshCode>,
    /// The app's own code (inbound side).
    pub extracted: Extracted,
    /// What the upstream's sidecar stamped (outbound side).
    pub propagated: Option<Propagated>,
    /// A remembered upstream failure for this request (inbound side).
    pub remembered: Option<Cause>,
    /// HTTP status ≥ 400, or a non-OK gRPC status.
    pub is_error: bool,
}

pub fn decide(catalog: &Catalog, facts: ResponseFacts) -> Option<ErrorReport> {
    let report = |code: String, origin: String, source: Source, cause: Option<Cause>| {
        Some(ErrorReport {
            retryable: catalog.retryable(&code),
            classification: catalog.classify(&code),
            code: Some(code),
            origin,
            source,
            cause,
            malformed: None,
        })
    };

    if let Some(mesh) = facts.local_reply {
        let origin = match (mesh.blame(), facts.direction, &facts.upstream) {
            (Blame::Upstream, Direction::Outbound, Some(up)) => up.clone(),
            // Inbound: the "upstream" is this service's own app.
            _ => facts.service.clone(),
        };
        return report(
            mesh.name().into(),
            origin,
            Source::LocalReply,
            facts.remembered,
        );
    }

    // A code on a successful response is not an error (and must not become a remembered
    // cause that a later failure gets blamed on).
    if !facts.is_error {
        return None;
    }
    match facts.direction {
        Direction::Outbound => {
            let p = facts.propagated?;
            report(p.code, p.origin, Source::Upstream, p.cause).map(|r| ErrorReport {
                retryable: p.retryable,
                ..r
            })
        }
        Direction::Inbound => match facts.extracted {
            Extracted::Code { code, source } => {
                report(code, facts.service, source, facts.remembered)
            }
            extracted => {
                if let Some(cause) = facts.remembered {
                    // The app failed without a code of its own while handling a request whose
                    // upstream call failed: report the upstream failure as the origin.
                    return report(
                        cause.code.clone(),
                        cause.origin.clone(),
                        Source::Cause,
                        Some(cause),
                    );
                }
                match extracted {
                    Extracted::Malformed { source, reason } => Some(ErrorReport {
                        code: None,
                        origin: facts.service,
                        retryable: false,
                        classification: Classification::Malformed,
                        source,
                        cause: None,
                        malformed: Some(reason),
                    }),
                    _ => None,
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::CatalogEntry;
    use crate::core::error_code::GrpcStatus;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn catalog() -> Catalog {
        Catalog::new(&[CatalogEntry {
            code: "CM503001".into(),
            http_status: 503,
            grpc_status: GrpcStatus::Unavailable,
            retryable: true,
            message: "unavailable".into(),
        }])
    }

    fn facts(direction: Direction) -> ResponseFacts {
        ResponseFacts {
            direction,
            service: "recipes".into(),
            upstream: Some("users".into()),
            local_reply: None,
            extracted: Extracted::Absent,
            propagated: None,
            remembered: None,
            is_error: true,
        }
    }

    fn users_cause() -> Cause {
        Cause {
            origin: "users".into(),
            code: "CM503001".into(),
        }
    }

    #[test]
    fn app_code_is_reported_with_this_service_as_origin() {
        let f = ResponseFacts {
            extracted: Extracted::Code {
                code: "CM503001".into(),
                source: Source::Header,
            },
            ..facts(Direction::Inbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!(r.code.as_deref(), Some("CM503001"));
        assert_eq!(r.origin, "recipes");
        assert!(r.retryable);
        assert_eq!(r.classification, Classification::Catalog);
    }

    #[test]
    fn a_plain_500_gets_the_remembered_upstream_cause() {
        let f = ResponseFacts {
            remembered: Some(users_cause()),
            ..facts(Direction::Inbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!(
            (r.code.as_deref(), r.origin.as_str()),
            (Some("CM503001"), "users")
        );
        assert_eq!(r.source, Source::Cause);
        assert_eq!(r.cause, Some(users_cause()));
    }

    #[test]
    fn the_apps_own_code_wins_and_keeps_the_cause() {
        let f = ResponseFacts {
            extracted: Extracted::Code {
                code: "XX9".into(),
                source: Source::Header,
            },
            remembered: Some(users_cause()),
            ..facts(Direction::Inbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!(
            (r.code.as_deref(), r.origin.as_str()),
            (Some("XX9"), "recipes")
        );
        assert_eq!(r.classification, Classification::Unknown);
        assert!(!r.retryable);
        assert_eq!(r.cause, Some(users_cause()));
    }

    #[test]
    fn local_replies_blame_the_upstream_or_the_sidecar() {
        let f = ResponseFacts {
            local_reply: Some(MeshCode::UpstreamConnectFailure),
            ..facts(Direction::Outbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!(r.code.as_deref(), Some("MESH_UPSTREAM_CONNECT_FAILURE"));
        assert_eq!(r.origin, "users");
        assert_eq!(r.classification, Classification::Mesh);
        assert!(r.retryable);

        let f = ResponseFacts {
            local_reply: Some(MeshCode::NoRoute),
            ..facts(Direction::Outbound)
        };
        assert_eq!(decide(&catalog(), f).unwrap().origin, "recipes");

        // Inbound: the app behind this sidecar is the one that failed.
        let f = ResponseFacts {
            local_reply: Some(MeshCode::UpstreamTimeout),
            ..facts(Direction::Inbound)
        };
        assert_eq!(decide(&catalog(), f).unwrap().origin, "recipes");
    }

    #[test]
    fn outbound_reports_what_the_upstream_sidecar_stamped() {
        let f = ResponseFacts {
            propagated: Some(Propagated {
                code: "CM503001".into(),
                origin: "users".into(),
                retryable: false,
                cause: None,
            }),
            ..facts(Direction::Outbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!((r.origin.as_str(), r.source), ("users", Source::Upstream));
        assert!(
            !r.retryable,
            "the upstream sidecar's verdict, though the catalog says retryable"
        );
        assert_eq!(decide(&catalog(), facts(Direction::Outbound)), None);
    }

    #[test]
    fn a_code_on_a_success_is_not_an_error() {
        let f = ResponseFacts {
            extracted: Extracted::Code {
                code: "CM503001".into(),
                source: Source::Header,
            },
            is_error: false,
            ..facts(Direction::Inbound)
        };
        assert_eq!(decide(&catalog(), f), None);
        let f = ResponseFacts {
            propagated: Some(Propagated {
                code: "CM503001".into(),
                origin: "users".into(),
                retryable: true,
                cause: None,
            }),
            is_error: false,
            ..facts(Direction::Outbound)
        };
        assert_eq!(decide(&catalog(), f), None);
    }

    #[test]
    fn successes_and_codeless_errors_report_nothing_but_malformed_is_flagged() {
        let ok = ResponseFacts {
            is_error: false,
            ..facts(Direction::Inbound)
        };
        assert_eq!(decide(&catalog(), ok), None);
        assert_eq!(decide(&catalog(), facts(Direction::Inbound)), None);
        let f = ResponseFacts {
            extracted: Extracted::Malformed {
                source: Source::GrpcDetails,
                reason: "bad base64".into(),
            },
            ..facts(Direction::Inbound)
        };
        let r = decide(&catalog(), f).unwrap();
        assert_eq!(r.code, None);
        assert_eq!(r.classification, Classification::Malformed);
    }
}
