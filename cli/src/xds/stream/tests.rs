use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

use super::*;
use crate::xds::snapshot::TypeResources;

/// A resource whose content is `content` (the digest is all the protocol looks at).
fn res(name: &str, content: &str) -> Resource {
    let mut digest = [0u8; 32];
    for (d, b) in digest.iter_mut().zip(content.bytes()) {
        *d = b;
    }
    Resource {
        name: name.into(),
        any: Any {
            type_url: String::new(),
            value: content.as_bytes().to_vec(),
        },
        digest,
    }
}

fn snap(entries: &[(ResourceType, &[(&str, &str)])]) -> NodeSnapshot {
    let mut types = BTreeMap::new();
    for (t, rs) in entries {
        types.insert(
            *t,
            TypeResources::new(rs.iter().map(|(n, c)| res(n, c)).collect()),
        );
    }
    NodeSnapshot { types }
}

use ResourceType::{
    Cluster as CDS, Endpoint as EDS, Filter as ECDS, Listener as LDS, Route as RDS,
};

fn v1() -> NodeSnapshot {
    snap(&[
        (CDS, &[("local_app", "a"), ("users", "u")]),
        (EDS, &[("users", "u-endpoints")]),
        (LDS, &[("inbound", "in"), ("outbound", "out")]),
        (RDS, &[("inbound", "in-routes"), ("outbound", "out-routes")]),
        (
            ECDS,
            &[("meshkit-inbound", "f-in"), ("meshkit-outbound", "f-out")],
        ),
    ])
}

/// [`v1`] with the outbound route table's content `content`.
fn v1_with_outbound_routes(content: &str) -> NodeSnapshot {
    let mut s = v1();
    s.types.insert(
        RDS,
        TypeResources::new(vec![res("inbound", "in-routes"), res("outbound", content)]),
    );
    s
}

fn request(t: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.type_url(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).unwrap())
        .collect()
}

/// Answers `r` with an ACK of it (same names as asked before).
fn ack(
    s: &mut Stream,
    r: &DiscoveryResponse,
    asked: &[&str],
    snap: &NodeSnapshot,
) -> Vec<DiscoveryResponse> {
    let t = ResourceType::from_type_url(&r.type_url).unwrap();
    let (event, out) = s.on_request(&request(t, asked, &r.version_info, &r.nonce), snap);
    assert_eq!(
        event,
        Some(Event::Ack {
            t,
            version: r.version_info.clone()
        })
    );
    out
}

/// Connects like Envoy does, one type after another, acking each; returns the stream.
fn connected(snap: &NodeSnapshot) -> Stream {
    let mut s = Stream::new("test");
    let steps: [(ResourceType, &[&str]); 5] = [
        (CDS, &[]),
        (EDS, &["users"]),
        (LDS, &[]),
        (RDS, &["inbound", "outbound"]),
        (ECDS, &["meshkit-inbound", "meshkit-outbound"]),
    ];
    for (t, asked) in steps {
        let (_, out) = s.on_request(&request(t, asked, "", ""), snap);
        assert_eq!(out.len(), 1, "{t:?} answered");
        assert_eq!(out[0].type_url, t.type_url());
        assert!(ack(&mut s, &out[0], asked, snap).is_empty());
    }
    s
}

#[test]
fn each_request_is_answered_with_its_type_and_a_fresh_nonce() {
    let snap = v1();
    let mut s = Stream::new("test");
    let (event, out) = s.on_request(&request(CDS, &[], "", ""), &snap);
    assert_eq!(event, None);
    assert_eq!(names(&out[0]), ["a", "u"]);
    assert_eq!(out[0].version_info, snap.get(CDS).version);
    assert_eq!(out[0].control_plane.as_ref().unwrap().identifier, "test");
    // Envoy asks for the endpoints of the clusters it warms before acking them.
    let (_, eds) = s.on_request(&request(EDS, &["users"], "", ""), &snap);
    assert_eq!(eds.len(), 1);
    assert_eq!(names(&eds[0]), ["u-endpoints"]);
    assert_ne!(eds[0].nonce, out[0].nonce);
    // Listeners wait until both are answered.
    let (_, lds) = s.on_request(&request(LDS, &[], "", ""), &snap);
    assert!(lds.is_empty());
    assert!(ack(&mut s, &eds[0], &["users"], &snap).is_empty());
    let lds = ack(&mut s, &out[0], &[], &snap);
    assert_eq!(lds[0].type_url, LDS.type_url());
    assert_eq!(s.acked(CDS), Some(snap.get(CDS).version.as_str()));
}

#[test]
fn a_snapshot_with_nothing_new_sends_nothing() {
    let snap = v1();
    let mut s = connected(&snap);
    assert!(s.on_snapshot(&snap.clone()).is_empty());
}

#[test]
fn a_change_goes_out_one_type_at_a_time_in_make_before_break_order() {
    let mut s = connected(&v1());
    // A new upstream: a cluster, its endpoints, and a route to it.
    let v2 = snap(&[
        (CDS, &[("local_app", "a"), ("users", "u"), ("pay", "p")]),
        (EDS, &[("pay", "p-endpoints"), ("users", "u-endpoints")]),
        (LDS, &[("inbound", "in"), ("outbound", "out")]),
        (
            RDS,
            &[("inbound", "in-routes"), ("outbound", "out-routes-2")],
        ),
        (
            ECDS,
            &[("meshkit-inbound", "f-in"), ("meshkit-outbound", "f-out")],
        ),
    ]);
    let cds = s.on_snapshot(&v2);
    assert_eq!(cds.len(), 1);
    assert_eq!(names(&cds[0]), ["a", "u", "p"]);
    // Envoy warms the new cluster: it asks for its endpoints and acks CDS only once they
    // came. They go out at once; the listener side waits.
    let (_, eds) = s.on_request(&request(EDS, &["pay", "users"], "", ""), &v2);
    assert_eq!(names(&eds[0]), ["p-endpoints", "u-endpoints"]);
    assert!(
        ack(&mut s, &eds[0], &["pay", "users"], &v2).is_empty(),
        "CDS first"
    );
    let rds = ack(&mut s, &cds[0], &[], &v2);
    assert_eq!(rds[0].type_url, RDS.type_url(), "LDS had nothing new");
    assert_eq!(names(&rds[0]), ["in-routes", "out-routes-2"]);
    assert!(ack(&mut s, &rds[0], &["inbound", "outbound"], &v2).is_empty());
}

#[test]
fn a_removed_cluster_stays_until_the_routes_that_used_it_are_replaced() {
    let mut s = connected(&v1());
    let v2 = snap(&[
        (CDS, &[("local_app", "a")]),
        (EDS, &[]),
        (LDS, &[("inbound", "in"), ("outbound", "out")]),
        (RDS, &[("inbound", "in-routes"), ("outbound", "no-routes")]),
        (
            ECDS,
            &[("meshkit-inbound", "f-in"), ("meshkit-outbound", "f-out")],
        ),
    ]);
    // Clusters and endpoints stay as they are for now: only the routes change.
    let rds = s.on_snapshot(&v2);
    assert_eq!(rds[0].type_url, RDS.type_url());
    let clean = ack(&mut s, &rds[0], &["inbound", "outbound"], &v2);
    assert_eq!(clean[0].type_url, CDS.type_url());
    assert_eq!(names(&clean[0]), ["a"], "then the cluster goes");
    // Envoy no longer asks for its endpoints.
    let (_, eds) = s.on_request(&request(EDS, &[], &v1().get(EDS).version, ""), &v2);
    assert_eq!(eds[0].type_url, EDS.type_url());
    assert!(names(&eds[0]).is_empty());
    assert!(ack(&mut s, &eds[0], &[], &v2).is_empty());
    assert!(ack(&mut s, &clean[0], &[], &v2).is_empty());
}

#[test]
fn a_refused_version_is_reported_and_not_sent_again_but_a_newer_one_is() {
    let mut s = connected(&v1());
    let bad = v1_with_outbound_routes("bad");
    let rds = s.on_snapshot(&bad);
    assert_eq!(rds[0].type_url, RDS.type_url());
    let mut nack = request(
        RDS,
        &["inbound", "outbound"],
        &v1().get(RDS).version,
        &rds[0].nonce,
    );
    nack.error_detail = Some(Status {
        code: 3,
        message: "route: unknown cluster".into(),
        ..Default::default()
    });
    let (event, out) = s.on_request(&nack, &bad);
    assert_eq!(
        event,
        Some(Event::Nack {
            t: RDS,
            version: bad.get(RDS).version.clone(),
            detail: "route: unknown cluster".into()
        })
    );
    assert!(out.is_empty(), "the refused version is not sent again");
    assert!(s.on_snapshot(&bad).is_empty());
    assert_eq!(s.acked(RDS), Some(v1().get(RDS).version.as_str()));
    let fixed = s.on_snapshot(&v1());
    assert!(fixed.is_empty(), "Envoy still holds v1");
    let newer = v1_with_outbound_routes("good");
    let out = s.on_snapshot(&newer);
    assert_eq!(names(&out[0]), ["in-routes", "good"]);
}

#[test]
fn a_request_answering_an_older_response_is_ignored() {
    let mut s = connected(&v1());
    let mut v2 = v1();
    v2.types.insert(
        CDS,
        TypeResources::new(vec![res("local_app", "a2"), res("users", "u")]),
    );
    let cds = s.on_snapshot(&v2);
    assert_eq!(cds[0].nonce, "6", "after the five of connecting");
    // Envoy answers the first CDS response (nonce 1) only now: stale.
    let (event, out) = s.on_request(&request(CDS, &[], "old", "1"), &v2);
    assert_eq!((event, out.len()), (None, 0));
    ack(&mut s, &cds[0], &[], &v2);
}

#[test]
fn a_reconnecting_sidecar_is_sent_the_current_config_even_if_it_has_it() {
    let snap = v1();
    let mut s = Stream::new("test");
    let have = snap.get(CDS).version.clone();
    let (_, out) = s.on_request(&request(CDS, &[], &have, ""), &snap);
    assert_eq!(
        out.len(),
        1,
        "a new stream's first request is always answered"
    );
    assert_eq!(out[0].version_info, have);
}
