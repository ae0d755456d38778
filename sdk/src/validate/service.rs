//! One service: its app, its sidecar and its upstreams.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::circuit_breaker::circuit_breaker;
use super::retry::retry_budget;
use super::routes::{check_shadowed, route};
use super::upstream_policy::upstream_policy;
use super::values::{duration, is_host_name, is_image_reference, port};
use crate::model::{App, Replica, Service, Sidecar, Upstream};
use crate::problems::Collector;
use crate::spec::{MeshSpec, ServiceSpec};

pub(super) fn service(i: usize, s: &ServiceSpec, spec: &MeshSpec, c: &mut Collector) -> Service {
    let at = format!("services[{i}]");
    let app = App {
        image: s.app.image.as_ref().map(|image| {
            if !is_image_reference(image) {
                c.push(
                    format!("{at}.app.image"),
                    format!(
                        "{image:?} is not an image reference (`[registry[:port]/]name[:tag][@sha256:digest]`, lowercase name)"
                    ),
                );
            }
            image.clone()
        }),
        address: s.app.address.parse::<IpAddr>().unwrap_or_else(|_| {
            c.push(
                format!("{at}.app.address"),
                format!(
                    "{:?} is not an IP address (the sidecar reaches its app there)",
                    s.app.address
                ),
            );
            IpAddr::from([127, 0, 0, 1])
        }),
        port: port(s.app.port, &format!("{at}.app.port"), c),
        protocol: s.app.protocol,
        timeout: duration(s.app.timeout.as_deref(), &format!("{at}.app.timeout"), c),
        circuit_breaker: circuit_breaker(
            &s.app.circuit_breaker,
            &format!("{at}.app.circuit_breaker"),
            c,
        ),
    };
    let first_sidecar = sidecar(
        &SidecarAt {
            address: &s.sidecar.address,
            listen_address: s.sidecar.listen_address.as_deref(),
            inbound_port: s.sidecar.inbound_port,
            outbound_port: s.sidecar.outbound_port,
            admin_port: s.sidecar.admin_port,
        },
        &format!("{at}.sidecar"),
        c,
    );
    let replicas = s
        .replicas
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let at = format!("{at}.replicas[{k}]");
            Replica {
                app_port: port(r.app_port, &format!("{at}.app_port"), c),
                sidecar: sidecar(
                    &SidecarAt {
                        address: r.address.as_deref().unwrap_or(&s.sidecar.address),
                        listen_address: r.listen_address.as_deref(),
                        inbound_port: r.inbound_port,
                        outbound_port: r.outbound_port,
                        admin_port: r.admin_port,
                    },
                    &at,
                    c,
                ),
            }
        })
        .collect();

    let mut upstreams = Vec::new();
    let mut seen_upstreams: HashMap<&str, usize> = HashMap::new();
    // The outbound listener has one route table: every upstream's routes, in order.
    let mut matches = Vec::new();
    for (u, up) in s.upstreams.iter().enumerate() {
        let at = format!("{at}.upstreams[{u}]");
        let target = spec.services.iter().find(|t| t.name == up.service);
        if up.service == s.name {
            c.push(
                format!("{at}.service"),
                "a service cannot be its own upstream",
            );
        } else if target.is_none() {
            c.push(
                format!("{at}.service"),
                format!("unknown service {:?}", up.service),
            );
        } else if let Some(first) = seen_upstreams.insert(&up.service, u) {
            c.push(
                format!("{at}.service"),
                format!(
                    "duplicate upstream {:?} (first at upstreams[{first}])",
                    up.service
                ),
            );
        }
        if up.routes.is_empty() {
            c.push(format!("{at}.routes"), "must list at least one route");
        }
        let routes: Vec<_> = up
            .routes
            .iter()
            .enumerate()
            .map(|(r, spec)| {
                let at = format!("{at}.routes[{r}]");
                let route = route(spec, &at, c);
                // A match given wrongly is reported already; it shadows nothing.
                let well_formed = spec.match_.prefix.is_some() != spec.match_.exact.is_some();
                (at, route, well_formed)
            })
            .collect();
        matches.extend(
            routes
                .iter()
                .filter(|(_, _, well_formed)| *well_formed)
                .map(|(at, route, _)| (at.clone(), route.path.clone())),
        );
        let retry_budget = retry_budget(&up.retry_budget, &format!("{at}.retry_budget"), c);
        let circuit_breaker =
            circuit_breaker(&up.circuit_breaker, &format!("{at}.circuit_breaker"), c);
        let policy = upstream_policy(up, &at, c);
        if let Some(t) = target {
            let first = (t.sidecar.address.clone(), t.sidecar.inbound_port);
            let replicas = t.replicas.iter().map(|r| {
                let address = r.address.as_ref().unwrap_or(&t.sidecar.address);
                (address.clone(), r.inbound_port)
            });
            upstreams.push(Upstream {
                service: t.name.clone(),
                endpoints: std::iter::once(first)
                    .chain(replicas)
                    .map(|(address, port)| (address, u16::try_from(port).unwrap_or(0)))
                    .collect(),
                protocol: t.app.protocol,
                retry_budget,
                circuit_breaker,
                policy,
                routes: routes.into_iter().map(|(_, route, _)| route).collect(),
            });
        }
    }
    let matches: Vec<_> = matches.iter().map(|(at, m)| (at.clone(), m)).collect();
    check_shadowed(&matches, c);

    Service {
        name: s.name.clone(),
        app,
        sidecar: first_sidecar,
        local_replies: s.local_replies,
        replicas,
        upstreams,
    }
}

/// A sidecar's address and ports as the spec gives them, for the first instance or a replica.
struct SidecarAt<'a> {
    address: &'a str,
    listen_address: Option<&'a str>,
    inbound_port: i64,
    outbound_port: i64,
    admin_port: i64,
}

/// Where callers reach the sidecar (`address`: an IP or a DNS name) is not always where it can
/// listen: a name resolves to the host's address, which the sidecar binds through
/// `listen_address` (default: `address` itself when it is an IP, else every interface).
fn sidecar(s: &SidecarAt<'_>, at: &str, c: &mut Collector) -> Sidecar {
    let reach_ip = s.address.parse::<IpAddr>().ok();
    if reach_ip.is_none() && !is_host_name(s.address) {
        c.push(
            format!("{at}.address"),
            format!(
                "{:?} is neither an IP address nor a DNS host name (labels of a-z, 0-9, '-', \
                 separated by '.')",
                s.address
            ),
        );
    }
    let listen_address = match s.listen_address {
        Some(text) => text.parse::<IpAddr>().unwrap_or_else(|_| {
            c.push(
                format!("{at}.listen_address"),
                format!("{text:?} is not an IP address (use 0.0.0.0 for every interface)"),
            );
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }),
        None => reach_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    Sidecar {
        address: s.address.to_string(),
        listen_address,
        inbound_port: port(s.inbound_port, &format!("{at}.inbound_port"), c),
        outbound_port: port(s.outbound_port, &format!("{at}.outbound_port"), c),
        admin_port: port(s.admin_port, &format!("{at}.admin_port"), c),
    }
}
