//! What the spec test files share: every problem of an invalid spec, and finding one.

#![allow(dead_code, clippy::panic)] // test code

use meshkit_sdk::{load_str, Format, Problems};

/// Every problem of a spec that must be invalid, as `path: message` lines.
pub fn problems_in(text: &str, format: Format) -> Vec<String> {
    match load_str(text, format) {
        Ok(_) => panic!("expected the spec to be invalid:\n{text}"),
        Err(Problems(p)) => p.iter().map(|p| p.to_string()).collect(),
    }
}

/// Asserts that some problem starts with `path: ` and contains `message`.
pub fn assert_problem(all: &[String], path: &str, message: &str) {
    assert!(
        all.iter()
            .any(|p| p.starts_with(&format!("{path}: ")) && p.contains(message)),
        "no `{path}: …{message}…` in:\n{}",
        all.join("\n")
    );
}
