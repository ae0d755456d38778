//! The filter's contribution to the access log record.
//!
//! Envoy's native JSON access logger writes the record; the filter adds fields through filter
//! state, which the logger reads with `%FILTER_STATE(wasm.<property>:PLAIN)%`. [`FilterField`]
//! is the contract between this filter and the SDK that generates the log format: both sides
//! use the same enum, so a field cannot be written under one name and read under another.

use super::headers::HeaderSource;
use super::report::ErrorReport;
use super::trace_context::parse_traceparent;

/// A field the filter writes into filter state for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    TraceId,
    SpanId,
    ErrorCode,
    ErrorOrigin,
    ErrorCause,
    ErrorRetryable,
    ErrorClassification,
    ErrorSource,
    RetryAllowed,
    RetryBudget,
}

impl FilterField {
    pub const ALL: [FilterField; 10] = [
        FilterField::TraceId,
        FilterField::SpanId,
        FilterField::ErrorCode,
        FilterField::ErrorOrigin,
        FilterField::ErrorCause,
        FilterField::ErrorRetryable,
        FilterField::ErrorClassification,
        FilterField::ErrorSource,
        FilterField::RetryAllowed,
        FilterField::RetryBudget,
    ];

    /// The filter-state property the filter sets (one path element that contains dots; Envoy
    /// exposes it as `wasm.<property>`).
    pub fn property(self) -> &'static str {
        match self {
            FilterField::TraceId => "meshkit.trace_id",
            FilterField::SpanId => "meshkit.span_id",
            FilterField::ErrorCode => "meshkit.error.code",
            FilterField::ErrorOrigin => "meshkit.error.origin",
            FilterField::ErrorCause => "meshkit.error.cause",
            FilterField::ErrorRetryable => "meshkit.error.retryable",
            FilterField::ErrorClassification => "meshkit.error.classification",
            FilterField::ErrorSource => "meshkit.error.source",
            FilterField::RetryAllowed => "meshkit.retry.allowed",
            FilterField::RetryBudget => "meshkit.retry.budget",
        }
    }

    /// The key in the JSON access log record (OpenTelemetry semantic-convention names).
    pub fn log_key(self) -> &'static str {
        match self {
            FilterField::TraceId => "trace_id",
            FilterField::SpanId => "span_id",
            // The error fields are meshkit's own; the filter-state name is the log key.
            other => other.property(),
        }
    }
}

/// The trace fields, present only when the request carries a valid `traceparent`; `span_id`
/// is the caller's span (the parent-id). (Service and direction are constants of the listener's
/// log format, written by the generator: no request pays for them.)
pub fn trace_fields(request: &impl HeaderSource) -> Vec<(FilterField, String)> {
    match request
        .header("traceparent")
        .and_then(|v| parse_traceparent(&v))
    {
        Some(tc) => vec![
            (FilterField::TraceId, tc.trace_id),
            (FilterField::SpanId, tc.parent_span_id),
        ],
        None => Vec::new(),
    }
}

/// The fields describing the error reported for a response.
pub fn error_fields(report: &ErrorReport) -> Vec<(FilterField, String)> {
    let mut fields = vec![
        (FilterField::ErrorOrigin, report.origin.clone()),
        (FilterField::ErrorRetryable, report.retryable.to_string()),
        (
            FilterField::ErrorClassification,
            report.classification.as_str().to_string(),
        ),
        (FilterField::ErrorSource, report.source.as_str().to_string()),
    ];
    if let Some(code) = &report.code {
        fields.push((FilterField::ErrorCode, code.clone()));
    }
    if let Some(cause) = &report.cause {
        fields.push((FilterField::ErrorCause, cause.display()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::headers::StaticHeaders;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn nothing_without_a_traceparent() {
        assert_eq!(trace_fields(&StaticHeaders::default()), vec![]);
    }

    #[test]
    fn adds_trace_ids_from_a_valid_traceparent() {
        let h = StaticHeaders::default().with(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let fields = trace_fields(&h);
        assert!(fields.contains(&(
            FilterField::TraceId,
            "4bf92f3577b34da6a3ce929d0e0e4736".to_string()
        )));
        assert!(fields.contains(&(FilterField::SpanId, "00f067aa0ba902b7".to_string())));
    }

    #[test]
    fn ignores_a_malformed_traceparent() {
        let h = StaticHeaders::default().with("traceparent", vec![0xffu8; 4096]);
        assert!(trace_fields(&h).is_empty());
    }

    #[test]
    fn properties_and_keys_are_distinct_and_namespaced() {
        for (i, a) in FilterField::ALL.iter().enumerate() {
            assert!(a.property().starts_with("meshkit."));
            for b in &FilterField::ALL[i + 1..] {
                assert_ne!(a.property(), b.property());
                assert_ne!(a.log_key(), b.log_key());
            }
        }
    }
}
