//! The mesh's alert rules. Each names where the trouble started: the origin service of the
//! errors, or the upstream whose failures use up the budget or whose instances are all down.

use std::collections::BTreeMap;

use super::metrics as m;
use super::prometheus::{AlertRule, RuleFile, RuleGroup};
use super::promql::{eq, max_by, rate, re, selector, sum_by};
use crate::model::Mesh;

/// Thresholds and durations of the rules. The defaults suit production; tests shorten the
/// durations to see each rule fire in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertOptions {
    /// A service's share of failed inbound requests above which it alerts.
    pub error_ratio: f64,
    /// The window error ratios and unknown codes are computed over.
    pub window: String,
    /// How long a condition holds before its alert fires.
    pub error_ratio_for: String,
    pub budget_exhausted_for: String,
    pub no_healthy_for: String,
    /// Errors with codes the catalog does not list, per origin and code in `window`.
    pub unknown_codes: u32,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            error_ratio: 0.05,
            window: "5m".into(),
            error_ratio_for: "2m".into(),
            budget_exhausted_for: "1m".into(),
            no_healthy_for: "30s".into(),
            unknown_codes: 10,
        }
    }
}

pub const ERROR_RATIO: &str = "MeshkitErrorRatioHigh";
pub const BUDGET_EXHAUSTED: &str = "MeshkitRetryBudgetExhausted";
pub const UNKNOWN_CODES: &str = "MeshkitUnknownErrorCodes";
pub const NO_HEALTHY_UPSTREAM: &str = "MeshkitNoHealthyUpstream";

pub fn rules(mesh: &Mesh, options: &AlertOptions) -> RuleFile {
    let w = options.window.as_str();
    let inbound_errors = selector(m::ERRORS, &[eq("direction", "inbound")]);
    let inbound_requests = selector(
        m::DOWNSTREAM_RQ,
        &[eq("envoy_http_conn_manager_prefix", "inbound")],
    );
    let upstreams = super::mesh_upstreams(mesh);

    // Per service and origin: the origin's share of the service's requests, for services whose
    // errors in all exceed the threshold.
    let requests = sum_by(&["service"], &rate(&inbound_requests, w));
    let error_ratio = format!(
        "{per_origin} / on (service) group_left {requests}\n  and on (service)\n({all} / {requests} > {t})",
        per_origin = sum_by(&["service", "origin"], &rate(&inbound_errors, w)),
        all = sum_by(&["service"], &rate(&inbound_errors, w)),
        t = options.error_ratio,
    );
    let budget = format!(
        "{} > 0",
        sum_by(
            &["service", "upstream"],
            &rate(&selector(m::RETRY_DENIED, &[]), "1m")
        )
    );
    // A code's series starts when its first error is counted, so `increase` (which needs two
    // samples) would miss a burst of a new code: a series younger than the window counts
    // whole, and so does one whose counter restarted in the window (a restarted sidecar: its
    // negative difference would pull the sum down). Every hop on the path counts the same
    // error: each service's count is summed over its instances (replicas split it), and the
    // largest service's is the origin's.
    let unknown_errors = selector(
        m::ERRORS,
        &[eq("direction", "inbound"), eq("classification", "unknown")],
    );
    let unknown = format!(
        "{} > {}",
        max_by(
            &["origin", "code"],
            &sum_by(
                &["service", "origin", "code"],
                &format!(
                    "({unknown_errors} - {unknown_errors} offset {w}) >= 0 or {unknown_errors}"
                )
            )
        ),
        options.unknown_codes
    );
    let no_healthy = format!(
        "{} == 0",
        sum_by(
            &["service", "upstream"],
            &selector(m::CLUSTER_HEALTHY, &[re("upstream", upstreams)])
        )
    );

    let rule = |alert: &str,
                expr: String,
                for_: &str,
                severity: &str,
                summary: String,
                description: &str| AlertRule {
        alert: alert.into(),
        expr,
        for_: for_.into(),
        labels: BTreeMap::from([("severity".to_string(), severity.to_string())]),
        annotations: BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), description.to_string()),
        ]),
    };
    RuleFile {
        groups: vec![RuleGroup {
            name: format!("meshkit-{}", mesh.name),
            rules: vec![
                rule(
                    ERROR_RATIO,
                    error_ratio,
                    &options.error_ratio_for,
                    "warning",
                    format!(
                        "{{{{ $labels.service }}}} fails more than {}% of its requests; errors that started at {{{{ $labels.origin }}}} are {{{{ $value | humanizePercentage }}}} of them",
                        options.error_ratio * 100.0
                    ),
                    "Error responses (meshkit_errors, inbound) over inbound requests, per service, split by the service where the errors started. Look at the origin first.",
                ),
                rule(
                    BUDGET_EXHAUSTED,
                    budget,
                    &options.budget_exhausted_for,
                    "warning",
                    "{{ $labels.service }}'s retry budget for {{ $labels.upstream }} is exhausted: failures at {{ $labels.upstream }} are no longer retried".into(),
                    "The retry budget denies retries (meshkit_retry_denied): the upstream fails more than the budget's ratio allows. Retries would only add load; fix the upstream.",
                ),
                rule(
                    UNKNOWN_CODES,
                    unknown,
                    "0s",
                    "info",
                    format!(
                        "{{{{ $labels.origin }}}} returns error code {{{{ $labels.code }}}}, which the catalog does not list (more than {} in {w})",
                        options.unknown_codes
                    ),
                    "An app reports a code the mesh's catalog does not know: add it to the catalog (with its retryability), or fix the app.",
                ),
                rule(
                    NO_HEALTHY_UPSTREAM,
                    no_healthy,
                    &options.no_healthy_for,
                    "critical",
                    "{{ $labels.service }} has no healthy {{ $labels.upstream }} instance: its requests to {{ $labels.upstream }} fail with MESH_NO_HEALTHY_UPSTREAM".into(),
                    "Every instance of the upstream fails its health check, or none is known.",
                ),
            ],
        }],
    }
}
