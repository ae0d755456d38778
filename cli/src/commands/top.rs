//! `meshkit top SPEC`: refreshes in place on a terminal; elsewhere (a pipe, a file) prints
//! each refresh as plain lines.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use meshkit_cli::top::{self, render, view::Topology, History};

use super::{load, stop_signal, Exit, Failure, Stop};

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
    let started = Instant::now();
    let mut history = History::new(args.window);
    let scrape_timeout = args.interval.min(Duration::from_secs(2));
    history.push(&topology, top::scrape(&mesh, started, scrape_timeout).await);
    let mut shown = 0;
    loop {
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        match stop_signal(Some(args.interval)).await {
            Stop::Elapsed => {}
            // Stopping a viewer is how it ends: not a failure.
            Stop::Interrupt | Stop::Terminate => return Ok(()),
        }
        let scrape = top::scrape(&mesh, started, scrape_timeout).await;
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
