//! Durations in the spec are strings with a unit (`"250ms"`, `"3s"`, `"1m"`), never bare numbers
//! whose unit must be guessed.

use std::time::Duration;

/// Parses `<digits>[.<digits>]<unit>` with unit `ms`, `s`, `m` or `h`. Zero, negative and
/// unit-less values are errors (the message says which), as are values below 1 ms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("must be positive, got {text:?}"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let millis_per_unit: f64 = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "" => {
            return Err(format!(
                "needs a unit (ms, s, m, h), e.g. \"{number}s\"; got {text:?}"
            ))
        }
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (expected e.g. \"250ms\", \"3s\")"))?;
    let millis = value * millis_per_unit;
    if millis == 0.0 {
        return Err(format!("must be greater than 0, got {text:?}"));
    }
    if millis < 1.0 || millis.fract() != 0.0 {
        return Err(format!(
            "must be a whole number of milliseconds, got {text:?}"
        ));
    }
    if millis > 365.0 * 86_400_000.0 {
        return Err(format!("is unreasonably long: {text:?}"));
    }
    Ok(Duration::from_millis(millis as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_bad_values_with_a_reason() {
        for (input, reason) in [
            ("0s", "greater than 0"),
            ("0ms", "greater than 0"),
            ("-1s", "positive"),
            ("5", "needs a unit"),
            ("5sec", "unknown unit"),
            ("s", "not a duration"),
            ("1.2.3s", "not a duration"),
            ("0.5ms", "whole number"),
            ("", "needs a unit"),
            ("100000h", "unreasonably long"),
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }
}
