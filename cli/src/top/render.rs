//! `meshkit top`'s screen as lines of at most [`WIDTH`] columns (ASCII only, so a column is a
//! byte): long names are cut with `~`.

use super::view::View;

pub const WIDTH: usize = 80;
/// Error rows shown.
pub const TOP_ERRORS: usize = 8;

/// `s` in `width` columns, left-aligned; cut with `~` when longer.
fn cell(s: &str, width: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    if s.len() > width {
        format!("{}~", &s[..width.saturating_sub(1)])
    } else {
        format!("{s:<width$}")
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn millis(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        if v >= 10.0 {
            format!("{v:.0}ms")
        } else {
            format!("{v:.1}ms")
        }
    })
}

pub fn lines(view: &View, clock: &str) -> Vec<String> {
    let mut out = Vec::new();
    let title = format!(
        "meshkit top  {}  {}/{} sidecars up  last {:.0}s",
        view.mesh, view.up, view.sidecars, view.window_s
    );
    let room = WIDTH.saturating_sub(clock.len() + 1);
    out.push(format!("{} {clock}", cell(&title, room)));
    out.push(String::new());
    out.push(format!(
        "{}{:>9}{:>10}{:>10}",
        cell("SERVICE", 30),
        "RPS",
        "SUCCESS",
        "P99"
    ));
    for s in &view.services {
        out.push(format!(
            "{}{:>9.1}{:>10}{:>10}",
            cell(&s.service, 30),
            s.rps,
            percent(s.success),
            millis(s.p99_ms)
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{}{:>9}{:>10}{:>10}{:>10}{:>9}",
        cell("EDGE", 30),
        "RPS",
        "SUCCESS",
        "P99",
        "RETRY/s",
        "BUDGET"
    ));
    for e in &view.edges {
        out.push(format!(
            "{}{:>9.1}{:>10}{:>10}{:>10.2}{:>9}",
            cell(&format!("{} -> {}", e.service, e.upstream), 30),
            e.rps,
            percent(e.success),
            millis(e.p99_ms),
            e.retries_per_s,
            e.budget.map_or("-".into(), |b| format!("{b:.0}"))
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{}{}{}{:>8}",
        cell(&format!("TOP ERRORS (last {:.0}s)", view.window_s), 26),
        cell("CODE", 26),
        cell("ORIGIN", 20),
        "COUNT"
    ));
    if view.errors.is_empty() {
        out.push("(none)".into());
    }
    for e in view.errors.iter().take(TOP_ERRORS) {
        out.push(format!(
            "{}{}{}{:>8.0}",
            cell(&e.service, 26),
            cell(&e.code, 26),
            cell(&e.origin, 20),
            e.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::view::{EdgeRow, ErrorRow, ServiceRow};
    use super::*;

    #[test]
    fn every_line_fits_80_columns_even_with_long_names() {
        let long = "a-service-with-a-very-long-name-indeed-more-than-forty";
        let view = View {
            mesh: long.into(),
            up: 3,
            sidecars: 4,
            window_s: 30.0,
            services: vec![ServiceRow {
                service: long.into(),
                rps: 123456.7,
                success: Some(0.995),
                p99_ms: Some(1234.0),
            }],
            edges: vec![EdgeRow {
                service: long.into(),
                upstream: long.into(),
                rps: 1.0,
                success: None,
                p99_ms: None,
                retries_per_s: 0.25,
                budget: Some(12.0),
            }],
            errors: vec![ErrorRow {
                service: long.into(),
                code: "CODE".repeat(20),
                origin: "users→ünïcode".into(),
                count: 3.0,
            }],
        };
        let lines = lines(&view, "22:41:05");
        for l in &lines {
            assert!(
                l.len() <= WIDTH && l.is_ascii(),
                "{} columns: {l:?}",
                l.len()
            );
        }
        assert!(lines[0].ends_with("22:41:05"));
        assert!(lines
            .iter()
            .any(|l| l.contains("99.5%") && l.contains("1234ms")));
    }
}
