//! Instructions per request, counted by callgrind: what the CPU figures cannot say on a noisy
//! machine. valgrind counts the instructions both sidecars execute, which is the same for the
//! same binary, config and requests whatever else the machine does (two counts of 200
//! requests differed by 0.5 %). Envoy runs ~50× slower under it, so this runs few requests:
//! each variant's pair starts under `valgrind --tool=callgrind`, is warmed up, then its
//! counters are zeroed (`callgrind_control -z`), `n` requests go through one keep-alive
//! connection, and the counters are dumped (`-d`). What remains besides the requests is
//! Envoy's timers while they ran (about 1 M instructions in 6 s idle, < 1 % here).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::load;
use crate::pair::Pair;
use crate::Variant;

/// Requests sent before counting: connections, VM instances, JIT.
const WARM_UP: u64 = 20;

/// Whether valgrind can run here.
pub fn available() -> bool {
    std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Instructions per request over both sidecars of `variant`'s pair, one worker each.
pub async fn measure(
    envoy: &Path,
    variant: &Variant,
    n: u64,
    retries: bool,
    dir: &Path,
) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let out = std::path::absolute(dir)?.join("callgrind.out.%p");
    let wrapper = [
        "valgrind".to_string(),
        "--tool=callgrind".into(),
        // V8 writes the code it runs: valgrind must look for self-modifying code.
        "--smc-check=all-non-file".into(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let pair = Pair::start(envoy, &variant.filter, 1, retries, dir, &wrapper).await?;
    let target = crate::target(&pair, variant);
    load::count(&target, WARM_UP).await?;
    let pids = pair.pids()?;
    for pid in &pids {
        control("-z", *pid).await?;
    }
    let r = load::count(&target, n).await?;
    anyhow::ensure!(
        r.errors == 0,
        "{}: {} of {n} answers were not {}",
        variant.name,
        r.errors,
        target.expect_status
    );
    let mut total = 0u64;
    for pid in &pids {
        control("-d", *pid).await?;
        total += summary(&latest_dump(dir, *pid)?)?;
    }
    pair.stop().await;
    Ok(total as f64 / n as f64)
}

async fn control(what: &str, pid: u32) -> anyhow::Result<()> {
    let o = tokio::process::Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .output()
        .await
        .context("run callgrind_control")?;
    if !o.status.success() {
        bail!(
            "callgrind_control {what} {pid}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// The newest dump of `pid` (`callgrind.out.<pid>.<k>`).
fn latest_dump(dir: &Path, pid: u32) -> anyhow::Result<PathBuf> {
    let prefix = format!("callgrind.out.{pid}.");
    let mut dumps: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let k = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((k, e.path()))
        })
        .collect();
    dumps.sort();
    dumps.pop().map(|(_, p)| p).context("no callgrind dump")
}

/// The `summary:` line of a dump: instructions executed.
fn summary(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no summary in {}", path.display()))
}
