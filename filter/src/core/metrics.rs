//! Metric names. Envoy custom metrics have no labels, so labels are encoded in the name and
//! pulled out again by the `stats_config.stats_tags` the SDK generates from [`ERROR_TAGS`].
//!
//! Names are cardinality: every distinct name is a counter that lives as long as Envoy. Service,
//! direction and upstream are bounded by the configuration; codes and origins come from traffic,
//! so each VM admits at most `max_codes` distinct codes and origins and counts the rest as
//! `other`.

use std::collections::BTreeSet;

use super::report::ErrorReport;

/// Prefix Envoy puts before every metric a Wasm module defines.
pub const ENVOY_PREFIX: &str = "wasmcustom.";
pub const ERRORS: &str = "meshkit.errors";

/// Label value for codes and origins past the cardinality cap.
pub const OTHER: &str = "other";
/// Label value for a report without a code (malformed carrier).
pub const NONE: &str = "none";

/// The labels of `meshkit.errors`, in the order they are encoded in the name.
pub const ERROR_LABELS: [&str; 6] = [
    "service",
    "direction",
    "upstream",
    "origin",
    "classification",
    "code",
];

/// `(tag name, regex)` pairs for Envoy's `stats_tags`: each regex's first capture group is the
/// part removed from the name, the second the label value. Positional, so no label value can
/// be mistaken for another label.
pub fn error_tags() -> Vec<(String, String)> {
    let n = ERROR_LABELS.len();
    ERROR_LABELS
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let before = r"\.[^.]+".repeat(i);
            let after = r"\.[^.]+".repeat(n - i - 1);
            let regex = format!(
                r"^{}{}{before}(\.([^.]+)){after}$",
                regex_escape(ENVOY_PREFIX),
                regex_escape(ERRORS)
            );
            ((*label).to_string(), regex)
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// Retry metrics, one family per kind, labelled `service` and `upstream` (both bounded by the
/// configuration): `meshkit.retry.<kind>.<service>.<upstream>`.
pub const RETRY: &str = "meshkit.retry";
pub const RETRY_KINDS: [&str; 4] = ["requests", "retries", "denied", "budget_remaining"];

pub fn retry_metric(kind: &str, service: &str, upstream: &str) -> String {
    format!("{RETRY}.{kind}.{service}.{upstream}")
}

/// `(tag name, regex)` pairs for the retry metrics.
pub fn retry_tags() -> Vec<(String, String)> {
    let head = format!(
        r"^{}{}\.[^.]+",
        regex_escape(ENVOY_PREFIX),
        regex_escape(RETRY)
    );
    vec![
        ("service".into(), format!(r"{head}(\.([^.]+))\.[^.]+$")),
        ("upstream".into(), format!(r"{head}\.[^.]+(\.([^.]+))$")),
    ]
}

/// Admits a bounded number of distinct values per label.
#[derive(Debug, Clone)]
pub struct CardinalityCap {
    max: usize,
    codes: BTreeSet<String>,
    origins: BTreeSet<String>,
}

impl CardinalityCap {
    pub fn new(max: usize) -> Self {
        CardinalityCap {
            max,
            codes: BTreeSet::new(),
            origins: BTreeSet::new(),
        }
    }

    fn admit(set: &mut BTreeSet<String>, max: usize, value: &str) -> String {
        if set.contains(value) || (set.len() < max && set.insert(value.to_string())) {
            value.to_string()
        } else {
            OTHER.to_string()
        }
    }

    /// The `meshkit.errors` name for `report`. Every value is already dot-free: service and
    /// origin names are `[a-z0-9-]`, codes contain no `.` once admitted (dots map to `_`).
    pub fn error_metric(
        &mut self,
        service: &str,
        direction: &str,
        upstream: &str,
        report: &ErrorReport,
    ) -> String {
        let code = report
            .code
            .as_deref()
            .map(|c| Self::admit(&mut self.codes, self.max, &c.replace('.', "_")))
            .unwrap_or_else(|| NONE.to_string());
        let origin = Self::admit(&mut self.origins, self.max, &report.origin);
        format!(
            "{ERRORS}.{service}.{direction}.{upstream}.{origin}.{}.{code}",
            report.classification.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Classification;
    use crate::core::extract::Source;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn report(code: &str, origin: &str) -> ErrorReport {
        ErrorReport {
            code: Some(code.into()),
            origin: origin.into(),
            retryable: false,
            classification: Classification::Catalog,
            source: Source::Header,
            cause: None,
            malformed: None,
        }
    }

    #[test]
    fn encodes_labels_in_order() {
        let mut cap = CardinalityCap::new(10);
        assert_eq!(
            cap.error_metric("recipes", "outbound", "users", &report("CM503001", "users")),
            "meshkit.errors.recipes.outbound.users.users.catalog.CM503001"
        );
        assert_eq!(
            cap.error_metric("a", "inbound", "local_app", &report("ns.code", "a")),
            "meshkit.errors.a.inbound.local_app.a.catalog.ns_code"
        );
    }

    #[test]
    fn caps_distinct_codes_and_origins() {
        let mut cap = CardinalityCap::new(2);
        let name = |cap: &mut CardinalityCap, c: &str, o: &str| {
            cap.error_metric("s", "inbound", "up", &report(c, o))
        };
        assert!(name(&mut cap, "A", "x").ends_with(".x.catalog.A"));
        assert!(name(&mut cap, "B", "y").ends_with(".y.catalog.B"));
        assert!(name(&mut cap, "C", "z").ends_with(".other.catalog.other"));
        assert!(
            name(&mut cap, "A", "x").ends_with(".x.catalog.A"),
            "admitted values stay"
        );
        let mut names = BTreeSet::new();
        for i in 0..10_000 {
            names.insert(name(&mut cap, &format!("C{i}"), &format!("o{i}")));
        }
        assert!(names.len() <= 3, "{names:?}");
    }

    #[test]
    fn tag_regexes_are_positional() {
        let tags = error_tags();
        assert_eq!(tags.len(), 6);
        assert_eq!(tags[0].0, "service");
        assert_eq!(
            tags[0].1,
            r"^wasmcustom\.meshkit\.errors(\.([^.]+))\.[^.]+\.[^.]+\.[^.]+\.[^.]+\.[^.]+$"
        );
        assert!(tags[5].1.ends_with(r"(\.([^.]+))$"));
    }
}
