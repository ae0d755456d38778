//! Values that appear all over the spec: ports, durations, host names.

use std::time::Duration;

use super::DEFAULT_TIMEOUT;
use crate::duration::parse_duration;
use crate::problems::Collector;

pub(super) fn port(value: i64, path: &str, c: &mut Collector) -> u16 {
    match u16::try_from(value) {
        Ok(p) if p > 0 => p,
        _ => {
            c.push(
                path,
                format!("must be a port between 1 and 65535, got {value}"),
            );
            0
        }
    }
}

/// An optional duration, [`DEFAULT_TIMEOUT`] when absent.
pub(super) fn duration(value: Option<&str>, path: &str, c: &mut Collector) -> Duration {
    match value.map(parse_duration) {
        None => DEFAULT_TIMEOUT,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            c.push(path, e);
            DEFAULT_TIMEOUT
        }
    }
}

pub(super) fn required_duration(text: &str, path: &str, c: &mut Collector) -> Option<Duration> {
    parse_duration(text).map_err(|e| c.push(path, e)).ok()
}

/// A DNS host name (RFC 1123): dot-separated labels of 1–63 letters, digits and '-', not
/// starting or ending with '-', 253 characters at most. A trailing dot is allowed.
pub(super) fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All digits and dots is an IP address (or a bad one), never a host name.
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A container image reference as Docker parses it: an optional registry host (with a port),
/// a lowercase path, an optional tag and an optional `sha256` digest (distribution/reference's
/// grammar, without its rarely used forms).
pub(super) fn is_image_reference(image: &str) -> bool {
    static REFERENCE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    const COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    REFERENCE
        .get_or_init(|| {
            let domain = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?";
            regex::Regex::new(&format!(
                r"^{domain}{COMPONENT}(?:/{COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
            ))
            .ok()
        })
        .as_ref()
        .is_some_and(|re| image.len() <= 255 && re.is_match(image))
}

#[cfg(test)]
mod tests {
    use super::{is_host_name, is_image_reference};

    #[test]
    fn image_references() {
        for ok in [
            "users",
            "users:1.4",
            "envoyproxy/envoy:v1.40.0",
            "registry.example.com:5000/team/users:v2",
            "localhost/meshkit-demo:local",
            &format!("users@sha256:{}", "a".repeat(64)),
        ] {
            assert!(is_image_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "Users",
            "users:",
            "users:bad tag",
            "-users",
            "users//x",
            "a:b:c",
        ] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        for ok in [
            "payments",
            "payments.internal",
            "a-b.c1",
            "svc.ns.svc.cluster.local.",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        for bad in [
            "",
            "not a host!",
            "-a",
            "a-",
            "a..b",
            "1.2.3.4",
            "999.1.1.1",
            "a_b",
            long_label.as_str(),
            ".",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }
}
