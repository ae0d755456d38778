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

/// Retry metrics, one family per kind, labelled `service` and `upstream` (both bounded by the
/// configuration): `meshkit.retry.<kind>.<service>.<upstream>`.
pub const RETRY: &str = "meshkit.retry";
pub const RETRY_KINDS: [&str; 6] = [
    "requests",
    "retries",
    "denied",
    "overflow",
    "settle_failed",
    "budget_remaining",
];

pub fn retry_metric(kind: &str, service: &str, upstream: &str) -> String {
    format!("{RETRY}.{kind}.{service}.{upstream}")
}

/// `(tag name, regex)` pairs for Envoy's `stats_tags`, **one per tag name** (Envoy warns about
/// and skips a second extractor of the same name): each regex's first capture group is the
/// part removed from the name, the second the label value. Positional, so no label value can
/// be mistaken for another label. `service` and `upstream` cover both metric families.
///
/// Every label but the code is dot-free (names and fixed words). The code comes last and is
/// kept intact, dots included (`shop.pay.declined` is not `shop_pay_declined`): its value is
/// the rest of the name.
pub fn stats_tags() -> Vec<(String, String)> {
    let head = format!(r"^{}meshkit", regex_escape(ENVOY_PREFIX));
    let value = r"(\.([^.]+))";
    let seg = r"\.[^.]+";
    let code = r"\..+";
    let errors = regex_escape(&ERRORS["meshkit".len()..]);
    let retry = format!(r"{}\.[a-z_]+", regex_escape(&RETRY["meshkit".len()..]));
    let n = ERROR_LABELS.len();
    ERROR_LABELS
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let before = seg.repeat(i);
            let regex = match *label {
                "service" => format!(r"{head}(?:{errors}|{retry}){value}(?:{seg})+$"),
                "upstream" => {
                    format!(r"{head}(?:{errors}{seg}{seg}|{retry}{seg}){value}(?:{seg})*$")
                }
                _ if i + 1 == n => format!(r"{head}{errors}{before}(\.(.+))$"),
                _ => {
                    let after = seg.repeat(n - i - 2);
                    format!(r"{head}{errors}{before}{value}{after}{code}$")
                }
            };
            ((*label).to_string(), regex)
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// Admits a bounded number of distinct label values, and of label sets, per VM (one cap is
/// shared by every plugin of the VM, so the bound is per Envoy worker).
#[derive(Debug, Clone)]
pub struct CardinalityCap {
    max: usize,
    codes: BTreeSet<String>,
    origins: BTreeSet<String>,
    /// Admitted `meshkit.errors` names: codes × origins could otherwise grow as the square.
    series: BTreeSet<String>,
}

/// Distinct error series per VM, per admitted code.
pub const SERIES_PER_CODE: usize = 4;

impl CardinalityCap {
    pub fn new(max: usize) -> Self {
        CardinalityCap {
            max,
            codes: BTreeSet::new(),
            origins: BTreeSet::new(),
            series: BTreeSet::new(),
        }
    }

    /// Raises the cap (plugins of one VM may be configured with different caps).
    pub fn raise_to(&mut self, max: usize) {
        self.max = self.max.max(max);
    }

    fn admit(set: &mut BTreeSet<String>, max: usize, value: &str) -> String {
        if set.contains(value) || (set.len() < max && set.insert(value.to_string())) {
            value.to_string()
        } else {
            OTHER.to_string()
        }
    }

    /// The `meshkit.errors` name for `report`. Service and origin names are `[a-z0-9-]`; the
    /// code, last, keeps its dots (a valid code has no empty segment).
    /// Past `max` codes or origins the value is `other`; past `max × SERIES_PER_CODE` label
    /// sets both are.
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
            .map(|c| Self::admit(&mut self.codes, self.max, c))
            .unwrap_or_else(|| NONE.to_string());
        let origin = Self::admit(&mut self.origins, self.max, &report.origin);
        let class = report.classification.as_str();
        let name = format!("{ERRORS}.{service}.{direction}.{upstream}.{origin}.{class}.{code}");
        if self.series.contains(&name)
            || self.series.len() >= self.max.saturating_mul(SERIES_PER_CODE)
        {
            if !self.series.contains(&name) {
                return format!(
                    "{ERRORS}.{service}.{direction}.{upstream}.{OTHER}.{class}.{OTHER}"
                );
            }
            return name;
        }
        self.series.insert(name.clone());
        name
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
            "meshkit.errors.a.inbound.local_app.a.catalog.ns.code"
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
    fn origins_times_codes_is_capped_too() {
        let mut cap = CardinalityCap::new(10);
        let mut names = BTreeSet::new();
        for o in 0..10 {
            for c in 0..10 {
                names.insert(cap.error_metric(
                    "s",
                    "inbound",
                    "up",
                    &report(&format!("C{c}"), &format!("o{o}")),
                ));
            }
        }
        assert!(names.len() <= 10 * SERIES_PER_CODE + 1, "{}", names.len());
    }

    /// Envoy's tag extraction, done with the same regexes: the first group is removed from the
    /// name, the second is the value.
    fn extract(name: &str) -> (String, Vec<(String, String)>) {
        let mut removed = Vec::new();
        let mut tags = Vec::new();
        for (tag, re) in stats_tags() {
            let re = regex::Regex::new(&re).unwrap();
            if let Some(c) = re.captures(name) {
                let (whole, value) = (c.get(1).unwrap(), c.get(2).unwrap());
                removed.push(whole.range());
                tags.push((tag, value.as_str().to_string()));
            }
        }
        removed.sort_by_key(|r| std::cmp::Reverse(r.start));
        let mut base = name.to_string();
        for r in removed {
            base.replace_range(r, "");
        }
        (base, tags)
    }

    #[test]
    fn one_extractor_per_tag_name_covers_both_families() {
        let names: Vec<String> = stats_tags().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ERROR_LABELS);
        let t = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            extract("wasmcustom.meshkit.errors.recipes.outbound.users.users.catalog.CM503001"),
            (
                "wasmcustom.meshkit.errors".to_string(),
                t(&[
                    ("service", "recipes"),
                    ("direction", "outbound"),
                    ("upstream", "users"),
                    ("origin", "users"),
                    ("classification", "catalog"),
                    ("code", "CM503001"),
                ])
            )
        );
        // Dots in a code stay in its label, and never shift the other labels.
        let (base, tags) =
            extract("wasmcustom.meshkit.errors.a.inbound.local_app.b.unknown.shop.pay.declined");
        assert_eq!(base, "wasmcustom.meshkit.errors");
        assert_eq!(
            tags,
            t(&[
                ("service", "a"),
                ("direction", "inbound"),
                ("upstream", "local_app"),
                ("origin", "b"),
                ("classification", "unknown"),
                ("code", "shop.pay.declined"),
            ])
        );
        for kind in RETRY_KINDS {
            assert_eq!(
                extract(&format!(
                    "wasmcustom.{}",
                    retry_metric(kind, "recipes", "users")
                )),
                (
                    format!("wasmcustom.meshkit.retry.{kind}"),
                    t(&[("service", "recipes"), ("upstream", "users")])
                ),
                "{kind}"
            );
        }
        assert_eq!(extract("wasmcustom.meshkit.cause_table.evicted").1, vec![]);
    }
}
