//! Sharded distribution decides as the whole policy: for every source namespace, the decision
//! under the document that namespace's sidecars load (its shard, or the mesh-wide fallback for
//! a namespace no tenant owns) equals the decision under the whole policy. Over the request
//! vectors and over random policies, HTTP and TCP.
//!
//! The same at the destination end: for every tenant namespace, every caller and every host
//! the namespace serves (its Kubernetes services and its tenant's `serves`), the decision under
//! its destination shard equals the whole policy's; any other host it is asked for is refused
//! (`undeclared-service`), never allowed.
// proptest needs OS randomness, which wasm32-unknown-unknown lacks: native only.
#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/policies.rs"]
mod policies;

use proptest::prelude::*;
use tenant_egress_core::explain::End;
use tenant_egress_core::inbound::Inbound;
use tenant_egress_core::shard::{destination_shard_for, fallback, served_by, shard_for};
use tenant_egress_core::{
    vectors, Decision, Policy, PolicySpec, Protocol, Reason, Request, Source, Target,
};

/// What the sidecars of `namespace` load: its shard, or the fallback when no tenant owns it
/// (checking that the fallback stands aside exactly in the tenant namespaces).
fn loaded_by(spec: &PolicySpec, namespace: Option<&str>) -> Policy {
    let fb = Policy::from_spec(&fallback(spec)).expect("the fallback is a valid policy");
    let owned = namespace.is_some_and(|ns| {
        spec.tenants
            .iter()
            .any(|t| t.namespaces.iter().any(|n| n == ns))
    });
    assert_eq!(
        namespace.is_some_and(|ns| fb.delegates(ns)),
        owned,
        "{namespace:?}"
    );
    match namespace {
        Some(ns) if owned => {
            let shard = shard_for(spec, ns);
            assert_eq!(shard.tenants.len(), 1);
            Policy::from_spec(&shard).unwrap_or_else(|e| panic!("shard {ns} is invalid: {e}"))
        }
        _ => fb,
    }
}

/// A decision as comparable across documents: tenant by name, rule by path and text (a shard
/// names its rules by their place in the whole policy: `index`, `hostIndex`).
fn comparable(p: &Policy, d: &Decision) -> String {
    let rule = d
        .rule
        .and_then(|r| p.rule(r))
        .map(|r| (r.path.clone(), r.text.clone()));
    let tenant = d.tenant.and_then(|t| p.tenant_name(t));
    format!(
        "allowed={} enforced={} reason={:?} tenant={tenant:?} rule={rule:?} destination={:?} detail={:?}",
        d.allowed, d.enforced, d.reason, d.destination, d.detail
    )
}

#[test]
fn every_vector_decides_the_same_under_its_shard() {
    let file = vectors::load().unwrap();
    let mut compared = 0;
    for case in &file.cases {
        let doc = &file.policies[&case.policy];
        let (spec, _) = tenant_egress_core::validate::validate_value(doc.clone()).unwrap();
        let whole = Policy::from_spec(&spec).unwrap();
        let part = loaded_by(&spec, case.request.source.namespace.as_deref());
        let (_, want) = case.request.report(&whole);
        let (_, got) = case.request.report(&part);
        let want = serde_json::to_string(&want).unwrap();
        let got = serde_json::to_string(&got).unwrap();
        assert_eq!(got, want, "vector {} ({})", case.name, case.note);
        compared += 1;
    }
    assert!(compared > 50, "only {compared} vectors");
}

/// Every request a pod in `ns` with `labels` makes to the probe destinations, HTTP and TCP, by
/// FQDN and (HTTP) by Istio's short names, each decision made comparable.
fn decisions(policy: &Policy, ns: &str, labels: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (host, dest_ns) in policies::destinations() {
        let short = host.strip_suffix(".svc.cluster.local").map(str::to_owned);
        let mut names = vec![host.clone()];
        names.extend(short.iter().cloned());
        names.extend(short.map(|s| format!("{s}.svc")));
        names.extend(host.split('.').next().map(str::to_owned));
        for &port in policies::PROBE_PORTS {
            let cluster = format!("outbound|{port}||{host}");
            for name in &names {
                for protocol in [Protocol::Http, Protocol::Tcp] {
                    let authority = format!("{name}:{port}");
                    let d = policy.decide(&Request {
                        source: Source {
                            namespace: Some(ns),
                            labels,
                        },
                        target: Target {
                            authority: Some(authority.as_bytes()),
                            cluster: Some(&cluster),
                            destination_namespace: Some(&dest_ns),
                            protocol,
                            ..Target::default()
                        },
                    });
                    out.push(format!(
                        "{ns} {labels:?} -> {authority} via {cluster} {protocol:?}: {}",
                        comparable(policy, &d)
                    ));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_source_namespace_decides_the_same_under_its_shard(doc in policies::policy()) {
        let Ok((spec, _)) = tenant_egress_core::validate::validate_value(doc.clone()) else {
            return Ok(());
        };
        let whole = Policy::from_spec(&spec).unwrap();
        let mut sources: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for w in &spec.tenants[0].workloads {
            sources.push(w.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        for ns in policies::NAMESPACES.iter().chain(&["elsewhere"]) {
            let part = loaded_by(&spec, Some(ns));
            for labels in &sources {
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let want = decisions(&whole, ns, &labels);
                let got = decisions(&part, ns, &labels);
                for (w, g) in want.iter().zip(&got) {
                    prop_assert_eq!(g, w, "{:#}", doc);
                }
            }
        }
    }
}

/// The destination shard `namespace`'s sidecars load, checked valid.
fn destination_shard(spec: &PolicySpec, namespace: &str) -> Policy {
    let shard = destination_shard_for(spec, namespace).expect("a tenant namespace");
    Policy::from_spec(&shard).unwrap_or_else(|e| panic!("destination shard {namespace}: {e}"))
}

/// Whether the destination shard of `namespace` decides `host` (else it must refuse it).
fn decided_here(spec: &PolicySpec, namespace: &str, host: &str) -> bool {
    served_by(spec, namespace).iter().any(|p| p.covers(host))
}

/// `got` (the shard's) against `want` (the whole policy's): equal for a host the shard decides;
/// for any other, equal (the caller's identity decided before the host mattered) or refused
/// as `undeclared-service`.
fn same_or_undeclared(
    decides: bool,
    got: &str,
    want: &str,
    refused: &Decision,
) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    if decides {
        return Err(format!("shard {got}\nwhole {want}"));
    }
    (!refused.allowed && refused.reason == Reason::UndeclaredService)
        .then_some(())
        .ok_or_else(|| format!("an undeclared host must be refused, got {got}\nwhole {want}"))
}

#[test]
fn every_inbound_vector_decides_the_same_under_its_destination_shard() {
    let file = vectors::load_inbound().unwrap();
    let mut compared = 0;
    for case in &file.cases {
        if case.request.at != End::Destination {
            continue;
        }
        let doc = &file.policies[&case.policy];
        let (spec, _) = tenant_egress_core::validate::validate_value(doc.clone()).unwrap();
        let Some(local) = case.request.destination_namespace.as_deref() else {
            continue;
        };
        // Not a tenant namespace, or a vector policy that already is a destination shard.
        if destination_shard_for(&spec, local).is_none() {
            continue;
        }
        let whole = Policy::from_spec(&spec).unwrap();
        let part = destination_shard(&spec, local);
        let (_, want) = case.request.report(&whole);
        let (refused, got) = case.request.report(&part);
        let host = case
            .request
            .sni
            .as_deref()
            .and_then(|s| s.rsplit('_').next())
            .unwrap_or("");
        // Without an SNI host the identity alone decides: the same everywhere.
        let host = host.trim_start_matches('.');
        let decides = host.is_empty() || decided_here(&spec, local, host);
        let want_s = serde_json::to_string(&want).unwrap();
        let got_s = serde_json::to_string(&got).unwrap();
        if let Err(e) = same_or_undeclared(decides, &got_s, &want_s, &refused) {
            panic!("vector {} ({}): {e}", case.name, case.note);
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} vectors");
}

/// Every request each caller namespace (service account `default`) makes, at the destination
/// in `local`, to the probe destinations whose pods run in `local`: HTTP and TCP on every probe
/// port, HTTP by FQDN and Istio's short names.
fn inbound_decisions(
    policy: &Policy,
    spec: &PolicySpec,
    local: &str,
) -> Vec<(bool, String, Decision)> {
    let mut out = Vec::new();
    for (host, dest_ns) in policies::destinations() {
        if dest_ns != local {
            continue;
        }
        let decides = decided_here(spec, local, &host);
        let short = host.strip_suffix(".svc.cluster.local").map(str::to_owned);
        let mut names = vec![host.clone()];
        names.extend(short.iter().cloned());
        names.extend(short.map(|s| format!("{s}.svc")));
        let services = [host.as_str()];
        for caller_ns in policies::NAMESPACES.iter().chain(&["elsewhere"]) {
            let peer = format!("spiffe://cluster.local/ns/{caller_ns}/sa/default");
            for &port in policies::PROBE_PORTS {
                let sni = format!("outbound_.{port}_._.{host}");
                let mut ask = |protocol, authority: Option<String>| {
                    let d = policy.decide_inbound(&Inbound {
                        namespace: Some(local),
                        peer: Some(peer.as_bytes()),
                        sni: Some(sni.as_bytes()),
                        authority: authority.as_deref().map(str::as_bytes),
                        services: &services,
                        protocol,
                        ..Inbound::default()
                    });
                    out.push((
                        decides,
                        format!(
                            "{caller_ns} -> {local}: {sni} {authority:?} {protocol:?}: {}",
                            comparable(policy, &d)
                        ),
                        d,
                    ));
                };
                ask(Protocol::Tcp, None);
                for name in &names {
                    ask(Protocol::Http, Some(format!("{name}:{port}")));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_destination_decides_the_same_under_its_destination_shard(
        doc in policies::policy(),
        serves in prop::sample::subsequence(vec!["api.example.com", "*.example.com", "x.api.example.com"], 0..3),
    ) {
        let mut doc = doc;
        doc["tenants"][0]["serves"] = serde_json::json!(serves);
        let Ok((spec, _)) = tenant_egress_core::validate::validate_value(doc.clone()) else {
            return Ok(());
        };
        let whole = Policy::from_spec(&spec).unwrap();
        let mut decided = 0;
        for t in &spec.tenants {
            for local in &t.namespaces {
                let part = destination_shard(&spec, local);
                let want = inbound_decisions(&whole, &spec, local);
                let got = inbound_decisions(&part, &spec, local);
                prop_assert_eq!(want.len(), got.len());
                for ((decides, w, _), (_, g, gd)) in want.iter().zip(&got) {
                    decided += usize::from(*decides);
                    if let Err(e) = same_or_undeclared(*decides, g, w, gd) {
                        prop_assert!(false, "{}\n{:#}", e, doc);
                    }
                }
            }
        }
        prop_assert!(decided > 0);
    }
}
