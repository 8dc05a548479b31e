//! Random policies for the property tests of the core (`tests/properties.rs`) and of the
//! generator (`config/tests/manifests.rs`, which includes this file by path), and the requests
//! to probe them with.
//!
//! Tenants over a small namespace pool, with port listeners (every Istio protocol but
//! HTTP_PROXY), a catch-all or not, imports and exclusions of every host form, and workload
//! exceptions that redeclare the tenant's ports. Most exception entries follow the rules
//! validation enforces (the tenant's protocol or none on a tenant port, a TCP-capable one on a
//! port the tenant's catch-all serves, no exclusions); about one in four draws its protocol
//! freely and some have exclusions, so that the tests also see documents validation must refuse
//! (and, with a check of validation disabled, would fail).
#![allow(dead_code)] // each test crate uses part of it

use proptest::prelude::*;
use serde_json::{json, Value};

/// Namespaces entries name (`elsewhere` is named by none: only `*` reaches it).
pub const NAMESPACES: &[&str] = &["a", "b", "c", "shared"];
/// Ports listeners declare.
pub const PORTS: &[u16] = &[80, 5432, 8080, 26257];
/// Ports probed: the declared ones and one that only a catch-all serves.
pub const PROBE_PORTS: &[u16] = &[80, 5432, 8080, 26257, 9999];
const PROTOCOLS: &[Option<&str>] = &[
    None,
    Some("HTTP"),
    Some("TCP"),
    Some("TLS"),
    Some("GRPC"),
    Some("HTTPS"),
    Some("HTTP2"),
    Some("MONGO"),
];
const TCP_CAPABLE: &[Option<&str>] = &[None, Some("TCP"), Some("TLS"), Some("HTTPS")];
const NS_SELECTORS: &[&str] = &["*", ".", "a", "b", "c", "shared"];

/// One egress entry before it is laid out: indexes into the pools above.
#[derive(Debug, Clone)]
pub struct RawEntry {
    port: Option<usize>,
    protocol: usize,
    /// 0..4; in an exception, 3 draws the protocol freely and 2 allows exclusions.
    mode: u8,
    /// (namespace selector, host form, exclusion when 0).
    hosts: Vec<(usize, usize, u8)>,
}

fn raw_entry() -> impl Strategy<Value = RawEntry> {
    (
        prop::option::weighted(0.6, 0..PORTS.len()),
        0..PROTOCOLS.len(),
        0u8..4,
        prop::collection::vec((0..NS_SELECTORS.len(), 0usize..7, 0u8..6), 1..4),
    )
        .prop_map(|(port, protocol, mode, hosts)| RawEntry {
            port,
            protocol,
            mode,
            hosts,
        })
}

fn host(ns: usize, form: usize, exclude: bool) -> String {
    let sel = NS_SELECTORS[ns % NS_SELECTORS.len()];
    // A service of the selected namespace (of `a` for `*` and `.`).
    let svc_ns = match sel {
        "*" | "." => "a",
        n => n,
    };
    let name = match form {
        0 => "*".to_owned(),
        1 => format!("svc.{svc_ns}.svc.cluster.local"),
        2 => "api.example.com".to_owned(),
        3 => "*.example.com".to_owned(),
        4 => "x.api.example.com".to_owned(),
        5 => "*.api.example.com".to_owned(),
        _ => format!("*.{svc_ns}.svc.cluster.local"),
    };
    format!("{}{sel}/{name}", if exclude { "~" } else { "" })
}

/// The ports (`None`: the catch-all) and protocols of a laid-out egress list.
type Shape = Vec<(Option<u16>, Option<&'static str>)>;

/// Lays out one egress list: later entries on a port already used (or a second catch-all) are
/// dropped, so the list itself is valid.
fn layout(raw: &[RawEntry], tenant: Option<&Shape>) -> (Vec<Value>, Shape) {
    let mut used: Vec<Option<u16>> = Vec::new();
    let mut out = Vec::new();
    let mut shape = Vec::new();
    for e in raw {
        let port = e.port.map(|i| PORTS[i]);
        if used.contains(&port) {
            continue;
        }
        used.push(port);
        let free = e.mode == 3;
        let mut protocol = PROTOCOLS[e.protocol];
        if let (Some(tenant), Some(p), false) = (tenant, port, free) {
            let declared = tenant.iter().find(|(q, _)| *q == Some(p));
            let catch_all = tenant.iter().any(|(q, _)| q.is_none());
            protocol = match declared {
                Some((_, tp)) if e.mode % 2 == 0 => *tp,
                Some(_) => None,
                None if catch_all => TCP_CAPABLE[e.protocol % TCP_CAPABLE.len()],
                None => protocol,
            };
        }
        let hosts: Vec<String> = e
            .hosts
            .iter()
            .map(|&(ns, form, x)| host(ns, form, x == 0 && (tenant.is_none() || e.mode == 2)))
            .collect();
        let mut entry = json!({ "hosts": hosts });
        if let Some(p) = port {
            let mut spec = json!({ "number": p });
            if let Some(proto) = protocol {
                spec["protocol"] = json!(proto);
            }
            entry["port"] = spec;
        }
        shape.push((port, protocol));
        out.push(entry);
    }
    (out, shape)
}

/// A policy document: tenant `t` (namespace `a`, sometimes `b` too) with up to two workload
/// exceptions (selectors `app: w0`, `app: w1`), and tenant `u` (namespace `c`). `shared` and
/// `elsewhere` belong to no tenant.
pub fn policy() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        prop::collection::vec(raw_entry(), 0..4),
        prop::collection::vec(prop::collection::vec(raw_entry(), 1..4), 0..3),
        prop::collection::vec(raw_entry(), 0..3),
    )
        .prop_map(|(two_namespaces, tenant, exceptions, other)| {
            let (egress, shape) = layout(&tenant, None);
            let workloads: Vec<Value> = exceptions
                .iter()
                .enumerate()
                .map(|(i, raw)| {
                    json!({
                        "name": format!("w{i}"),
                        "selector": {"app": format!("w{i}")},
                        "egress": layout(raw, Some(&shape)).0,
                    })
                })
                .collect();
            let namespaces = if two_namespaces {
                json!(["a", "b"])
            } else {
                json!(["a"])
            };
            json!({
                "apiVersion": "tenant-egress/v1",
                "tenants": [
                    {"name": "t", "namespaces": namespaces, "egress": egress, "workloads": workloads},
                    {"name": "u", "namespaces": ["c"], "egress": layout(&other, None).0},
                ]
            })
        })
}

/// Destinations to probe: (host, its namespace). Services of every namespace, and external
/// names (ServiceEntries) in a few.
pub fn destinations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ns in NAMESPACES.iter().chain(&["elsewhere"]) {
        out.push((format!("svc.{ns}.svc.cluster.local"), (*ns).to_owned()));
        out.push((format!("other.{ns}.svc.cluster.local"), (*ns).to_owned()));
    }
    for ns in ["a", "shared", "elsewhere"] {
        for h in [
            "api.example.com",
            "x.api.example.com",
            "example.com",
            "y.example.com",
        ] {
            out.push((h.to_owned(), ns.to_owned()));
        }
    }
    out
}
