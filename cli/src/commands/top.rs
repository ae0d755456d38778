//! `meshkit top SPEC`: refreshes in place on a terminal; elsewhere (a pipe, a file) prints
//! each refresh as plain lines.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use meshkit_cli::top::{self, render, view::Topology, History};

use super::{load, Exit, Failure, OrExit, Signals};

/// The most scrapes a window may span (`--window` / `--interval`): each holds the series
/// `top` reads from every sidecar.
pub const MAX_SCRAPES: u32 = 1000;

pub struct TopArgs<'a> {
    pub spec: &'a Path,
    pub interval: Duration,
    pub window: Duration,
    /// Stop after this many screens.
    pub count: Option<u64>,
}

pub async fn run(args: TopArgs<'_>) -> Result<(), Failure> {
    let mesh = load(args.spec)?;
    let topology = Topology::of(&mesh);
    let tty = std::io::stdout().is_terminal();
    // Stopping a viewer is how it ends, not a failure, whether it waits or scrapes.
    let mut signals = Signals::new().exit(Exit::Environment)?;
    let started = Instant::now();
    let mut history = History::new(args.window);
    let scrape_timeout = args.interval.min(Duration::from_secs(2));
    let first = tokio::select! {
        scrape = top::scrape(&mesh, started, scrape_timeout) => scrape,
        _ = signals.next() => return Ok(()),
    };
    history.push(&topology, first);
    let mut shown = 0;
    loop {
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        let scrape = tokio::select! {
            scrape = async {
                tokio::time::sleep(args.interval).await;
                top::scrape(&mesh, started, scrape_timeout).await
            } => scrape,
            _ = signals.next() => return Ok(()),
        };
        let Some(view) = history.push(&topology, scrape) else {
            continue;
        };
        let lines = render::lines(&view, &top::clock());
        let mut out = std::io::stdout().lock();
        let written = if tty {
            // Home, then each line cleared to its end, then the rest of the screen cleared:
            // the screen changes in place, without flicker.
            let mut screen = String::from("\x1b[H");
            for line in &lines {
                screen.push_str(line);
                screen.push_str("\x1b[K\r\n");
            }
            screen.push_str("\x1b[J");
            out.write_all(screen.as_bytes())
        } else {
            let mut text = lines.join("\n");
            text.push_str("\n\n");
            out.write_all(text.as_bytes())
        };
        written
            .and_then(|()| out.flush())
            .map_err(|e| Failure::new(Exit::Output, format!("stdout: {e}")))?;
        shown += 1;
    }
}
