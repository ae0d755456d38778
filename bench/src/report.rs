//! What the benchmark prints: one table per worker count, memory per sidecar and per worker,
//! and the per-request cost goals (issue #8) next to what this run measured. Nothing is
//! asserted: the figures depend on the machine.

use crate::pair::Filter;
use crate::{Figures, Variant};

const BARE: &str = "bare";
const BARE_503: &str = "bare, 503";
const NOOP: &str = "no-op filter";
const NOOP_503: &str = "no-op filter, 503";
const MESHKIT: &str = "meshkit";
const MESHKIT_503: &str = "meshkit, 503";

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0} [{:.0}–{:.0}]", median(values), min, max)
}

/// Per-round ratios of `a` to `b` (the same round's figures: the variants of one round run
/// back to back, so pairing them cancels most of the machine's drift between rounds).
fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// The median per-round ratio as `1.23× [1.10–1.31]`, or nothing when either side did not run.
fn ratio(a: &[f64], b: &[f64]) -> String {
    let r = paired(a, b);
    let m = median(&r);
    if !m.is_finite() {
        return String::new();
    }
    let min = r.iter().copied().fold(f64::INFINITY, f64::min);
    let max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m:.2}× [{min:.2}–{max:.2}]")
}

/// One figure of the variant called `name`, per round (empty if it did not run).
fn rounds<'a>(
    variants: &[Variant],
    figures: &'a [Figures],
    name: &str,
    figure: impl Fn(&'a Figures) -> &'a [f64],
) -> &'a [f64] {
    variants
        .iter()
        .position(|v| v.name == name)
        .map_or(&[], |i| figure(&figures[i]))
}

/// The median of one figure of the variant called `name` (NaN if it did not run).
fn of(
    variants: &[Variant],
    figures: &[Figures],
    name: &str,
    figure: impl Fn(&Figures) -> &[f64],
) -> f64 {
    median(rounds(variants, figures, name, figure))
}

fn cpu(f: &Figures) -> &[f64] {
    &f.cpu_us_per_request
}

fn p99(f: &Figures) -> &[f64] {
    &f.p99_us
}

pub fn table(concurrency: u32, variants: &[Variant], figures: &[Figures]) {
    println!("\n--concurrency {concurrency} (medians [min–max] over rounds)");
    println!(
        "| variant | CPU µs/request | req/s | p50 µs | p99 µs | RSS MiB (both) | CPU vs bare (per round) | CPU vs no-op (per round) | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (v, f) in variants.iter().zip(figures) {
        let own = &f.cpu_us_per_request;
        let bare = rounds(
            variants,
            figures,
            if v.error_path { BARE_503 } else { BARE },
            cpu,
        );
        let noop = rounds(
            variants,
            figures,
            if v.error_path { NOOP_503 } else { NOOP },
            cpu,
        );
        let vs_noop = if matches!(v.filter, Filter::Bare) {
            String::new()
        } else {
            ratio(own, noop)
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
            v.name,
            spread(&f.cpu_us_per_request),
            spread(&f.per_second),
            spread(&f.p50_us),
            spread(&f.p99_us),
            median(&f.rss_mib),
            ratio(own, bare),
            vs_noop,
            f.errors
        );
    }
}

/// RSS per sidecar at the fewest workers, and what each further worker adds (the slope up to
/// the most workers measured): a Wasm filter costs once per process (the module compiled) and
/// once per worker (its VM).
fn rss_per_sidecar(
    variants: &[Variant],
    runs: &[(u32, Vec<Figures>)],
    name: &str,
) -> Option<(f64, Option<f64>)> {
    let rss = |i: usize| of(variants, &runs[i].1, name, |f| &f.rss_mib) / 2.0;
    let first = rss(0);
    if first.is_nan() {
        return None;
    }
    let last = runs.len() - 1;
    let workers = f64::from(runs[last].0) - f64::from(runs[0].0);
    let per_worker = (workers > 0.0).then(|| (rss(last) - first) / workers);
    Some((first, per_worker))
}

pub fn memory(variants: &[Variant], runs: &[(u32, Vec<Figures>)]) {
    if runs.is_empty() {
        return;
    }
    println!(
        "\nRSS per sidecar: at --concurrency {}, and per further worker (up to --concurrency {})",
        runs[0].0,
        runs[runs.len() - 1].0
    );
    println!("| variant | MiB per sidecar | MiB per further worker |");
    println!("|---|---|---|");
    for v in variants.iter().filter(|v| !v.error_path) {
        if let Some((base, per_worker)) = rss_per_sidecar(variants, runs, &v.name) {
            let per_worker = per_worker.map_or(String::new(), |w| format!("{w:.1}"));
            println!("| {} | {base:.1} | {per_worker} |", v.name);
        }
    }
}

/// The goals of issue #8, each with what this run measured at every worker count.
pub fn goals(variants: &[Variant], runs: &[(u32, Vec<Figures>)]) {
    let measured = |f: &dyn Fn(&[Figures]) -> f64, goal: f64| -> String {
        let values: Vec<String> = runs
            .iter()
            .map(|(c, figures)| {
                let value = f(figures);
                let verdict = if value.is_nan() {
                    "not measured"
                } else if value <= goal {
                    "met"
                } else {
                    "missed"
                };
                format!("{value:.2} at c{c} ({verdict})")
            })
            .collect();
        values.join(", ")
    };
    // The median of the per-round ratios of `a` to `b`.
    let vs = |figures: &[Figures], a: &str, b: &str, figure: fn(&Figures) -> &[f64]| {
        median(&paired(
            rounds(variants, figures, a, figure),
            rounds(variants, figures, b, figure),
        ))
    };
    let goal = |text: &str, a: &str, b: &str, figure: fn(&Figures) -> &[f64], goal: f64| {
        println!("{text}: {}", measured(&|f| vs(f, a, b, figure), goal));
    };
    println!("\nGoals (issue #8), judged on the median of per-round ratios:");
    goal("- success path ≤ 1.10× bare CPU", MESHKIT, BARE, cpu, 1.10);
    goal(
        "- success path ≤ 1.05× the no-op filter's CPU",
        MESHKIT,
        NOOP,
        cpu,
        1.05,
    );
    goal(
        "- error path ≤ 1.25× bare CPU on the same 503s",
        MESHKIT_503,
        BARE_503,
        cpu,
        1.25,
    );
    goal(
        "  (the no-op filter alone, on the same 503s",
        NOOP_503,
        BARE_503,
        cpu,
        1.25,
    );
    goal(
        "- p99 within 10 % of bare at the same load",
        MESHKIT,
        BARE,
        p99,
        1.10,
    );
    let extra = |name: &str| rss_per_sidecar(variants, runs, name).and_then(|(_, w)| w);
    match (extra(MESHKIT), extra(NOOP)) {
        (Some(m), Some(n)) => println!(
            "- RSS per worker over the no-op filter's ≤ 4 MiB: {:.1} MiB ({})",
            m - n,
            if m - n <= 4.0 { "met" } else { "missed" }
        ),
        _ => println!(
            "- RSS per worker over the no-op filter's ≤ 4 MiB: run two worker counts to see it"
        ),
    }
    if let (Some((m, _)), Some((n, _))) = (
        rss_per_sidecar(variants, runs, MESHKIT),
        rss_per_sidecar(variants, runs, NOOP),
    ) {
        println!(
            "  (once per sidecar, meshkit's larger module costs {:.1} MiB over the no-op filter's)",
            m - n
        );
    }
}

/// The instruction counts: per variant, and against bare Envoy and the no-op filter on the
/// same path, with the CPU goals applied to them.
pub fn instructions(variants: &[&Variant], counts: &[f64], n: u64) {
    let find = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .map(|i| counts[i])
    };
    println!(
        "\nInstructions per request (callgrind, both sidecars, 1 worker each, {n} requests on \
         one keep-alive connection; exact for this build and config, whatever the machine does):"
    );
    println!("| variant | instructions/request | vs bare | vs no-op |\n|---|---|---|---|");
    for (v, &count) in variants.iter().zip(counts) {
        let (bare, noop) = match v.error_path {
            true => (find(BARE_503), find(NOOP_503)),
            false => (find(BARE), find(NOOP)),
        };
        let ratio = |base: Option<f64>| match base {
            Some(b) if b > 0.0 => format!("{:.3}×", count / b),
            _ => String::new(),
        };
        println!(
            "| {} | {:.0} | {} | {} |",
            v.name,
            count,
            ratio(bare),
            ratio(noop)
        );
    }
    let goal = |text: &str, a: &str, b: &str, limit: f64| {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            let r = a / b;
            let verdict = if r <= limit { "met" } else { "missed" };
            println!("{text}: {r:.3} ({verdict})");
        }
    };
    println!("Goals applied to instructions:");
    goal("- success path ≤ 1.10× bare", MESHKIT, BARE, 1.10);
    goal(
        "- success path ≤ 1.05× the no-op filter",
        MESHKIT,
        NOOP,
        1.05,
    );
    goal(
        "- error path ≤ 1.25× bare on the same 503s",
        MESHKIT_503,
        BARE_503,
        1.25,
    );
}
