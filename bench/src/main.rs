//! `meshkit-bench`: what meshkit costs per request on real Envoy, next to bare Envoy and a
//! no-op Wasm filter, interleaved in one run. Prints a table; asserts nothing (figures depend
//! on the machine; judge by CPU per request). `scripts/bench.sh` builds what it needs and runs
//! it; CI runs it in `--short` mode so it cannot rot.

mod ads_scale;
mod generate_time;
mod instructions;
mod load;
mod pair;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use load::Target;
use pair::{Filter, Pair};

#[derive(Parser, Debug)]
#[command(about = "meshkit's per-request cost next to bare Envoy and a no-op Wasm filter")]
struct Args {
    /// Rounds; every variant runs once per round, interleaved.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds at a fixed offered rate per variant per round: CPU per request and p50/p99
    /// latency, every variant under the same load (so the same batching per wakeup).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The fixed offered rate, requests per second (below the slowest variant's maximum).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of closed-loop load per variant per round: the most req/s.
    #[arg(long, default_value_t = 2.0)]
    max_seconds: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Envoy worker counts to compare, e.g. `1,2`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    concurrency: Vec<u32>,
    /// Services in the spec `meshkit generate` is timed on.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Simulated sidecars on one `meshkit serve` (ADS streams that acknowledge what they get).
    #[arg(long, default_value_t = 1000)]
    ads_nodes: usize,
    /// Only the control plane figures (`meshkit serve` with `--ads-nodes` sidecars).
    #[arg(long)]
    ads_only: bool,
    /// Requests counted per variant under callgrind (instructions per request, exact where
    /// CPU time is noisy); 0 skips it. Needs valgrind.
    #[arg(long, default_value_t = 200)]
    instructions: u64,
    /// Only the instruction counts.
    #[arg(long)]
    instructions_only: bool,
    /// A quick run that only proves the benchmark works (CI).
    #[arg(long)]
    short: bool,
    /// The no-op filter (built by scripts/bench.sh).
    #[arg(long, default_value = "target/wasm32-wasip1/release/noop_filter.wasm")]
    noop_wasm: PathBuf,
    #[arg(long, default_value = ".meshkit/bench")]
    run_dir: PathBuf,
    /// Another build of the filter (e.g. main's, before a change) to run interleaved with
    /// this one, on both paths: "before and after" in one run. Repeatable: the second is
    /// `baseline 2`, and so on.
    #[arg(long)]
    baseline_wasm: Vec<PathBuf>,
    /// Routes without a retry policy (no retry budget work per request).
    #[arg(long)]
    no_retries: bool,
    /// Only these variants (repeatable, e.g. `--only 'meshkit, 503'` to profile one).
    #[arg(long)]
    only: Vec<String>,
}

/// One configuration measured.
pub struct Variant {
    pub name: String,
    pub filter: Filter,
    /// The error path: `b`'s app answers 503 with a catalog code.
    pub error_path: bool,
}

/// Per-round figures of one variant.
#[derive(Default, Clone)]
pub struct Figures {
    pub cpu_us_per_request: Vec<f64>,
    pub per_second: Vec<f64>,
    pub p50_us: Vec<f64>,
    pub p99_us: Vec<f64>,
    pub rss_mib: Vec<f64>,
    pub errors: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.short {
        args.rounds = 1;
        args.seconds = 1.0;
        args.max_seconds = 1.0;
        args.concurrency = vec![1];
        args.rate = 200.0;
        args.services = 100;
        args.ads_nodes = 50;
        args.instructions = 20;
    }
    let meshkit = meshkit_cli::locate::wasm()?;
    if args.ads_only {
        return control_plane(&args, &meshkit).await;
    }
    let envoy = meshkit_cli::locate::envoy()?;
    anyhow::ensure!(
        args.noop_wasm.exists(),
        "{} is missing: run scripts/bench.sh, which builds it",
        args.noop_wasm.display()
    );
    let variant = |name: &str, filter: Filter, error_path: bool| Variant {
        name: name.to_string(),
        filter,
        error_path,
    };
    let mut variants = vec![
        variant("bare", Filter::Bare, false),
        variant("no-op filter", Filter::Wasm(args.noop_wasm.clone()), false),
        variant("meshkit", Filter::Wasm(meshkit.clone()), false),
        variant("bare, 503", Filter::Bare, true),
        variant(
            "no-op filter, 503",
            Filter::Wasm(args.noop_wasm.clone()),
            true,
        ),
        variant("meshkit, 503", Filter::Wasm(meshkit.clone()), true),
    ];
    for (i, baseline) in args.baseline_wasm.iter().enumerate() {
        let name = match i {
            0 => "baseline".to_string(),
            i => format!("baseline {}", i + 1),
        };
        variants.push(variant(&name, Filter::Wasm(baseline.clone()), false));
        let error_path = format!("{name}, 503");
        variants.push(variant(&error_path, Filter::Wasm(baseline.clone()), true));
    }

    if !args.only.is_empty() {
        variants.retain(|v| args.only.contains(&v.name));
        anyhow::ensure!(!variants.is_empty(), "--only matches no variant");
    }
    if args.instructions_only {
        return instruction_counts(&envoy, &variants, &args).await;
    }
    println!(
        "meshkit bench: 2 sidecars on a 2-hop path (load → a outbound → b inbound → app), \
         {} keep-alive connections; per variant and round, interleaved: {}s at {} req/s (CPU = \
         both sidecars' user+sys per request; p50/p99), then {}s closed loop (most req/s)",
        args.connections, args.seconds, args.rate, args.max_seconds
    );
    let mut all_figures = Vec::new();
    for &concurrency in &args.concurrency {
        let mut figures = vec![Figures::default(); variants.len()];
        for round in 0..args.rounds {
            for (v, variant) in variants.iter().enumerate() {
                let dir = args.run_dir.join(format!("c{concurrency}-r{round}-{v}"));
                let f = measure(&envoy, variant, concurrency, &dir, &args).await?;
                let all = &mut figures[v];
                all.cpu_us_per_request.push(f.0);
                all.per_second.push(f.1);
                all.p50_us.push(f.2);
                all.p99_us.push(f.3);
                all.rss_mib.push(f.4);
                all.errors += f.5;
            }
        }
        report::table(concurrency, &variants, &figures);
        all_figures.push((concurrency, figures));
    }
    report::memory(&variants, &all_figures);
    report::goals(&variants, &all_figures);
    instruction_counts(&envoy, &variants, &args).await?;

    let wasm_size = std::fs::metadata(&meshkit)?.len();
    println!(
        "\nmeshkit_filter.wasm: {} bytes ({:.0} KiB)",
        wasm_size,
        wasm_size as f64 / 1024.0
    );
    let (services, generate) = generate_time::measure(args.services)?;
    println!(
        "meshkit generate on a {services}-service spec (validate + render every bootstrap): {:.0} ms",
        generate.as_secs_f64() * 1000.0
    );
    control_plane(&args, &meshkit).await
}

/// Every variant's instructions per request under callgrind, and the ratios.
async fn instruction_counts(
    envoy: &std::path::Path,
    variants: &[Variant],
    args: &Args,
) -> anyhow::Result<()> {
    if args.instructions == 0 {
        return Ok(());
    }
    if !instructions::available() {
        println!("\ninstructions per request: skipped (no valgrind)");
        return Ok(());
    }
    // --short proves the path works: one variant (Envoy starts slowly under valgrind).
    let chosen: Vec<&Variant> = variants
        .iter()
        .filter(|v| !args.short || v.name == "meshkit")
        .collect();
    let mut counts = Vec::new();
    for v in &chosen {
        let dir = args
            .run_dir
            .join(format!("callgrind-{}", v.name.replace([' ', ','], "_")));
        let n = instructions::measure(envoy, v, args.instructions, !args.no_retries, &dir).await?;
        counts.push(n);
    }
    report::instructions(&chosen, &counts, args.instructions);
    Ok(())
}

/// `meshkit serve` with `args.ads_nodes` simulated sidecars.
async fn control_plane(args: &Args, wasm: &std::path::Path) -> anyhow::Result<()> {
    // `meshkit serve` is the `meshkit` built beside this binary (same profile).
    let meshkit_bin = std::env::current_exe()?.with_file_name("meshkit");
    let a = ads_scale::measure(
        args.ads_nodes,
        &meshkit_bin,
        wasm,
        &args.run_dir.join("ads"),
    )
    .await?;
    println!(
        "\nmeshkit serve with {} simulated sidecars (ADS streams that ack what they get):\n  \
         all connected and acknowledged in {:.0} ms; server RSS {:.0} MiB\n  \
         spec edit (a catalog entry: every node's filter config) to all {} acknowledged: {:.0} ms \
         (goal < 2000 ms), server CPU for the push {:.0} ms, RSS after {:.0} MiB (goal < 200 MB)",
        a.nodes,
        a.connected_in.as_secs_f64() * 1e3,
        a.rss_mib,
        a.nodes,
        a.edit_to_all_acked.as_secs_f64() * 1e3,
        a.push_cpu_ms,
        a.rss_after_mib
    );
    Ok(())
}

/// One variant, once: (CPU µs/request, req/s, p50 µs, p99 µs, RSS MiB, errors).
async fn measure(
    envoy: &std::path::Path,
    variant: &Variant,
    concurrency: u32,
    dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<(f64, f64, f64, f64, f64, u64)> {
    let pair = Pair::start(
        envoy,
        &variant.filter,
        concurrency,
        !args.no_retries,
        dir,
        &[],
    )
    .await?;
    let target = target(&pair, variant);
    // Warm up: connections, VM instances, JIT.
    load::run(&target, args.connections, Duration::from_millis(500), None).await?;
    let before = pair.usage()?;
    let mut fixed = load::run(
        &target,
        args.connections,
        Duration::from_secs_f64(args.seconds),
        Some(args.rate),
    )
    .await?;
    let after = pair.usage()?;
    let closed = load::run(
        &target,
        args.connections,
        Duration::from_secs_f64(args.max_seconds),
        None,
    )
    .await?;
    let rss = pair.usage()?.rss_bytes as f64 / (1024.0 * 1024.0);
    pair.stop().await;
    let cpu_us = (after.cpu_seconds - before.cpu_seconds) * 1e6 / fixed.requests.max(1) as f64;
    Ok((
        cpu_us,
        closed.per_second(),
        f64::from(fixed.quantile_us(0.5)),
        f64::from(fixed.quantile_us(0.99)),
        rss,
        closed.errors + fixed.errors,
    ))
}

/// The load's requests for `variant` (its error path asks `b`'s app for a 503 with a code).
pub fn target(pair: &Pair, variant: &Variant) -> Target {
    let mut headers = vec![("x-request-id".to_string(), "bench".to_string())];
    let expect_status = if variant.error_path {
        headers.push(("x-demo".into(), "b.status=503;b.code=CM503002".into()));
        503
    } else {
        200
    };
    Target {
        addr: pair.entry,
        path: "/".into(),
        headers,
        expect_status,
    }
}
