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

#[cfg(test)]
mod tests {
    use super::is_host_name;

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
