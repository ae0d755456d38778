//! Routes: their matches, and routes that an earlier route makes unreachable.

use super::retry::retry_policy;
use super::values::duration;
use crate::model::{PathMatch, Route};
use crate::problems::Collector;
use crate::spec::RouteSpec;

pub(super) fn route(r: &RouteSpec, at: &str, c: &mut Collector) -> Route {
    let path = match (&r.match_.prefix, &r.match_.exact) {
        (Some(p), None) => PathMatch::Prefix(http_path(p, &format!("{at}.match.prefix"), c)),
        (None, Some(e)) => PathMatch::Exact(http_path(e, &format!("{at}.match.exact"), c)),
        (Some(_), Some(_)) => {
            c.push(
                format!("{at}.match"),
                "set exactly one of prefix, exact (got both)",
            );
            PathMatch::Prefix("/".into())
        }
        (None, None) => {
            c.push(
                format!("{at}.match"),
                "set exactly one of prefix, exact (got neither)",
            );
            PathMatch::Prefix("/".into())
        }
    };
    let timeout = duration(r.timeout.as_deref(), &format!("{at}.timeout"), c);
    let retry = r
        .retry
        .as_ref()
        .map(|retry| retry_policy(retry, timeout, &format!("{at}.retry"), c));
    Route {
        path,
        timeout,
        retry,
    }
}

/// Envoy takes the first route that matches, in the order of the outbound listener's single
/// route table (upstreams in spec order, each upstream's routes in order). A route whose every
/// path an earlier route already matches would silently send its traffic elsewhere.
pub(super) fn check_shadowed(routes: &[(String, &PathMatch)], c: &mut Collector) {
    for (k, (at, later)) in routes.iter().enumerate() {
        if let Some((first_at, first)) = routes[..k]
            .iter()
            .find(|(_, earlier)| covers(earlier, later))
        {
            c.push(
                format!("{at}.match"),
                format!(
                    "never used: {first_at} ({}) comes first and matches every path this route \
                     ({}) matches; list the more specific route first",
                    describe(first),
                    describe(later)
                ),
            );
        }
    }
}

/// Every path `later` matches, `earlier` matches too (Envoy's prefixes are plain string
/// prefixes, case-sensitive: `/pay` matches `/payments`).
fn covers(earlier: &PathMatch, later: &PathMatch) -> bool {
    match (earlier, later) {
        (PathMatch::Prefix(p), PathMatch::Prefix(q) | PathMatch::Exact(q)) => q.starts_with(p),
        (PathMatch::Exact(e), PathMatch::Exact(f)) => e == f,
        (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
    }
}

fn describe(m: &PathMatch) -> String {
    match m {
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Exact(e) => format!("exact {e}"),
    }
}

fn http_path(p: &str, path: &str, c: &mut Collector) -> String {
    if !p.starts_with('/') {
        c.push(path, format!("must start with '/', got {p:?}"));
    } else if p
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '?' || ch == '#')
    {
        c.push(
            path,
            format!("must be a plain path (no spaces, '?', '#'), got {p:?}"),
        );
    }
    p.to_string()
}
