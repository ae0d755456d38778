//! PromQL, built from parts: label matchers, range functions, aggregations. The dashboards,
//! the alert rules and the tests all take their queries from here, so a metric or label name
//! is written once.
//!
//! Label names are those the generated scrape config gives (see [`super::prometheus`]):
//! `service` (the sidecar's service, on every series; meshkit's own series carry it already)
//! and `upstream` (meshkit's label, and copied from Envoy's `envoy_cluster_name`).

use std::fmt::Write;

/// Grafana's variables, as the dashboard's queries use them.
pub const RATE_WINDOW: &str = "$__rate_interval";
pub const RANGE: &str = "$__range";
/// Matcher on the dashboard's `service` variable (multi-valued; "All" is `.*`).
pub const SERVICE_VAR: &str = "$service";

/// A label matcher: `name op "value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: &'static str,
    op: &'static str,
    value: String,
}

pub fn eq(name: &'static str, value: impl Into<String>) -> Matcher {
    Matcher {
        name,
        op: "=",
        value: value.into(),
    }
}

pub fn re(name: &'static str, value: impl Into<String>) -> Matcher {
    Matcher {
        name,
        op: "=~",
        value: value.into(),
    }
}

pub fn not_eq(name: &'static str, value: impl Into<String>) -> Matcher {
    Matcher {
        name,
        op: "!=",
        value: value.into(),
    }
}

/// `metric{matchers}`; values are quoted as PromQL strings.
pub fn selector(metric: &str, matchers: &[Matcher]) -> String {
    let mut s = metric.to_string();
    if matchers.is_empty() {
        return s;
    }
    s.push('{');
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}{}{}", m.name, m.op, quote(&m.value));
    }
    s.push('}');
    s
}

fn quote(value: &str) -> String {
    // PromQL strings take Go's escapes; a regex's backslashes are doubled.
    format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
}

/// A regex alternation matching exactly `names` (anchored by PromQL).
pub fn any_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let alternatives: Vec<String> = names.into_iter().map(regex_escape).collect();
    if alternatives.is_empty() {
        // Matches nothing: an empty alternation would match the empty value.
        return "$^".into();
    }
    alternatives.join("|")
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn rate(selector: &str, window: &str) -> String {
    format!("rate({selector}[{window}])")
}

pub fn increase(selector: &str, window: &str) -> String {
    format!("increase({selector}[{window}])")
}

pub fn sum_by(labels: &[&str], expr: &str) -> String {
    format!("sum by ({}) ({expr})", labels.join(", "))
}

pub fn max_by(labels: &[&str], expr: &str) -> String {
    format!("max by ({}) ({expr})", labels.join(", "))
}

pub fn min_by(labels: &[&str], expr: &str) -> String {
    format!("min by ({}) ({expr})", labels.join(", "))
}

/// `q`-quantile of a histogram's buckets, kept per `labels`.
pub fn quantile(q: f64, labels: &[&str], bucket_selector: &str, window: &str) -> String {
    let mut by = labels.to_vec();
    by.push("le");
    format!(
        "histogram_quantile({q}, {})",
        sum_by(&by, &rate(bucket_selector, window))
    )
}

/// The share of `part` in `total`, per `labels`: 0 (not empty) while `part` has no series yet
/// but `total` does (Envoy creates a response-class counter at its first response).
pub fn ratio(labels: &[&str], part: &str, total: &str) -> String {
    let total = sum_by(labels, total);
    format!("({} or {total} * 0) / {total}", sum_by(labels, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_quote_and_escape() {
        assert_eq!(selector("m", &[]), "m");
        assert_eq!(
            selector("m", &[eq("a", "x\"y"), re("b", any_of(["a.b", "c"]))]),
            r#"m{a="x\"y",b=~"a\\.b|c"}"#
        );
        assert_eq!(any_of([]), "$^");
    }

    #[test]
    fn ratio_is_zero_not_empty_without_the_part() {
        assert_eq!(
            ratio(&["service"], "p", "t"),
            "(sum by (service) (p) or sum by (service) (t) * 0) / sum by (service) (t)"
        );
    }
}
