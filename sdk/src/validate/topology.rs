//! Rules that span services: sockets that share a host, and call cycles.

use std::collections::{BTreeMap, HashMap};

use crate::problems::Collector;
use crate::spec::ServiceSpec;

/// Every listening socket on one host must be distinct. An instance's sidecar, its three
/// listeners and (unless it has an address of its own) its app share one host: the one its
/// sidecar address names, and loopback or wildcard addresses all mean the local host, where
/// `meshkit up` runs every instance.
pub(super) fn check_sockets(services: &[ServiceSpec], c: &mut Collector) {
    let mut owners: BTreeMap<(String, i64), String> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        // The first instance, then each replica (on its own host if it names one).
        let first = (
            s.sidecar.address.as_str(),
            [
                s.app.port,
                s.sidecar.inbound_port,
                s.sidecar.outbound_port,
                s.sidecar.admin_port,
            ],
            [
                format!("{at}.app.port"),
                format!("{at}.sidecar.inbound_port"),
                format!("{at}.sidecar.outbound_port"),
                format!("{at}.sidecar.admin_port"),
            ],
        );
        let replicas = s.replicas.iter().enumerate().map(|(k, r)| {
            let at = format!("{at}.replicas[{k}]");
            (
                r.address.as_deref().unwrap_or(&s.sidecar.address),
                [r.app_port, r.inbound_port, r.outbound_port, r.admin_port],
                ["app_port", "inbound_port", "outbound_port", "admin_port"]
                    .map(|f| format!("{at}.{f}")),
            )
        });
        let sockets = std::iter::once(first)
            .chain(replicas)
            .flat_map(|(address, ports, paths)| {
                let host = host_of(address);
                let app_host = match host_of(&s.app.address) {
                    local if local == LOCAL => host.clone(),
                    other => other,
                };
                let hosts = [app_host, host.clone(), host.clone(), host];
                hosts
                    .into_iter()
                    .zip(ports)
                    .zip(paths)
                    .map(|((h, p), path)| (h, p, path))
            });
        for (host, port, path) in sockets {
            if port <= 0 {
                continue; // reported with the port itself
            }
            if let Some(first) = owners.get(&(host.clone(), port)) {
                c.push(path, format!("port {port} is already used by {first}"));
            } else {
                owners.insert((host, port), path);
            }
        }
    }
}

const LOCAL: &str = "(local)";

fn host_of(address: &str) -> String {
    match address {
        "" | "127.0.0.1" | "localhost" | "0.0.0.0" | "::1" | "::" => LOCAL.into(),
        other => other.to_ascii_lowercase(),
    }
}

/// A request that can come back to a service it passed through can loop for ever: one request
/// becomes thousands of hops, each with its own timeout, long after the client gave up. Each
/// cycle is reported once, at the upstream that closes it.
pub(super) fn check_cycles(services: &[ServiceSpec], c: &mut Collector) {
    let index: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; services.len()];
    // Iterative depth-first search: (service, next upstream to look at).
    for start in 0..services.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some((s, u)) = path.last().copied() {
            let Some(up) = services[s].upstreams.get(u) else {
                marks[s] = Mark::Done;
                path.pop();
                continue;
            };
            if let Some(last) = path.last_mut() {
                last.1 += 1;
            }
            // Unknown and self upstreams are reported elsewhere.
            let Some(&t) = index.get(up.service.as_str()).filter(|&&t| t != s) else {
                continue;
            };
            match marks[t] {
                Mark::New => {
                    marks[t] = Mark::OnPath;
                    path.push((t, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|(p, _)| *p == t).unwrap_or(0);
                    let mut names: Vec<&str> = path[from..]
                        .iter()
                        .map(|(p, _)| services[*p].name.as_str())
                        .collect();
                    names.push(&services[t].name);
                    c.push(
                        format!("services[{s}].upstreams[{u}].service"),
                        format!(
                            "call cycle {}: a request could loop through the mesh without end; \
                             meshkit refuses cycles (sidecars do not detect loops at run time)",
                            names.join(" → ")
                        ),
                    );
                }
                Mark::Done => {}
            }
        }
    }
}
