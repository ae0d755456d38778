//! `meshkit top`: a live view of a running mesh from its sidecars' admin endpoints, like
//! `linkerd viz stat`. Scraping and computing are here; the screen is [`render`].

pub mod render;
pub mod stats;
pub mod view;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshkit_sdk::model::Mesh;

use crate::http_client;
use stats::InstanceStats;
use view::{Scrape, Topology, View};

/// Scrapes every sidecar of `mesh` at once (each within `timeout`); a sidecar that does not
/// answer is left out.
pub async fn scrape(mesh: &Mesh, started: Instant, timeout: Duration) -> Scrape {
    let tasks: Vec<_> = mesh
        .instances()
        .map(|(name, service)| {
            let admin = SocketAddr::from(([127, 0, 0, 1], service.sidecar.admin_port));
            tokio::spawn(async move {
                let stats =
                    http_client::send(admin, hyper::Method::GET, "/stats/prometheus", &[], timeout)
                        .await
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| InstanceStats::parse(&r.text()).ok())
                        .map(|s| s.keep_only(&view::metrics_read()));
                (name, stats)
            })
        })
        .collect();
    let mut scrape = Scrape {
        at: started.elapsed().as_secs_f64(),
        ..Scrape::default()
    };
    for task in tasks {
        if let Ok((name, Some(stats))) = task.await {
            scrape.instances.insert(name, stats);
        }
    }
    scrape
}

/// The scrapes of the last `window`, oldest first: a view compares the newest with the oldest.
pub struct History {
    window: Duration,
    scrapes: VecDeque<Scrape>,
}

impl History {
    pub fn new(window: Duration) -> History {
        History {
            window,
            scrapes: VecDeque::new(),
        }
    }

    /// Adds `scrape`, drops those older than the window (keeping one at its start), and
    /// returns the view over it once there are two.
    pub fn push(&mut self, topology: &Topology, scrape: Scrape) -> Option<View> {
        let start = scrape.at - self.window.as_secs_f64();
        self.scrapes.push_back(scrape);
        while self.scrapes.len() > 2 && self.scrapes.get(1).is_some_and(|s| s.at <= start) {
            self.scrapes.pop_front();
        }
        let oldest = self.scrapes.front()?;
        let newest = self.scrapes.back()?;
        (self.scrapes.len() >= 2).then(|| view::view(topology, oldest, newest))
    }
}

/// `HH:MM:SS` UTC, for the screen's corner.
pub fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}Z", day / 3600, day % 3600 / 60, day % 60)
}
