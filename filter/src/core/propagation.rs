//! The meshkit response headers that carry an error from one sidecar to its callers.
//!
//! These headers are meshkit's alone: sidecars strip them from requests (so no client can
//! spoof an origin) and the inbound sidecar strips them from its app's responses before
//! stamping its own.

use super::cause_table::Cause;
use super::config::is_service_name;
use super::error_code::is_valid_code;
use super::headers::HeaderSource;
use super::report::{ErrorReport, Propagated};

pub const CODE: &str = "x-meshkit-error-code";
pub const ORIGIN: &str = "x-meshkit-error-origin";
pub const RETRYABLE: &str = "x-meshkit-error-retryable";
pub const CAUSE: &str = "x-meshkit-error-cause";
pub const ALL: [&str; 4] = [CODE, ORIGIN, RETRYABLE, CAUSE];

/// Reads what an upstream sidecar stamped; ill-formed values are ignored as a whole.
pub fn read(headers: &impl HeaderSource) -> Option<Propagated> {
    let code = headers.header(CODE)?;
    let origin = headers.header(ORIGIN)?;
    if !is_valid_code(&code) {
        return None;
    }
    let origin = std::str::from_utf8(&origin)
        .ok()
        .filter(|o| is_service_name(o))?;
    let cause = headers.header(CAUSE).and_then(|c| parse_cause(&c));
    let retryable = headers.header(RETRYABLE).is_some_and(|v| v == b"true");
    Some(Propagated {
        code: String::from_utf8_lossy(&code).into_owned(),
        origin: origin.to_string(),
        retryable,
        cause,
    })
}

fn parse_cause(value: &[u8]) -> Option<Cause> {
    let text = std::str::from_utf8(value).ok()?;
    let (origin, code) = text.split_once(':')?;
    (is_service_name(origin) && is_valid_code(code.as_bytes())).then(|| Cause {
        origin: origin.into(),
        code: code.into(),
    })
}

/// The headers that report `report` to callers (none for a report without a code).
pub fn stamp(report: &ErrorReport) -> Vec<(&'static str, String)> {
    let Some(code) = &report.code else {
        return Vec::new();
    };
    let mut headers = vec![
        (CODE, code.clone()),
        (ORIGIN, report.origin.clone()),
        (RETRYABLE, report.retryable.to_string()),
    ];
    if let Some(c) = &report.cause {
        headers.push((CAUSE, c.display()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Classification;
    use crate::core::extract::Source;
    use crate::core::headers::StaticHeaders;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stamp_then_read_round_trips() {
        let report = ErrorReport {
            code: Some("CM503001".into()),
            origin: "users".into(),
            retryable: true,
            classification: Classification::Catalog,
            source: Source::Header,
            cause: Some(Cause {
                origin: "db".into(),
                code: "DB1".into(),
            }),
            malformed: None,
        };
        let mut h = StaticHeaders::default();
        for (k, v) in stamp(&report) {
            h = h.with(k, v);
        }
        let p = read(&h).unwrap();
        assert_eq!((p.code.as_str(), p.origin.as_str()), ("CM503001", "users"));
        assert!(p.retryable);
        assert_eq!(p.cause.unwrap().display(), "db:DB1");
    }

    #[test]
    fn ill_formed_values_are_ignored() {
        let h = StaticHeaders::default()
            .with(CODE, "CM1")
            .with(ORIGIN, "Not A Service");
        assert_eq!(read(&h), None);
        let h = StaticHeaders::default()
            .with(CODE, vec![0xff])
            .with(ORIGIN, "users");
        assert_eq!(read(&h), None);
        let h = StaticHeaders::default()
            .with(CODE, "CM1")
            .with(ORIGIN, "users")
            .with(CAUSE, "junk");
        assert_eq!(read(&h).unwrap().cause, None);
    }
}
